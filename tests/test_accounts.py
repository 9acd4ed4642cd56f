"""Tests of workshop accounts: the store, lockout, cards and the JupyterHub authenticator."""

from __future__ import annotations

import asyncio
import csv
import logging
import re
import stat
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from argon2 import PasswordHasher
from tornado.web import HTTPError

from coursehub.auth.accounts import PASSWORD_ALPHABET, AccountStore, Credential
from coursehub.auth.cards import write_credentials
from coursehub.auth.lockout import LockoutPolicy, LockoutTracker, ip_key, user_key
from coursehub.auth.workshop import WorkshopAuthenticator
from coursehub.errors import AccountError

T0 = 1_700_000_000.0


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def store(tmp_path: Path) -> AccountStore:
    return AccountStore(tmp_path / "state" / "accounts.sqlite")


# --- AccountStore -------------------------------------------------------------


def test_db_created_private_with_parent(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "accounts.sqlite"
    AccountStore(path)
    assert path.exists()
    assert mode(path) == 0o600


def test_batch_numbering_continues_across_calls(store: AccountStore) -> None:
    first = store.create_batch("esip", 3)
    assert [c.username for c in first] == ["esip-01", "esip-02", "esip-03"]
    second = store.create_batch("esip", 2)
    assert [c.username for c in second] == ["esip-04", "esip-05"]
    other = store.create_batch("esip-b", 1)
    assert [c.username for c in other] == ["esip-b-01"]
    names = [a.username for a in store.list()]
    assert names == sorted(names) and len(names) == 6
    assert len({c.password for c in first + second + other}) == 6


def test_batch_start_skips_used_numbers_and_widens(store: AccountStore) -> None:
    store.create_batch("ws", 1, start=99)
    creds = store.create_batch("ws", 2, start=98)
    # One width per batch, set by its last number.
    assert [c.username for c in creds] == ["ws-098", "ws-100"]


def test_batch_does_not_reuse_deleted_numbers(store: AccountStore) -> None:
    store.create_batch("ws", 3)
    store.delete("ws-02")
    # A reused name could inherit the deleted student's files.
    assert [c.username for c in store.create_batch("ws", 1)] == ["ws-04"]
    # Even an explicit start never fills the gap: deleted names are retired.
    assert [c.username for c in store.create_batch("ws", 1, start=1)] == ["ws-05"]


@pytest.mark.parametrize("prefix", ["", "Esip", "1abc", "a_b", "a b", "a" * 21, "-x", "é"])
def test_bad_prefix_rejected(store: AccountStore, prefix: str) -> None:
    with pytest.raises(AccountError, match="invalid prefix"):
        store.create_batch(prefix, 1)


@pytest.mark.parametrize("count", [0, -1, 5001])
def test_bad_count_rejected(store: AccountStore, count: int) -> None:
    with pytest.raises(AccountError, match="1 to 5000"):
        store.create_batch("esip", count)
    assert store.list() == []


def test_password_format(store: AccountStore) -> None:
    (cred,) = store.create_batch("p", 1)
    assert re.fullmatch(r"[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}", cred.password)
    assert not set(cred.password) & set("0O1lI")
    assert set(cred.password.replace("-", "")) <= set(PASSWORD_ALPHABET)


def test_verify_right_wrong_disabled_unknown(store: AccountStore) -> None:
    (cred,) = store.create_batch("esip", 1)
    assert store.verify(cred.username, cred.password) is True
    assert store.verify(cred.username, cred.password + "x") is False
    assert store.verify(cred.username, "") is False
    assert store.verify("nobody", cred.password) is False
    store.disable(cred.username)
    assert store.verify(cred.username, cred.password) is False
    assert store.list()[0].enabled is False
    store.enable(cred.username)
    assert store.verify(cred.username, cred.password) is True


def test_create_with_password_and_duplicate(store: AccountStore) -> None:
    cred = store.create("alice", "correct horse")
    assert cred == Credential("alice", "correct horse")
    assert store.verify("alice", "correct horse")
    with pytest.raises(AccountError, match="already exists"):
        store.create("alice")
    with pytest.raises(AccountError, match="invalid username"):
        store.create("Alice")
    with pytest.raises(AccountError, match="characters"):
        store.create("bob", "short")


def test_ensure_admin(store: AccountStore) -> None:
    cred = store.ensure_admin("admin")
    assert cred is not None and store.verify("admin", cred.password)
    assert store.ensure_admin("admin") is None
    info = store.list()[0]
    assert info.is_admin and info.enabled and info.locked_until is None
    store.create("teacher")
    assert store.ensure_admin("teacher") is None
    assert store.is_admin("teacher")


def test_reset_changes_password_and_clears_lockout(store: AccountStore) -> None:
    (old,) = store.create_batch("esip", 1)
    tracker = LockoutTracker(store, LockoutPolicy(max_failures=2))
    keys = [user_key(old.username)]
    tracker.record_failure(keys, T0)
    tracker.record_failure(keys, T0)
    assert tracker.check(keys, T0) is not None
    new = store.reset(old.username)
    assert new.username == old.username and new.password != old.password
    assert store.verify(old.username, old.password) is False
    assert store.verify(new.username, new.password) is True
    assert tracker.check(keys, T0) is None


def test_delete(store: AccountStore) -> None:
    (cred,) = store.create_batch("esip", 1)
    store.delete(cred.username)
    assert store.list() == []
    assert store.verify(cred.username, cred.password) is False


@pytest.mark.parametrize("action", ["disable", "enable", "delete", "reset"])
def test_unknown_username_errors(store: AccountStore, action: str) -> None:
    with pytest.raises(AccountError, match=r"'esip-07' does not exist: see `coursehub accounts"):
        getattr(store, action)("esip-07")


def test_verify_rehashes_outdated_hash(tmp_path: Path) -> None:
    path = tmp_path / "accounts.sqlite"
    weak = AccountStore(path, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    weak.create("alice", "correct horse")
    with weak.connect() as conn:
        (before,) = conn.execute("SELECT password_hash FROM accounts").fetchone()
    store = AccountStore(path)
    assert store.verify("alice", "correct horse")
    with store.connect() as conn:
        (after,) = conn.execute("SELECT password_hash FROM accounts").fetchone()
    assert after != before and not store.hasher.check_needs_rehash(after)
    assert store.verify("alice", "correct horse")


def _batch_in_process(path: str) -> list[str]:
    return [c.username for c in AccountStore(path).create_batch("par", 3)]


def test_batches_from_several_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "accounts.sqlite")
    AccountStore(path)
    with ProcessPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(_batch_in_process, [path] * 3))
    names = [n for batch in results for n in batch]
    assert sorted(names) == [f"par-{i:02d}" for i in range(1, 10)]


