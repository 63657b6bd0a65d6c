"""Registered names the config may refer to, looked up lazily so loading a config stays cheap."""

from __future__ import annotations

import importlib


# registry key -> (module, function returning the registered names)
REGISTRIES: dict[str, tuple[str, str]] = {
    "encoders": ("slidepredict.features", "list_encoders"),
    "mil": ("slidepredict.mil", "list_mil"),
}


def known_names(registry: str) -> list[str] | None:
    """Sorted registered names, or None when that stage is not installed in this build."""
    module, fn = REGISTRIES[registry]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("slidepredict"):
            return None
        raise
    return sorted(getattr(mod, fn)())
