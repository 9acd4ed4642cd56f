"""Workshop accounts on a real hub: right and wrong passwords, lockout, disabled accounts."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.hub


def test_right_password_logs_in_wrong_one_is_refused(fork_hub):
    (name,) = fork_hub.create_accounts("auth", 1)
    _, response = fork_hub.try_login(name, fork_hub.passwords[name])
    assert response.status_code == 302
    _, response = fork_hub.try_login(name, "not-the-password")
    assert response.status_code in (200, 403)
    assert "Invalid username or password" in response.text


def test_burst_of_wrong_passwords_locks_the_account(fork_hub):
    (name,) = fork_hub.create_accounts("lock", 1)
    codes = [fork_hub.try_login(name, f"guess-{i}")[1].status_code for i in range(4)]
    assert codes[-1] == 429, codes
    # Locked: even the right password is refused now, with a message saying what to do.
    _, response = fork_hub.try_login(name, fork_hub.passwords[name])
    assert response.status_code == 429
    assert "try again" in response.text
    # An admin reset lifts the lockout and the new password works.
    out = fork_hub.cli("accounts", "reset", name, "--out", str(fork_hub.root / "reset")).stdout
    new_password = out.split(":", 1)[1].split()[0]
    _, response = fork_hub.try_login(name, new_password)
    assert response.status_code == 302


def test_disabled_account_cannot_log_in(fork_hub):
    (name,) = fork_hub.create_accounts("dis", 1)
    fork_hub.cli("accounts", "disable", name)
    _, response = fork_hub.try_login(name, fork_hub.passwords[name])
    assert response.status_code != 302


def test_unknown_user_is_refused(fork_hub):
    _, response = fork_hub.try_login("nobody-here", "whatever-password")
    assert response.status_code != 302
