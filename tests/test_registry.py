"""The shared registry: order kept, duplicates logged and replaced."""

from __future__ import annotations

import logging

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
