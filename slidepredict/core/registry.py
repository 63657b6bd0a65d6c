"""One registry type for every "name -> implementation" table (stages, commands, report
sections, MIL heads): a decorator adds an entry, registration order is kept, and a name
registered twice is logged (the later entry wins, so a plugin can replace a built-in)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("slidepredict")


class Registry(dict[str, T]):
    """A dict of named implementations filled by :meth:`register`."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REG.register("name")`` adds the decorated object under ``name``."""

        def deco(obj: T) -> T:
            if name in self and self[name] is not obj:
                log.warning("%s %r registered twice; the later one replaces the earlier", self.kind, name)
            self[name] = obj
            return obj

        return deco

    def names(self) -> list[str]:
        return list(self)
