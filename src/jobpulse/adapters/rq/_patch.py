"""Replace methods on RQ's classes and put the originals back, exactly.

Only functions defined on the class itself are replaced, so ``uninstall()``
restores each class's own ``__dict__`` entry and inherited methods stay
inherited. Each replacement keeps the original in ``__wrapped__``.
"""

from __future__ import annotations

from collections.abc import Callable
from types import FunctionType
from typing import Any

Factory = Callable[[Callable[..., Any]], Callable[..., Any]]


class Patches:
    def __init__(self) -> None:
        self._saved: list[tuple[type, str, Any]] = []

    def wrap(self, cls: type, name: str, factory: Factory) -> bool:
        """Replace ``cls.name`` with ``factory(original)``; False when ``cls`` does not
        define a plain function of that name (an RQ version without it)."""
        original = cls.__dict__.get(name)
        if not isinstance(original, FunctionType):
            return False
        replacement = factory(original)
        replacement.__wrapped__ = original  # type: ignore[attr-defined]
        replacement.__name__ = original.__name__
        replacement.__qualname__ = original.__qualname__
        replacement.__doc__ = original.__doc__
        setattr(cls, name, replacement)
        self._saved.append((cls, name, original))
        return True

    def restore(self) -> None:
        while self._saved:
            cls, name, original = self._saved.pop()
            setattr(cls, name, original)

    def __bool__(self) -> bool:
        return bool(self._saved)
