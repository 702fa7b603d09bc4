"""The one call the core makes when a run failed: what is the next action?

``_lifecycle.end_run``/``count_run``/``record_run`` call :func:`failed_run_action`
for failed outcomes. It classifies the failure, returns ``quarantine`` for poison
(``escalate`` for a ``once`` block with unknown progress), adds the
classification to the run span, and in enforce mode sets in-process poison runs
aside in the quarantine store. It never raises; on its own failure the action
passes through unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import _guard
from .. import _names as n
from .._run import Action

if TYPE_CHECKING:
    from .._run import JobRun


def _unknown_progress(exc: BaseException | None) -> bool:
    from ._once import OnceUnknownProgress

    seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, OnceUnknownProgress):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def failed_run_action(
    *,
    run: JobRun | None = None,
    job_name: str,
    system: str,
    queue: str = "",
    job_id: str | None = None,
    run_id: str | None = None,
    attempt: int = 1,
    outcome: str,
    action: Action,
    exc: BaseException | None = None,
    error_type: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> Action:
    """The action for a failed run (``action`` is the adapter's, already a legal pair).

    ``attributes``: a span attribute mapping to extend (``record_run``); with ``run``
    the run's span gets them directly.
    """
    with _guard.never_raise("guardrails"):
        if action is Action.ESCALATE:
            return action
        if _unknown_progress(exc):
            return Action.ESCALATE
        from .classify import build_failure, classify
        from .config import active

        cfg = active()
        if not cfg.classify:
            return action
        failure = build_failure(
            job_name=job_name,
            system=system,
            job_id=job_id,
            attempt=attempt,
            outcome=outcome,
            exc=exc,
            error_type=error_type,
        )
        c = classify(failure, cfg, run_id=run_id)
        attrs = {
            n.FAILURE_CLASS: c.verdict.value,
            n.FAILURE_REASON: c.reason,
            n.ERROR_FINGERPRINT: c.fingerprint,
        }
        if run is not None and run.span is not None:
            run.span.set_attributes(attrs)
        if attributes is not None:
            attributes.update(attrs)
        if not c.poison:
            return action
        if run is not None:
            _enforce_in_process(cfg, run, c, exc)
        return Action.QUARANTINE
    return action


def _enforce_in_process(cfg: Any, run: JobRun, c: Any, exc: BaseException | None) -> None:
    """In-process jobs have no framework to stop retries: storing the payload is all.

    The input fingerprint comes from the arguments ``@jobpulse.job`` keeps on the run
    while it ends (``run.failed_inputs``), never from the exception (``._notes``).
    """
    from ._notes import failed_step
    from ._quarantine import (
        IN_PROCESS_SYSTEMS,
        enforced,
        handled,
        make_payload,
        quarantine,
        store_for,
        trace_id_of,
    )

    if run.system not in IN_PROCESS_SYSTEMS or not enforced(cfg, run):
        return
    if handled(run.run_id):
        return
    noted = run.failed_inputs
    payload = make_payload(
        c,
        job_name=run.job_name,
        system=run.system,
        queue=run.queue,
        job_id=run.job_id,
        run_id=run.run_id,
        attempt=run.attempt,
        step=failed_step(exc) or run.step,
        trace_id=trace_id_of(run),
        args=noted[0] if noted else None,
        kwargs=noted[1] if noted else None,
    )
    quarantine(payload, store_for(cfg))
