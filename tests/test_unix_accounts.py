"""Students' Unix accounts (real useradd, real PAM): nobody logs in with them outside the sandbox."""

from __future__ import annotations

import grp
import secrets
import subprocess
from pathlib import Path

import pytest

from coursehub.spawner.accounts import (
    STUDENT_GROUP,
    ensure_unix_account,
    login_fixes,
    owner_marker,
    remove_account_and_home,
    unix_name,
)


@pytest.fixture
def prefix(tmp_path):
    """A fresh account prefix; every account made with it is deleted afterwards."""
    prefix = "u" + secrets.token_hex(2) + "-"
    made: list[str] = []
    yield prefix, tmp_path / "homes", made
    for name in made:
        remove_account_and_home(unix_name(name, prefix), tmp_path / "homes")


def expiry_day(name: str) -> str:
    """The account expiry field of /etc/shadow (days since 1970; empty: never)."""
    for line in Path("/etc/shadow").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields[7]
    raise AssertionError(f"{name} is not in /etc/shadow")


def pam_lets_in(name: str) -> bool:
    """Whether PAM's account phase (common-account, as sshd runs it) accepts `name`: su from root."""
    result = subprocess.run(
        ["su", "-s", "/bin/sh", "-c", "true", name], capture_output=True, text=True, timeout=30
    )
    return result.returncode == 0


def test_a_new_account_is_expired_for_pam_and_in_the_students_group(prefix):
    prefix, homes, made = prefix
    made.append("ann")
    account = ensure_unix_account("ann", prefix, homes)
    day = expiry_day(account.name)
    assert day != "" and int(day) <= 1, day
    assert account.name in grp.getgrnam(STUDENT_GROUP).gr_mem
    assert not pam_lets_in(account.name)
    assert account.home.is_dir()  # coursehub itself never needed PAM: the account still serves


def test_an_account_made_before_is_closed_at_its_next_spawn(prefix):
    prefix, homes, made = prefix
    made.append("old")
    name = unix_name("old", prefix)
    # As coursehub made accounts before: no expiry, no group.
    subprocess.run(
        [
            "useradd",
            "--no-create-home",
            "--home-dir",
            str(homes / name),
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            owner_marker("old"),
            "--user-group",
            name,
        ],
        check=True,
        timeout=60,
    )
    assert pam_lets_in(name)
    account = ensure_unix_account("old", prefix, homes)
    assert int(expiry_day(name)) <= 1
    assert name in grp.getgrnam(STUDENT_GROUP).gr_mem
    assert not pam_lets_in(name)
    assert ensure_unix_account("old", prefix, homes) == account  # idempotent


@pytest.mark.parametrize(
    ("expiry", "in_group", "fixes"),
    [
        ("", False, ["--expiredate", "1970-01-02", "--append", "--groups", "coursehub-students"]),
        ("1", True, []),
        ("0", True, []),
        ("20000", True, ["--expiredate", "1970-01-02"]),  # expires one day, but logs in until then
        ("1", False, ["--append", "--groups", "coursehub-students"]),
    ],
)
def test_login_fixes(expiry, in_group, fixes):
    assert login_fixes(expiry, in_group) == fixes
