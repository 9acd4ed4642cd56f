"""Workshop accounts on a real hub: right and wrong passwords, lockout, disabled accounts."""

from __future__ import annotations

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from coursehub.clients.hubapi import PAGE

pytestmark = pytest.mark.hub


def test_right_password_logs_in_wrong_one_is_refused(fork_hub):
    (name,) = fork_hub.create_accounts("auth", 1)
    _, response = fork_hub.try_login(name, fork_hub.passwords[name])
    assert response.status_code == 302
    _, response = fork_hub.try_login(name, "not-the-password")
    assert response.status_code in (200, 403)
    assert "Invalid username or password" in response.text


def test_the_hub_recognises_every_option_coursehub_configures(fork_hub):
    # traitlets only warns about an option no class has, in the log, on every login: a setting that
    # silently does nothing (Spawner.cookie_options was one: JupyterHub hands spawners its own).
    (name,) = fork_hub.create_accounts("opts", 1)
    _, response = fork_hub.try_login(name, fork_hub.passwords[name])
    assert response.status_code == 302
    unknown = [line for line in fork_hub.log().splitlines() if "not recognized by" in line]
    assert not unknown, unknown


def test_a_class_behind_one_address_logs_in_at_once_and_nobody_is_locked_out(fork_hub):
    # 120 students behind one NAT address (here 127.0.0.1), all at once: more than the address's
    # threshold of failures (50) have their password checked together. Counted up front as failures,
    # they locked the address for ten minutes, for the whole class.
    names = fork_hub.create_accounts("nat", 120)
    with ThreadPoolExecutor(len(names)) as pool:
        codes = list(pool.map(lambda n: fork_hub.try_login(n, fork_hub.passwords[n])[1].status_code, names))
    assert codes == [302] * len(names), sorted(set(codes))
    # And the address is not locked afterwards: a late student gets in.
    assert fork_hub.try_login(names[0], fork_hub.passwords[names[0]])[1].status_code == 302


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


def still_in(hub, session: requests.Session, token: str) -> tuple[bool, bool]:
    """(the browser session still opens the hub's home, the API token still answers as its user)."""
    home = session.get(hub.url + "hub/home", allow_redirects=False, timeout=30)
    api = requests.get(hub.url + "hub/api/user", headers={"Authorization": f"token {token}"}, timeout=30)
    return home.status_code == 200, api.status_code == 200


def test_deleted_name_is_never_reissued_and_its_sessions_end(fork_hub):
    names = fork_hub.create_accounts("gone", 3)
    last = names[-1]
    token = fork_hub.token_for(last)
    session = fork_hub.login(last)
    assert still_in(fork_hub, session, token) == (True, True)
    fork_hub.spawn(last, token)
    fork_hub.cli("accounts", "delete", last, timeout=180)
    # The old participant's cookie, token and server are gone...
    assert still_in(fork_hub, session, token) == (False, False)
    assert fork_hub.api().json("GET", f"users/{last}")["servers"] == {}
    # ...and the next participant gets a new name, not the deleted one (nor its home).
    (new,) = set(fork_hub.create_accounts("gone", 1)) - set(names)  # the folder keeps older cards
    assert new > last
    assert fork_hub.api().request("GET", f"users/{new}").status_code == 404  # a fresh hub user


@pytest.mark.parametrize("action", ["disable", "reset"])
def test_disable_and_reset_end_sessions_and_tokens(fork_hub, action):
    (name,) = fork_hub.create_accounts(f"end{action[0]}", 1)
    token = fork_hub.token_for(name)
    session = fork_hub.login(name)
    assert still_in(fork_hub, session, token) == (True, True)
    fork_hub.cli(
        "accounts", action, name, *(["--out", str(fork_hub.root / "r")] if action == "reset" else [])
    )
    assert still_in(fork_hub, session, token) == (False, False)


def test_concurrent_wrong_guesses_are_not_all_checked(fork_hub):
    """Checking the lockout and counting the attempt are one step: a burst of parallel guesses gets no
    more password checks than max_failures (3 on the test hub), the rest are refused unchecked."""
    (name,) = fork_hub.create_accounts("burst", 1)
    guesses = 12
    sessions = []
    for _ in range(guesses):
        session = requests.Session()
        session.get(fork_hub.url + "hub/login", timeout=30)
        sessions.append(session)
    start = threading.Barrier(guesses)

    def guess(i: int) -> int:
        session = sessions[i]
        start.wait(60)
        return session.post(
            fork_hub.url + "hub/login",
            data={
                "username": name,
                "password": f"guess-{i}",
                "_xsrf": session.cookies.get("_xsrf", path="/hub/"),
            },
            allow_redirects=False,
            timeout=120,
        ).status_code

    with ThreadPoolExecutor(guesses) as pool:
        codes = list(pool.map(guess, range(guesses)))
    checked = [code for code in codes if code != 429]
    assert len(checked) <= 3, codes
    assert fork_hub.try_login(name, fork_hub.passwords[name])[1].status_code == 429


def test_the_api_client_lists_users_past_the_hubs_one_page_answer(fork_hub):
    """JupyterHub answers at most 200 users per request: `coursehub down`, `status` and the
    benchmark's cleanup (400 users) must see them all, and only active ones when they ask."""
    api = fork_hub.api()
    prefix = f"page{secrets.token_hex(2)}"
    names = [f"{prefix}-{i:03d}" for i in range(PAGE + 5)]
    api.json("POST", "users", json={"usernames": names})
    try:
        assert set(names) <= {user["name"] for user in api.users()}
        assert not set(names) & {user["name"] for user in api.users(state="active")}
    finally:
        for name in names:
            api.request("DELETE", f"users/{name}")
