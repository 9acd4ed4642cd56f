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


def test_cpu_is_summed_per_group_most_first():
    from cpuaccount import by_group

    rows = [
        ["g1", "a", "1.0", "2.0", "5"],
        ["g2", "b", "0.5", "9.5", "3"],
        ["g1", "c", "0.0", "1.0", "1"],
    ]
    assert by_group(rows) == [("g2", 10.0, 3.0, 1), ("g1", 4.0, 6.0, 2)]
