"""The suite itself: it cannot pass by quietly not running its hub tier."""

from __future__ import annotations

import conftest
import pytest


def test_hub_tier_fails_and_says_why_without_root(monkeypatch):
    monkeypatch.setattr(conftest.os, "geteuid", lambda: 1000)
    with pytest.raises(BaseException) as outcome:
        conftest.needs_root_sandbox()
    assert isinstance(outcome.value, pytest.fail.Exception), "a skip lets the suite pass without its hub tier"
    assert "root" in str(outcome.value) and "-m 'not hub'" in str(outcome.value)
