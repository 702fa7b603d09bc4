"""Is a failed run worth retrying? transient, poison or unknown.

Order (the first that decides wins):

1. predicates: the job's own rules, then the global ones;
2. the job's ``transient`` / ``non_retryable`` types, then the global ones;
3. built-in rules (``Rules.defaults``): HTTP status on the exception's response
   (408/425/429/502/503/504 transient; 400/401/403/405/410/422 poison), then
   connection errors, timeouts and throttling (transient; a run's *own* budget
   timeout is not), then validation, decoding, permission and auth errors (poison);
4. repetition: the same error type and fingerprint on ``repeats`` (2) consecutive
   failed attempts of one job id is poison;
5. otherwise unknown.

The fingerprint is the error type plus a hash of the message with numbers, hex
ids and uuids stripped, so "row 17 of batch 3f2a9c01..." and "row 18 of batch
77b1..." match, while a different error does not.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass

from .._run import BudgetExceeded
from .._textsafe import error_type_of, safe_str
from .config import ErrorType, Guardrails, Rules


class Verdict(str, enum.Enum):
    """What a failure says about retrying."""

    TRANSIENT = "transient"
    POISON = "poison"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Failure:
    """What a predicate sees about one failed run."""

    job_name: str
    system: str
    job_id: str | None
    attempt: int
    outcome: str
    error_type: str
    message: str
    fingerprint: str
    exc: BaseException | None


@dataclass(frozen=True)
class Classification:
    """A failed run's verdict and why (``reason``: ``rule``, ``non_retryable``,
    ``transient``, ``repeated``, ``http_status``, ``unknown``)."""

    verdict: Verdict
    reason: str
    fingerprint: str
    error_type: str
    message: str
    repeats: int = 1  # consecutive failed attempts with this fingerprint, this one included
    first_seen: float = 0.0
    last_seen: float = 0.0
    detail: str = ""

    @property
    def poison(self) -> bool:
        return self.verdict is Verdict.POISON


# -- fingerprint ---------------------------------------------------------------
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)
_HEX = re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b|0x[0-9a-fA-F]+")
_NUM = re.compile(r"\d+(?:\.\d+)?")
_SPACE = re.compile(r"\s+")


def normalise(message: str) -> str:
    """The message with ids, hex strings and numbers replaced, whitespace collapsed."""
    text = _UUID.sub("<id>", message[:2048])
    text = _HEX.sub("<id>", text)
    text = _NUM.sub("#", text)
    return _SPACE.sub(" ", text).strip()[:512]


def fingerprint(error_type: str, message: str) -> str:
    """``error type`` + hash of the normalised message: stable across attempts of one input."""
    digest = hashlib.sha256(f"{error_type}\n{normalise(message)}".encode()).hexdigest()
    return digest[:16]


# -- matching ------------------------------------------------------------------
def _names(exc: BaseException) -> tuple[set[str], set[str]]:
    """Qualified and bare names of the exception's class and bases."""
    qualified, bare = set(), set()
    for cls in type(exc).__mro__:
        if cls is object:
            continue
        try:
            qualified.add(error_type_of_class(cls))
            bare.add(cls.__name__)
        except Exception:  # noqa: BLE001 - odd metaclasses
            continue
    return qualified, bare


def error_type_of_class(cls: type) -> str:
    module = getattr(cls, "__module__", "") or ""
    name = getattr(cls, "__qualname__", None) or cls.__name__
    return str(name) if module in ("builtins", "__main__", "") else f"{module}.{name}"


def matches(exc: BaseException | None, error_type: str, types: tuple[ErrorType, ...]) -> bool:
    if not types:
        return False
    if exc is None:
        return any(
            isinstance(t, str) and t in (error_type, error_type.rsplit(".", 1)[-1]) for t in types
        )
    qualified, bare = _names(exc)
    for t in types:
        if isinstance(t, type):
            if isinstance(exc, t):
                return True
        elif t in qualified or t in bare:
            return True
    return False


