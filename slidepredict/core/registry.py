"""One registry type for every "name -> implementation" table (stages, commands, report
sections, encoders, MIL heads): a decorator adds an entry, registration order is kept.

A name registered twice is logged and the later entry wins (so a plugin can replace a
built-in), or, for a registry made with ``unique=True``, is an error.

Built-ins whose module is heavy (torch) are entered by name as ``"module:attr"`` with
:meth:`Registry.register_lazy`: listing and checking names then imports nothing, and the
module is imported the first time its entry is looked up.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, ItemsView, ValuesView
from dataclasses import dataclass
from typing import Any, TypeVar, cast

T = TypeVar("T")
log = logging.getLogger("slidepredict")


@dataclass(frozen=True)
class _Lazy:
    """A placeholder for an entry not imported yet: ``"package.module:Attr"``."""

    target: str

    def load(self) -> Any:
        module, _, attr = self.target.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def points_at(self, obj: Any) -> bool:
        """True when ``obj`` is what this placeholder points at (its module registering it)."""
        return f"{getattr(obj, '__module__', '')}:{getattr(obj, '__qualname__', '')}" == self.target


class Registry(dict[str, T]):
    """A dict of named implementations filled by :meth:`register` or :meth:`register_lazy`.

    Names (``in``, ``len``, iteration, :meth:`names`) never import anything; looking an
    entry up (``reg[name]``, ``get``, ``values``, ``items``) imports a lazy one once.
    """

    def __init__(self, kind: str, *, unique: bool = False) -> None:
        super().__init__()
        self.kind = kind
        self.unique = unique

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REG.register("name")`` adds the decorated object under ``name``."""

        def deco(obj: T) -> T:
            self._check_duplicate(name, obj)
            super(Registry, self).__setitem__(name, obj)
            return obj

        return deco

    def register_lazy(self, name: str, target: str) -> None:
        """Add ``name`` as ``"module:attr"``, imported only when the entry is first looked up."""
        if ":" not in target:
            raise ValueError(f"{self.kind} {name!r}: lazy target must be 'module:attr', got {target!r}")
        lazy = _Lazy(target)
        self._check_duplicate(name, lazy)
        super().__setitem__(name, cast(T, lazy))

    def _check_duplicate(self, name: str, obj: Any) -> None:
        current = super().get(name)
        if name not in self or current is obj:
            return
        if isinstance(current, _Lazy) and (current == obj or current.points_at(obj)):
            return  # the same target again, or the built-in's own module registering itself
        if self.unique:
            where = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"
            raise ValueError(f"{self.kind} {name!r} is registered twice ({where})")
        log.warning("%s %r registered twice; the later one replaces the earlier", self.kind, name)

    def __getitem__(self, name: str) -> T:
        value = super().__getitem__(name)
        if isinstance(value, _Lazy):
            loaded = value.load()
            # Importing the module may have registered it already; store what was asked for.
            super().__setitem__(name, loaded)
            return cast(T, loaded)
        return value

    def get(self, name: str, default: T | None = None) -> T | None:  # type: ignore[override]
        """``reg[name]``, or ``default`` when the name is not registered."""
        return self[name] if name in self else default

    def values(self) -> ValuesView[T]:  # type: ignore[override]
        """Every entry, importing the lazy ones."""
        self.load_all()
        return super().values()

    def items(self) -> ItemsView[str, T]:  # type: ignore[override]
        """Every (name, entry), importing the lazy ones."""
        self.load_all()
        return super().items()

    def load_all(self) -> None:
        """Import every lazy entry now."""
        for name in list(self):
            _ = self[name]

    def names(self) -> list[str]:
        """Registered names in registration order; imports nothing."""
        return list(self)
