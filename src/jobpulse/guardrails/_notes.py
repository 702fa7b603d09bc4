"""Facts about a failure that the guardrails read when the run ends.

``step`` exits before the run ends, so the step a run failed in is noted on the
exception as it passes through (a step name is not job data). Exceptions that
refuse attributes simply carry no note.

The failing call's arguments (for the quarantine payload's input fingerprint) are
**never** put on the exception: an exception's ``__dict__`` is pickled with it, so
Celery result backends and pool pipes would carry the job's arguments, which
jobpulse never records unless ``record_args`` allows them. ``@jobpulse.job`` keeps
them on its own run instead (:func:`note_inputs`), only when the guardrails enforce
for that run, and only while the run ends. Being per run, a job awaiting another
failing job gets its own call's fingerprint, not the inner one's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import _guard

if TYPE_CHECKING:
    from .._run import JobRun

STEP_ATTR = "_jobpulse_failed_step"


def note_step(exc: BaseException | None, step: str) -> None:
    """Remember the innermost step ``exc`` passed through (the first note wins)."""
    if exc is None:
        return
    try:
        if STEP_ATTR not in exc.__dict__:
            setattr(exc, STEP_ATTR, step)
    except Exception:  # noqa: BLE001 - read-only exception objects
        pass


def failed_step(exc: BaseException | None) -> str | None:
    value = getattr(exc, STEP_ATTR, None) if exc is not None else None
    return value if isinstance(value, str) else None


def note_inputs(run: JobRun | None, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Keep the failing call's arguments on ``run`` when the guardrails enforce for it
    (in observe mode, or with classification off, nothing would use them). The caller
    clears ``run.failed_inputs`` once the run has ended."""
    if run is None:
        return
    with _guard.never_raise("guardrails"):
        from ._quarantine import enforced
        from .config import active

        cfg = active()
        if cfg.classify and enforced(cfg, run):
            run.failed_inputs = (tuple(args), dict(kwargs))
