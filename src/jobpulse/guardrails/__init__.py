"""Guardrails: poison classification and quarantine, safe re-runs, unbounded calls.

- Every failed run is classified ``transient``, ``poison`` or ``unknown``
  (:mod:`.classify`); poison runs get ``jobpulse.action = quarantine``.
- ``instrument(guardrails=Guardrails(enforce=True, ...))`` sets poison runs aside
  with an operator payload (:mod:`.quarantine`); adapters call
  :func:`should_quarantine` and :func:`quarantine`; the retries that remain are
  bounded (attempt budget, backoff: :mod:`._bounds`).
- :func:`once` runs a side effect at most once per key (:mod:`.once`).

See ``docs/guardrails.md``.
"""

from __future__ import annotations

from ._once import OnceInProgress, OnceUnknownProgress, once
from ._once import resolve as resolve_once
from ._quarantine import (
    MemoryStore,
    Payload,
    QuarantineStore,
    RedisStore,
    quarantine,
    should_quarantine,
    store_for,
)
from ._release import ReleaseError, drop, release
from .classify import Classification, Failure, Verdict, fingerprint
from .config import Guardrails, Rules

__all__ = [
    "Classification",
    "Failure",
    "Guardrails",
    "MemoryStore",
    "OnceInProgress",
    "OnceUnknownProgress",
    "Payload",
    "QuarantineStore",
    "RedisStore",
    "ReleaseError",
    "Rules",
    "Verdict",
    "drop",
    "fingerprint",
    "once",
    "quarantine",
    "release",
    "resolve_once",
    "should_quarantine",
    "store_for",
]
