"""Turning odd runtime values into bounded, printable text without ever raising.

Exceptions whose ``__str__`` raises, multi-megabyte messages and unprintable
objects all reach jobpulse from user code; none may crash a worker.
"""

from __future__ import annotations

from typing import Any

MAX_TEXT = 1024


def safe_str(value: Any, limit: int = MAX_TEXT) -> str:
    """``str(value)``, truncated to ``limit`` characters; never raises."""
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - a broken __str__ is the user's, not ours
        try:
            text = f"<unprintable {type(value).__name__}>"
        except Exception:  # noqa: BLE001
            text = "<unprintable>"
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def error_type_of(exc: BaseException) -> str:
    """The qualified class name of an exception (builtins unqualified), per semconv."""
    cls = type(exc)
    module = getattr(cls, "__module__", "") or ""
    name = getattr(cls, "__qualname__", None) or cls.__name__
    if module in ("builtins", "__main__", ""):
        return str(name)
    return f"{module}.{name}"


def attribute_value(value: Any, limit: int = 256) -> Any:
    """A value OTel accepts as an attribute: primitives as they are, the rest as bounded text."""
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= limit else value[: limit - 1] + "…"
    return safe_str(value, limit)
