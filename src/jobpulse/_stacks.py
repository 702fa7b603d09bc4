"""Where is stuck work stuck: the innermost frames of a thread or an asyncio task."""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

MAX_FRAMES = 8


def _frames_of(frame: FrameType | None) -> list[FrameType]:
    frames: list[FrameType] = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames  # innermost first


def _format(frames: list[FrameType]) -> str:
    lines = []
    for frame in frames[:MAX_FRAMES]:
        code = frame.f_code
        lines.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_name}")
    return "\n".join(lines)


def thread_stack(thread_id: int) -> str | None:
    """The innermost frames of a thread, innermost first, or None if it is gone."""
    frame = sys._current_frames().get(thread_id)
    if frame is None:
        return None
    return _format(_frames_of(frame))


def task_stack(task: Any) -> str | None:
    """The innermost frames of a suspended asyncio task, following its ``await`` chain."""
    try:
        coro = task.get_coro()
    except Exception:  # noqa: BLE001 - a finished or foreign task has no stack
        return None
    frames: list[FrameType] = []
    seen = 0
    while coro is not None and seen < 64:
        seen += 1
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    if not frames:
        return None
    frames.reverse()  # innermost first
    return _format(frames)
