"""The shared registry: order kept, duplicates logged and replaced (or refused), lazy entries imported on lookup."""

from __future__ import annotations

import logging
import sys
import types

import pytest

from slidepredict.core.registry import Registry


def test_registry_keeps_order_and_warns_on_duplicates(caplog: pytest.LogCaptureFixture) -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("b")(1)
    reg.register("a")(2)
    assert reg.names() == ["b", "a"]
    with caplog.at_level(logging.WARNING, logger="slidepredict"):
        reg.register("b")(3)
    assert "thing 'b' registered twice; the later one replaces the earlier" in caplog.text
    assert reg["b"] == 3 and reg.names() == ["b", "a"]


def test_unique_registry_refuses_a_second_entry_under_a_name() -> None:
    reg: Registry[int] = Registry("encoder", unique=True)
    reg.register("a")(1)
    reg.register("a")(1)  # the same object again is not a duplicate
    with pytest.raises(ValueError, match="encoder 'a' is registered twice"):
        reg.register("a")(2)


def test_lazy_entry_is_imported_on_first_lookup_only(tmp_path, monkeypatch, caplog) -> None:
    """Names cost nothing; the module is imported on lookup and may register itself silently."""
    holder = types.ModuleType("lazy_holder")
    holder.REG = Registry("thing")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lazy_holder", holder)
    (tmp_path / "lazy_plugin.py").write_text(
        "from lazy_holder import REG\n\n@REG.register('p')\nclass Plugin:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazy_plugin", raising=False)
    reg = holder.REG
    reg.register("first")(object)
    reg.register_lazy("p", "lazy_plugin:Plugin")
    assert reg.names() == ["first", "p"] and "p" in reg and len(reg) == 2
    assert "lazy_plugin" not in sys.modules
    with caplog.at_level(logging.WARNING, logger="slidepredict"):
        cls = reg["p"]
    assert cls.__name__ == "Plugin" and reg.get("p") is cls and dict(reg.items())["p"] is cls
    assert "registered twice" not in caplog.text
    with pytest.raises(ValueError, match="'module:attr'"):
        reg.register_lazy("q", "lazy_plugin.Plugin")
