"""Crashes mid-burst: kill -9 the hub, the proxy, a fork server; users recover and lose no file."""

from __future__ import annotations

import hashlib
import os
import pwd
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import Hub, network_leftovers, wait_for
from reliability import answers, forkserver_pids, full_counts, processes_of_uids, record, scaled

from coursehub.clients.hubapi import HubAPI
from coursehub.spawner import cgroups
from coursehub.spawner.accounts import ensure_unix_account

pytestmark = pytest.mark.hub
FILES_PER_USER = 3


def write_files(hub: Hub, name: str) -> dict[Path, str]:
    """Files of several sizes in the user's home, owned by them; their sha256."""
    account = ensure_unix_account(name, hub.prefix, hub.home_root)
    sums = {}
    for i in range(FILES_PER_USER):
        folder = account.home / "work" / f"part{i}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"data{i}.bin"
        data = os.urandom(4096 * 16**i)  # 4 KiB, 64 KiB, 1 MiB
        path.write_bytes(data)
        for p in (account.home / "work", folder, path):
            os.chown(p, account.uid, account.gid)
        sums[path] = hashlib.sha256(data).hexdigest()
    return sums


def damaged(sums: dict[Path, str]) -> list[str]:
    """Files that are missing or whose content changed."""
    bad = []
    for path, digest in sums.items():
        try:
            if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                bad.append(f"{path}: changed")
        except OSError as exc:
            bad.append(f"{path}: {exc}")
    return bad


def recover(hub: Hub, name: str, token: str) -> tuple[str, list[str]]:
    """After the restart: 'running' (re-attached) or 'restarted' (on retry); the messages seen."""
    api = HubAPI(hub.url, token)
    server = api.json("GET", f"users/{name}")["servers"].get("", {})
    if server.get("ready") and answers(hub, name, token):
        return "running", []
    messages = []
    for _ in range(3):
        response = api.request("POST", f"users/{name}/server")
        if response.status_code in (201, 202) or "already" in response.text:
            try:
                wait_for(
                    lambda: (
                        api.json("GET", f"users/{name}")["servers"].get("", {}).get("ready")
                        or not api.json("GET", f"users/{name}")["servers"]
                    ),
                    timeout=300,
                    what=f"{name}'s server",
                )
            except pytest.fail.Exception:
                messages.append("no answer within 300 s")
                continue
            if answers(hub, name, token):
                return "restarted", messages
            messages.append("started, then stopped")
        else:
            # A refusal must say something a person can act on, not a traceback.
            message = response.json().get("message", "") if response.content else ""
            messages.append(f"{response.status_code}: {message}")
            assert message and "Traceback" not in message, response.text
        time.sleep(2)
    return "failed", messages


def leftovers(hub: Hub) -> list[str]:
    """Processes, cgroups, fork servers, proxy, mounts and network namespaces of this hub still there."""
    uids = {e.pw_uid for e in pwd.getpwall() if e.pw_name.startswith(hub.prefix)}
    found = [f"process {pid} of a student" for pid in processes_of_uids(uids)]
    found += [f"cgroup {g.dirs[0]}" for g in cgroups.all_groups() if g.dirs[0].name.startswith(hub.prefix)]
    found += [f"fork server {pid}" for pid in forkserver_pids(hub.state_dir)]
    found += [f"log collector {pid}" for pid in log_collectors(hub)]
    proxy = subprocess.run(
        ["pgrep", "-f", f"--api-port {hub_setting(hub, 'proxy_api_port')}"], capture_output=True, text=True
    )
    found += [f"proxy {pid}" for pid in proxy.stdout.split()]
    mounts = Path("/proc/self/mountinfo").read_text()
    found += [f"mount {line}" for line in mounts.splitlines() if str(hub.root) in line]
    return found + network_leftovers(hub)


def log_collectors(hub: Hub) -> list[int]:
    """The fork servers' log collectors of this hub (`forkserver.py --collect FD SOCKET`)."""
    marker = f"{hub.state_dir}".encode()
    found = []
    for entry in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes() if entry.isdigit() else b""
        except OSError:
            continue
        if b"forkserver.py\0--collect" in cmdline and marker in cmdline:
            found.append(int(entry))
    return found


def burst(hub: Hub, tokens: dict[str, str], stop: threading.Event) -> None:
    """Every user asks for their server at once (requests cut by the crash are expected)."""

    def ask(name: str) -> None:
        if stop.is_set():
            return
        try:
            HubAPI(hub.url, tokens[name]).request("POST", f"users/{name}/server", timeout=120)
        except Exception:  # noqa: BLE001 - the hub may die under this request
            pass

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(ask, tokens))


def ready_count(hub: Hub) -> int:
    try:
        return sum(1 for u in hub.api().users() if u["servers"].get("", {}).get("ready"))
    except Exception:  # noqa: BLE001
        return 0


