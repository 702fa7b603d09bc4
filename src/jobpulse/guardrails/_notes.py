"""Facts about a failure noted on the exception itself, read when the run ends.

``step`` exits before the run ends, so the step a run failed in is noted on the
exception as it passes through; ``@jobpulse.job`` notes the call's arguments the
same way (on the failure path only) so an input fingerprint can be made.
Exceptions that refuse attributes simply carry no note.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STEP_ATTR = "_jobpulse_failed_step"
INPUTS_ATTR = "_jobpulse_inputs"


def note_step(exc: BaseException | None, step: str) -> None:
    """Remember the innermost step ``exc`` passed through (the first note wins)."""
    if exc is None:
        return
    try:
        if STEP_ATTR not in exc.__dict__:
            setattr(exc, STEP_ATTR, step)
    except Exception:  # noqa: BLE001 - read-only exception objects
        pass


def note_inputs(exc: BaseException, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Remember the arguments of the job call ``exc`` escaped from."""
    try:
        if INPUTS_ATTR not in exc.__dict__:
            setattr(exc, INPUTS_ATTR, (args, dict(kwargs)))
    except Exception:  # noqa: BLE001
        pass


def failed_step(exc: BaseException | None) -> str | None:
    value = getattr(exc, STEP_ATTR, None) if exc is not None else None
    return value if isinstance(value, str) else None


def inputs(exc: BaseException | None) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    value = getattr(exc, INPUTS_ATTR, None) if exc is not None else None
    if isinstance(value, tuple) and len(value) == 2:
        return value
    return None
