"""Pure parts of the hostile-user defences and of the reliability report."""

from __future__ import annotations

from pathlib import Path

from coursehub.spawner.bwrap import HIDING_TMPFS_SIZE, SandboxSpec, bwrap_args
from coursehub.tools.reliability import latest, render


def spec(**extra) -> SandboxSpec:
    return SandboxSpec(
        home=Path("/h/ch-a"),
        home_root=Path("/h"),
        environment=Path("/s/envs/e"),
        hidden=(Path("/s"),),
        **extra,
    )


def test_private_tmp_is_capped_and_hiding_tmpfs_are_small_and_read_only():
    joined = " ".join(bwrap_args(spec(tmp_size=200 << 20), ["srv"]))
    assert f"--size {200 << 20} --tmpfs /tmp" in joined
    assert f"--size {100 << 20} --tmpfs /dev/shm" in joined
    for folder in ("/run", "/h", "/s"):
        assert f"--size {HIDING_TMPFS_SIZE} --tmpfs {folder}" in joined
        # read-only only after the binds inside it were made
        assert joined.index(f"--remount-ro {folder}") > joined.index("--bind /h/ch-a /h/ch-a")


def test_no_size_means_the_kernel_default():
    args = bwrap_args(spec(), ["srv"])
    assert "--tmpfs /tmp" in " ".join(args) and "--size 0" not in " ".join(args)


def test_report_keeps_the_latest_record_per_scenario_and_marks_failures():
    rows = [
        {"scenario": "b", "mode": "fork", "attempts": 1, "held": True, "what": "x", "figures": {"n": 1}},
        {"scenario": "a", "mode": "", "attempts": 2, "held": False, "what": "y|z", "figures": {"f": 1.5}},
        {"scenario": "b", "mode": "fork", "attempts": 3, "held": True, "what": "x", "figures": {"n": 2}},
    ]
    assert [r["attempts"] for r in latest(rows)] == [2, 3]
    page = render(rows)
    assert "1 of 2 scenarios held." in page
    assert "| a | - | 2 | **NO** | y/z | f 1.5 |" in page
    assert "n 2" in page and "n 1" not in page