# An exec-mode start costs ~4 CPU-s: 50 of them, twice, on a busy 2-core machine exceed pytest's 600 s.
@pytest.mark.timeout(max(600, 40 * scaled(50, 6)))
@pytest.mark.parametrize("mode", ["fork", "exec"])
def test_kill9_hub_mid_burst_loses_no_server_and_no_file(make_hub, mode):
    if mode == "exec" and not full_counts():
        # A hub killed and restarted with exec-mode servers running is test_hub_restart's, in every run;
        # the burst of them (4 CPU-s a start) is left to `./run reliability` (keeps CI under 12 min).
        pytest.skip("exec mode's burst runs at full counts only (./run reliability)")
    hub = make_hub(sandbox={"spawn_mode": mode}, hub={"concurrent_spawn_limit": 100})
    count = scaled(50, 6)
    names = hub.create_accounts("burst", count)
    tokens = {name: hub.token_for(name) for name in names}
    sums: dict[Path, str] = {}
    for name in names:
        sums.update(write_files(hub, name))

    stop = threading.Event()
    asking = threading.Thread(target=burst, args=(hub, tokens, stop))
    asking.start()
    # Mid-burst: as soon as the first servers are ready, the rest still starting.
    wait_for(lambda: ready_count(hub) >= max(1, count // 5), timeout=600, what="the first servers")
    at_kill = ready_count(hub)
    hub.kill9()
    stop.set()
    asking.join(300)
    hub.start()
    # Servers whose start the crash cut short run on, unknown to the new hub, until their
    # user's next start or `down` sweeps their cgroup: count them.
    known = sum(1 for u in hub.api().users() if u["servers"])
    orphans = len([g for g in cgroups.all_groups() if g.dirs[0].name.startswith(hub.prefix)]) - known

    with ThreadPoolExecutor(8) as pool:
        outcomes = dict(zip(names, pool.map(lambda n: recover(hub, n, tokens[n]), names), strict=True))
    kinds = [kind for kind, _ in outcomes.values()]
    # A sample of users run code (the others answered through the proxy).
    ran = [hub.run(n, tokens[n], "print(6 * 7)").strip() for n in names[:3]]
    bad_files = damaged(sums)

    hub.cli("down")
    wait_for(lambda: not leftovers(hub), timeout=60, what="everything of the hub to be gone after `down`")
    bad_after_down = damaged(sums)
    # Accounts and homes stay by design: a student's files outlive the hub (see docs/reliability.md).
    accounts_kept = all(pwd.getpwnam(hub.prefix + n) for n in names)
    held = kinds.count("failed") == 0 and not bad_files and not bad_after_down and ran == ["42"] * 3
    record(
        "crash: kill -9 the hub mid-burst",
        "each user's server answers (re-attached or started on retry); files intact; nothing left after down",
        count,
        held,
        mode=mode,
        ready_at_kill=at_kill,
        unknown_sandboxes_after_restart=orphans,
        reattached=kinds.count("running"),
        started_on_retry=kinds.count("restarted"),
        failed=kinds.count("failed"),
        retry_messages=sum(len(m) for _, m in outcomes.values()),
        files_checked=len(sums),
        files_damaged=len(bad_files) + len(bad_after_down),
        accounts_kept=accounts_kept,
    )
    assert kinds.count("failed") == 0, {n: o for n, o in outcomes.items() if o[0] == "failed"}
    assert ran == ["42"] * 3
    assert not bad_files and not bad_after_down, bad_files + bad_after_down
    assert accounts_kept


def hub_setting(hub: Hub, key: str) -> int:
    import yaml

    return yaml.safe_load(hub.config.read_text())["hub"][key]


def test_kill9_proxy_and_fork_server_while_servers_run(make_hub):
    hub = make_hub(sandbox={"spawn_mode": "fork"})
    alice, bob, carol = hub.create_accounts("svc", 3)
    tokens = {n: hub.token_for(n) for n in (alice, bob, carol)}
    for name in (alice, bob):
        hub.spawn(name, tokens[name])

    proxy = int((hub.state_dir / "proxy.pid").read_text())
    os.kill(proxy, signal.SIGKILL)
    # JupyterHub checks its proxy every few seconds, starts a new one and restores the routes.
    for name in (alice, bob):
        wait_for(lambda n=name: answers(hub, n, tokens[n]), timeout=120, what=f"{name}'s URL after the proxy")
    new_proxy = int((hub.state_dir / "proxy.pid").read_text())
    proxy_ok = new_proxy != proxy and all(
        hub.run(n, tokens[n], "print(1 + 1)").strip() == "2" for n in (alice, bob)
    )

    (old_fork,) = forkserver_pids(hub.state_dir)
    os.kill(old_fork, signal.SIGKILL)
    # Running servers do not depend on their fork server; new starts get a new one.
    still = all(hub.run(n, tokens[n], "print(2 + 2)").strip() == "4" for n in (alice, bob))
    hub.spawn(carol, tokens[carol])
    hub.api().stop_server(alice)
    wait_for(lambda: not hub.api().json("GET", f"users/{alice}")["servers"], what=f"{alice}'s stop")
    hub.spawn(alice, tokens[alice])
    forks = forkserver_pids(hub.state_dir)
    fork_ok = still and old_fork not in forks and len(forks) == 1
    fork_ok = fork_ok and all(hub.run(n, tokens[n], "print(3 + 3)").strip() == "6" for n in (alice, carol))

    hub.cli("down")
    wait_for(lambda: not leftovers(hub), timeout=60, what="everything of the hub to be gone after `down`")
    record(
        "crash: kill -9 the proxy",
        "a new proxy is started, routes restored: users' URLs answer and kernels run",
        2,
        proxy_ok,
        mode="fork",
    )
    record(
        "crash: kill -9 the fork server",
        "running servers keep working; the next start gets a new fork server; nothing left after down",
        3,
        fork_ok,
        mode="fork",
    )
    assert proxy_ok and fork_ok
