"""sandbox.merge_memory as data: what `up` writes to /sys/kernel/mm/ksm, and the hub's config."""

from __future__ import annotations

from pathlib import Path

from coursehub.hubconfig import Runtime, build
from coursehub.paths import StatePaths
from coursehub.settings.yamlfile import parse_settings
from coursehub.spawner import memmerge

RUNTIME = Runtime(StatePaths(Path("/s")), "/bin/chp", "/bin/python", Path("/e"))


def test_changes_turn_ksmd_on_and_fast_enough_and_leave_a_faster_setting_alone():
    assert memmerge.changes(memmerge.KsmState(True, 0, 100)) == {"run": 1, "pages_to_scan": 1000}
    assert memmerge.changes(memmerge.KsmState(True, 2, 100)) == {"run": 1, "pages_to_scan": 1000}
    assert memmerge.changes(memmerge.KsmState(True, 1, 5000)) == {}


def test_enable_writes_the_settings_and_says_what_it_changed(tmp_path: Path):
    (tmp_path / "run").write_text("0\n")
    (tmp_path / "pages_to_scan").write_text("100\n")
    changed, problem = memmerge.enable(tmp_path)
    assert problem is None
    assert (tmp_path / "run").read_text() == "1" and (tmp_path / "pages_to_scan").read_text() == "1000"
    assert changed == ["KSM: run = 1 (was 0)", "KSM: pages_to_scan = 1000 (was 100)"]
    assert memmerge.enable(tmp_path) == ([], None)  # a second `up` changes nothing


def test_a_kernel_without_ksm_is_said_once_and_changes_nothing(tmp_path: Path):
    changed, problem = memmerge.enable(tmp_path / "absent")
    assert changed == [] and problem and "no KSM" in problem
    assert memmerge.off_message(problem).startswith("Memory merging is OFF")


def test_merging_is_off_by_default_and_reaches_the_spawner_when_set():
    assert build(parse_settings(""), RUNTIME).SandboxSpawner.merge_memory is False
    assert build(parse_settings("sandbox: {merge_memory: true}"), RUNTIME).SandboxSpawner.merge_memory is True