def test_no_password_in_logs(store: AccountStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    creds = store.create_batch("esip", 2) + [store.create("alice"), store.reset("alice")]
    store.verify("alice", "wrong password here")
    for cred in creds:
        assert cred.password not in caplog.text
    assert "wrong password here" not in caplog.text


# --- cards --------------------------------------------------------------------


def test_cards_written_private(store: AccountStore, tmp_path: Path) -> None:
    creds = store.create_batch("esip", 2)
    out = tmp_path / "cards"
    csv_path, html_path = write_credentials(creds, "https://hub.example.org/", out, "esip")
    assert (csv_path.name, html_path.name) == ("esip.csv", "esip.html")
    assert mode(csv_path) == 0o600 and mode(html_path) == 0o600
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [
        {"username": c.username, "password": c.password, "hub_url": "https://hub.example.org/"} for c in creds
    ]
    page = html_path.read_text()
    assert all(c.username in page and c.password in page for c in creds)
    assert "@media print" in page


def test_cards_escape_hostile_url(tmp_path: Path) -> None:
    url = 'https://x.org/"><script>alert(1)</script>'
    _, html_path = write_credentials([Credential("a-01", "abcd-efgh-ijkm")], url, tmp_path, "s")
    page = html_path.read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;" in page


def test_cards_refuse_overwrite(tmp_path: Path) -> None:
    creds = [Credential("a-01", "abcd-efgh-ijkm")]
    (tmp_path / "s.html").write_text("earlier cards")
    with pytest.raises(AccountError, match=r"s\.html already exists.*--out"):
        write_credentials(creds, "https://hub/", tmp_path, "s")
    assert not (tmp_path / "s.csv").exists()
    assert (tmp_path / "s.html").read_text() == "earlier cards"


# --- lockout ------------------------------------------------------------------


def test_lockout_after_max_failures_and_expiry(store: AccountStore) -> None:
    tracker = LockoutTracker(store, LockoutPolicy(max_failures=5, window=300, lockout=600))
    keys = [user_key("esip-01"), ip_key("10.0.0.1")]
    for i in range(4):
        tracker.record_failure(keys, T0 + i)
        assert tracker.check(keys, T0 + i) is None
    tracker.record_failure(keys, T0 + 4)
    assert tracker.check(keys, T0 + 4) == pytest.approx(600)
    assert tracker.check(keys, T0 + 304) == pytest.approx(300)
    # Locked keys stay locked even past the counting window.
    tracker.record_failure(keys, T0 + 500)
    assert tracker.check(keys, T0 + 500) == pytest.approx(104)
    assert tracker.check(keys, T0 + 605) is None
    # After expiry one more failure starts a fresh count instead of re-locking.
    tracker.record_failure(keys, T0 + 606)
    assert tracker.check(keys, T0 + 606) is None


def test_failures_outside_window_do_not_lock(store: AccountStore) -> None:
    tracker = LockoutTracker(store, LockoutPolicy(max_failures=3, window=60))
    keys = [user_key("esip-01")]
    for i in range(6):
        tracker.record_failure(keys, T0 + i * 40)
        assert tracker.check(keys, T0 + i * 40) is None


def test_delay_grows_and_is_capped(store: AccountStore) -> None:
    policy = LockoutPolicy(max_failures=100, slow_after=2, max_delay=5)
    tracker = LockoutTracker(store, policy)
    keys = [user_key("esip-01")]
    delays = []
    for i in range(8):
        tracker.record_failure(keys, T0 + i)
        delays.append(tracker.delay_for(keys, T0 + i))
    assert delays[:2] == [0, 0]
    assert delays == sorted(delays)
    assert delays[2] > 0 and delays[3] > delays[2]
    assert max(delays) == 5


def test_success_clears_user_key_only(store: AccountStore) -> None:
    tracker = LockoutTracker(store, LockoutPolicy(max_failures=3, ip_max_failures=3))
    keys = [user_key("esip-01"), ip_key("10.0.0.1")]
    tracker.record_failure(keys, T0)
    tracker.record_failure(keys, T0)
    tracker.record_success(keys)
    tracker.record_failure([user_key("esip-01")], T0)
    assert tracker.check([user_key("esip-01")], T0) is None
    tracker.record_failure([ip_key("10.0.0.1")], T0)
    assert tracker.check([ip_key("10.0.0.1")], T0) is not None


def test_address_has_higher_threshold(store: AccountStore) -> None:
    tracker = LockoutTracker(store, LockoutPolicy(max_failures=2, ip_max_failures=4))
    addr = [ip_key("10.0.0.1")]
    for i in range(3):
        tracker.record_failure([user_key(f"student-{i}"), *addr], T0)
    assert tracker.check(addr, T0) is None
    tracker.record_failure([user_key("student-9"), *addr], T0)
    assert tracker.check(addr, T0) is not None
    assert tracker.check([user_key("student-0")], T0) is None


def test_lockout_persists_across_store_instances(tmp_path: Path) -> None:
    path = tmp_path / "accounts.sqlite"
    store = AccountStore(path)
    store.create("alice")
    policy = LockoutPolicy(max_failures=2)
    for _ in range(2):
        LockoutTracker(store, policy).record_failure([user_key("alice")], T0)
    reopened = AccountStore(path)
    assert LockoutTracker(reopened, policy).check([user_key("alice")], T0 + 1) is not None
    (info,) = reopened.list(now=T0 + 1)
    assert info.locked_until is not None
    assert info.locked_until.timestamp() == pytest.approx(T0 + 600)
    assert reopened.list(now=T0 + 601)[0].locked_until is None


# --- WorkshopAuthenticator ----------------------------------------------------


def fake_handler(addr: str = "192.0.2.7") -> SimpleNamespace:
    """A login request as configurable-http-proxy forwards it (the peer last in X-Forwarded-For)."""
    headers = {"X-Forwarded-For": f"198.51.100.9, {addr}", "X-Real-Ip": "203.0.113.1"}
    return SimpleNamespace(request=SimpleNamespace(remote_ip="203.0.113.1", headers=headers))


def make_auth(path: Path, **traits: object) -> WorkshopAuthenticator:
    traits.setdefault("max_failure_delay", 0.01)
    # fake_handler stands for a request the hub's proxy delivered (no socket to check here).
    traits.setdefault("verify_proxy_peer", False)
    return WorkshopAuthenticator(accounts_db=str(path), **traits)


def login(auth: WorkshopAuthenticator, username: str, password: str, addr: str = "192.0.2.7"):
    data = {"username": username, "password": password}
    return asyncio.run(auth.authenticate(fake_handler(addr), data))


def test_authenticator_success_and_failure(tmp_path: Path) -> None:
    path = tmp_path / "accounts.sqlite"
    (cred,) = AccountStore(path).create_batch("esip", 1)
    auth = make_auth(path)
    assert login(auth, cred.username, cred.password) == {"name": cred.username}
    assert login(auth, cred.username.upper(), cred.password) == {"name": cred.username}
    assert login(auth, cred.username, "wrong-wrong-wrong") is None
    assert login(auth, "nobody", cred.password) is None
    assert login(auth, cred.username, "") is None
    assert asyncio.run(auth.authenticate(fake_handler(), {})) is None


def test_authenticator_locks_out_with_429(tmp_path: Path) -> None:
    path = tmp_path / "accounts.sqlite"
    (cred,) = AccountStore(path).create_batch("esip", 1)
    auth = make_auth(path, max_failures=3, lockout_seconds=600)
    for _ in range(3):
        assert login(auth, cred.username, "wrong-wrong-wrong") is None
    with pytest.raises(HTTPError) as err:
        login(auth, cred.username, cred.password)
    assert err.value.status_code == 429
    message = err.value.log_message
    assert message == "Too many failed logins: try again in 10 minutes."
    assert cred.password not in str(err.value)
    # Another student behind the same address is not locked out by one user's typos.
    (other,) = AccountStore(path).create_batch("esip", 1)
    assert login(auth, other.username, other.password) == {"name": other.username}


def test_authenticator_unknown_user_also_locks(tmp_path: Path) -> None:
    auth = make_auth(tmp_path / "accounts.sqlite", max_failures=2)
    for _ in range(2):
        assert login(auth, "ghost", "guess-guess-guess") is None
    with pytest.raises(HTTPError) as err:
        login(auth, "ghost", "guess-guess-guess")
    assert err.value.status_code == 429


def test_check_allowed_and_full_hub_flow(tmp_path: Path) -> None:
    path = tmp_path / "accounts.sqlite"
    store = AccountStore(path)
    (cred,) = store.create_batch("esip", 1)
    admin = store.ensure_admin("teacher")
    assert admin is not None
    auth = make_auth(path)
    assert auth.allow_all is False
    assert auth.check_allowed(cred.username) is True
    assert auth.check_allowed("nobody") is False
    store.disable(cred.username)
    assert auth.check_allowed(cred.username) is False
    store.enable(cred.username)

    data = {"username": cred.username, "password": cred.password}
    user = asyncio.run(auth.get_authenticated_user(fake_handler(), data))
    assert user is not None and user["name"] == cred.username and not user["admin"]
    data = {"username": "teacher", "password": admin.password}
    user = asyncio.run(auth.get_authenticated_user(fake_handler(), data))
    assert user is not None and user["admin"] is True

    user_obj = SimpleNamespace(name=cred.username)
    assert asyncio.run(auth.refresh_user(user_obj)) is True
    store.disable(cred.username)
    assert asyncio.run(auth.refresh_user(user_obj)) is False


def test_deleted_names_are_never_reissued(store: AccountStore) -> None:
    names = [c.username for c in store.create_batch("ws", 3)]
    store.delete(names[-1])
    assert [c.username for c in store.create_batch("ws", 1)] == ["ws-04"]
    with pytest.raises(AccountError, match="never reissued"):
        store.create(names[-1])
    assert [c.username for c in store.create_batch("ws", 1, start=3)] == ["ws-05"]


def test_a_classroom_logging_in_at_once_behind_one_address_is_never_locked(store: AccountStore) -> None:
    # A class behind one NAT address: more correct logins in flight at once than the address's
    # threshold. An attempt in flight is no failure: only wrong passwords count against an address.
    tracker = LockoutTracker(store, LockoutPolicy(max_failures=3, ip_max_failures=3))
    addr = ip_key("10.0.0.1")
    students = [[user_key(f"student-{i}"), addr] for i in range(10)]
    assert [tracker.begin_attempt(keys, T0) for keys in students] == [None] * 10
    for keys in students:
        tracker.record_success(keys)
    assert tracker.check([addr], T0) is None
    # Wrong passwords still lock the address at its threshold (each counted once it is known wrong).
    for i in range(3):
        keys = [user_key(f"guess-{i}"), addr]
        assert tracker.begin_attempt(keys, T0) is None
        tracker.record_failure(keys, T0, begun=True)
    assert tracker.begin_attempt([user_key("student-0"), addr], T0) is not None


def test_attempts_at_one_username_still_count_before_their_password_is_checked(store: AccountStore) -> None:
    # A burst of guesses at one account cannot all pass the check before the first is counted.
    tracker = LockoutTracker(store, LockoutPolicy(max_failures=3, ip_max_failures=50))
    keys = [user_key("alice"), ip_key("10.0.0.1")]
    answers = [tracker.begin_attempt(keys, T0) for _ in range(5)]
    assert answers[:3] == [None] * 3 and all(a is not None for a in answers[3:])