_TRANSIENT_WORDS = (
    "ConnectionError",
    "Timeout",
    "TimedOut",
    "Throttl",
    "RateLimit",
    "TooManyRequests",
    "ServiceUnavailable",
    "TemporarilyUnavailable",
    "BusyLoading",
    "TryAgain",
    "NetworkError",
    "TransportError",
    "OperationalError",
    "gaierror",
    "BrokenPipe",
    "ConnectionReset",
    "ConnectionRefused",
    "ConnectionAborted",
    "OnceInProgress",
)
_POISON_SUFFIXES = (
    "ValidationError",
    "DecodeError",
    "DecodingError",
    "UnicodeError",
    "AuthenticationError",
    "AuthenticationFailed",
    "AuthorizationError",
    "NotAuthenticated",
    "PermissionDenied",
    "PermissionError",
    "Unauthorized",
    "Forbidden",
    "UnpicklingError",
    "SchemaError",
)
_HTTP_TRANSIENT = frozenset({408, 425, 429, 502, 503, 504})
_HTTP_POISON = frozenset({400, 401, 403, 405, 410, 422})


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) if response is not None else None
    if status is None:
        status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) and not isinstance(status, bool) else None


def _builtin(
    exc: BaseException | None, outcome: str, error_type: str
) -> tuple[Verdict, str] | None:
    if exc is None:
        return None
    status = _http_status(exc)
    if status in _HTTP_TRANSIENT:
        return Verdict.TRANSIENT, "http_status"
    if status in _HTTP_POISON:
        return Verdict.POISON, "http_status"
    own_budget = outcome == "timeout" or isinstance(exc, BudgetExceeded)
    _, bare = _names(exc)
    if not own_budget and (
        isinstance(exc, (ConnectionError, TimeoutError))
        or any(w in name for name in bare for w in _TRANSIENT_WORDS)
    ):
        return Verdict.TRANSIENT, "transient"
    if isinstance(exc, (UnicodeError, PermissionError)) or any(
        name.endswith(s) for name in bare for s in _POISON_SUFFIXES
    ):
        return Verdict.POISON, "non_retryable"
    return None


def _predicate(rules: Rules, failure: Failure) -> tuple[Verdict, str] | None:
    for predicate in rules.predicates:
        result = predicate(failure)
        if result is None:
            continue
        verdict = Verdict(result.value if isinstance(result, Verdict) else str(result))
        name = getattr(predicate, "__qualname__", None) or getattr(predicate, "__name__", "rule")
        return verdict, f"rule:{name}"
    return None


def rule_verdict(cfg: Guardrails, failure: Failure) -> tuple[Verdict, str] | None:
    """Steps 1-3: what the rules say without looking at earlier attempts."""
    chain = cfg.rules_for(failure.job_name)
    for rules in chain:
        found = _predicate(rules, failure)
        if found is not None:
            return found
    for rules in chain:
        if matches(failure.exc, failure.error_type, rules.transient):
            return Verdict.TRANSIENT, "transient"
        if matches(failure.exc, failure.error_type, rules.non_retryable):
            return Verdict.POISON, "non_retryable"
    if all(rules.defaults for rules in chain):
        return _builtin(failure.exc, failure.outcome, failure.error_type)
    return None


def describe(exc: BaseException | None, error_type: str | None, outcome: str) -> tuple[str, str]:
    """(error type, safe message) of a failure."""
    if exc is not None:
        return error_type or error_type_of(exc), safe_str(exc, 512)
    return error_type or outcome, ""


def build_failure(
    *,
    job_name: str,
    system: str,
    job_id: str | None,
    attempt: int,
    outcome: str,
    exc: BaseException | None,
    error_type: str | None,
) -> Failure:
    etype, message = describe(exc, error_type, outcome)
    return Failure(
        job_name=job_name,
        system=system,
        job_id=job_id,
        attempt=max(1, int(attempt)),
        outcome=outcome,
        error_type=etype,
        message=message,
        fingerprint=fingerprint(etype, message),
        exc=exc,
    )


def classify(
    failure: Failure, cfg: Guardrails | None = None, *, run_id: str | None = None
) -> Classification:
    """Classify one failed run, remembering it for the next attempt of the same job id.

    Classifying the same run twice (a child's span and its parent's counter) gives
    the same answer: the memory is keyed by job id and remembers the last run id
    and attempt.
    """
    from . import memory
    from .config import active

    cfg = active() if cfg is None else cfg
    ruled = rule_verdict(cfg, failure)
    entry = memory.record(cfg, failure, run_id, ruled)
    return Classification(
        verdict=Verdict(entry.verdict),
        reason=entry.reason,
        fingerprint=failure.fingerprint,
        error_type=failure.error_type,
        message=failure.message,
        repeats=entry.count,
        first_seen=entry.first,
        last_seen=entry.last,
    )
