"""Start and tear down the hubs under test: stock JupyterHub and coursehub, side by side.

Every hub gets its own temporary folder, free ports and (for coursehub) its own Unix-account
prefix, so that a benchmark never touches another hub on the machine, and `close()` removes
everything it started even after Ctrl-C.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import pwd
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
import yaml

from coursehub.auth.accounts import AccountStore
from coursehub.clients.hubapi import HubAPI
from coursehub.courses.environments import find_user_python
from coursehub.errors import CoursehubError, SandboxError
from coursehub.host.runtime import REPO_ROOT, find_proxy
from coursehub.spawner import cgroups, memmerge, netns
from coursehub.spawner.accounts import unix_name
from coursehub.spawner.forkclient import stop_forkservers
from coursehub.tools.bench import procstats
from coursehub.tools.bench.configs import (
    BENCH_SUBNETS,
    SYSTEMS,
    Ports,
    StockSpec,
    coursehub_settings,
    stock_config,
)
from coursehub.tools.bench.userenv import stock_environment
from coursehub.tools.ports import shared_picker

log = logging.getLogger(__name__)
BASE = Path(tempfile.gettempdir()) / "coursehub-bench"
START_TIMEOUT = 300  # a hub's first start may build its users' environment
STOP_SERVERS_TIMEOUT = 300
# ksmd at 1,000 pages per 20 ms scanned 10 users' memory in seconds, but ~330 users' (about 20 GB) took ~9
# minutes per full scan here: the wait is bounded, and the report says how many scans it saw.
MERGE_WAIT = 600
Echo = Callable[[str], None]


def free_port() -> int:
    """A TCP port nothing listens on, outside the ranges servers and outgoing connections are given."""
    return shared_picker().pick()


def free_ports() -> Ports:
    """Three distinct free ports."""
    chosen: set[int] = set()
    while len(chosen) < 3:
        chosen.add(free_port())
    public, hub_api, proxy_api = sorted(chosen)
    return Ports(public, hub_api, proxy_api)


def bench_folder(system: str) -> Path:
    """A fresh folder that users' sandboxes can traverse (tempfile's default is 0700)."""
    BASE.mkdir(exist_ok=True)
    os.chmod(BASE, 0o755)
    root = Path(tempfile.mkdtemp(prefix=f"{system}-", dir=BASE))
    os.chmod(root, 0o755)
    return root


def hub_env() -> dict[str, str]:
    """The environment hubs run in: ours, with the repo's configurable-http-proxy on PATH."""
    node_bin = REPO_ROOT / "node_modules" / ".bin"
    return {**os.environ, "PATH": f"{node_bin}:{os.environ.get('PATH', '')}"}


class BenchHub:
    """A hub started for the benchmark; subclasses say how to start it and find its processes."""

    def __init__(self, system: str, log_dir: Path) -> None:
        self.system = system
        self.workdir = bench_folder(system)
        self.ports = free_ports()
        self.url = f"http://127.0.0.1:{self.ports.public}/"
        self.password = secrets.token_urlsafe(12)
        self.log_path = log_dir / f"{system}-hub.log"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        """The command line that starts the hub (writing its config first)."""
        raise NotImplementedError

    def admin(self) -> HubAPI:
        """A Hub API client allowed to list users and stop their servers."""
        raise NotImplementedError

    def add_accounts(self, usernames: list[str]) -> None:
        """Let these users log in with the benchmark's password (stock: its DummyAuthenticator does)."""

    def settle_memory(self, say: Echo) -> None:
        """Wait until the users' memory is what it will stay (only hubs that merge pages change it)."""

    def settle_seconds(self) -> float:
        """The longest settle_memory may wait."""
        return 0.0

    def hub_pid(self) -> int:
        """The JupyterHub process itself."""
        raise NotImplementedError

    def proxy_pid(self) -> int | None:
        """The configurable-http-proxy process, if it is running."""
        raise NotImplementedError

    def user_pids(self, user: str) -> list[int]:
        """The processes of `user`'s server and kernels."""
        return self.pids_by_user([user])[user]

    def pids_by_user(self, users: list[str]) -> dict[str, list[int]]:
        """user -> the processes of its server and kernels, from one look at /proc."""
        raise NotImplementedError

    def metrics_text(self) -> str | None:
        """The hub's /hub/metrics (Prometheus text), where the benchmark may read it."""
        return None

    def start(self) -> None:
        """Launch the hub and wait until its API answers."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                env=hub_env(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal must not reach it: we stop it
            )
        self._wait_up()

    def _wait_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise CoursehubError(
                    f"the {self.system} hub exited with {self.proc.returncode}; see {self.log_path}"
                )
            try:
                if requests.get(self.url + "hub/api/", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise CoursehubError(f"the {self.system} hub did not answer in time; see {self.log_path}")

    def stop_all_servers(self, timeout: float = STOP_SERVERS_TIMEOUT) -> int:
        """Stop every server on this hub and wait (bounded) until none is left; how many."""
        api = self.admin()
        users = [u for u in api.users(state="active") if u.get("servers")]
        for user in users:
            for server in user["servers"]:  # named servers too (Binder launches use them)
                try:
                    api.stop_server(user["name"], server)
                except CoursehubError as exc:  # e.g. a 500 mid-spawn: stop the others all the same
                    log.warning("%s", exc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(u.get("servers") for u in api.users(state="active")):
            time.sleep(0.5)
        return len(users)

    def close(self) -> None:
        """Stop servers, the hub, its proxy and anything left of them; remove the folder."""
        if self.proc is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            return
        # Seen before the servers stop too: a server killed before its kernels leaves them to init,
        # out of the hub's tree (two stock kernels outlived a whole benchmark that way).
        seen = procstats.identities([self.proc.pid, *procstats.descendants(self.proc.pid)])
        try:
            if self.proc.poll() is None:
                self.stop_all_servers()
        except Exception as exc:  # the hub may be wedged: the process sweep below still runs
            log.warning("could not stop the servers of the %s hub: %s", self.system, exc)
        seen += procstats.identities([self.proc.pid, *procstats.descendants(self.proc.pid)])
        _terminate(self.proc)
        _kill_identities(seen)
        self.remove_leftovers()
        self.keep_logs()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def remove_leftovers(self) -> None:
        """What a subclass leaves outside the process tree (accounts, cgroups)."""

    def keep_logs(self) -> None:
        """Copy logs that live in the temporary folder next to the hub's log."""


def _terminate(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM, wait, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _kill_identities(seen: list[tuple[int, int]]) -> None:
    """SIGKILL the processes seen earlier that still live (same pid and start time)."""
    for pid, start in seen:
        stat = procstats.read_stat(pid)
        if stat is not None and stat.start == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class StockHub(BenchHub):
    """Stock JupyterHub: SimpleLocalProcessSpawner, DummyAuthenticator, SQLite."""

    def __init__(self, system: str, log_dir: Path, raised_timeouts: bool) -> None:
        super().__init__(system, log_dir)
        self.raised_timeouts = raised_timeouts
        self.admin_token = secrets.token_hex(32)

    def command(self) -> list[str]:
        env = stock_environment(find_user_python())
        spec = StockSpec(
            ports=self.ports,
            workdir=self.workdir,
            singleuser=env / "bin" / "jupyterhub-singleuser",
            proxy=find_proxy(),
            password=self.password,
            admin_token=self.admin_token,
            raised_timeouts=self.raised_timeouts,
        )
        config = self.workdir / "jupyterhub_config.py"
        config.write_text(stock_config(spec))
        (self.workdir / "homes").mkdir(exist_ok=True)
        return [sys.executable, "-m", "jupyterhub", "-f", str(config)]

    def admin(self) -> HubAPI:
        return HubAPI(self.url, self.admin_token)

    def hub_pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def proxy_pid(self) -> int | None:
        return _pid_from(self.workdir / "proxy.pid")

    def pids_by_user(self, users: list[str]) -> dict[str, list[int]]:
        """The hub's children started for each user (by JUPYTERHUB_USER), with their subtrees."""
        children = procstats.children_map()
        found: dict[str, list[int]] = {user: [] for user in users}
        for root in children.get(self.hub_pid(), []):
            user = procstats.environ(root).get("JUPYTERHUB_USER", "")
            if user in found:
                found[user] += [root, *procstats.descendants(root, children)]
        return found


class CoursehubHub(BenchHub):
    """`coursehub up` with its defaults, in its own state folder and account prefix."""

    def __init__(self, system: str, log_dir: Path, isolate: bool = True, merge_memory: bool = False) -> None:
        super().__init__(system, log_dir)
        self.merge_memory = merge_memory
        self.prefix = "b" + secrets.token_hex(2) + "-"
        self.state_dir = self.workdir / "state"
        # coursehub's default (hub.subdomains): the hub at localhost, each server at <user>.localhost;
        # its login cookies and links are for that host, not 127.0.0.1.
        self.url = f"http://localhost:{self.ports.public}/"
        self.isolate = isolate
        self.subnet = BENCH_SUBNETS[0]

    def command(self) -> list[str]:
        config = self.workdir / "coursehub.yaml"
        if self.isolate:
            self.subnet = free_bench_subnet()
        settings = coursehub_settings(
            self.ports, self.workdir, self.prefix, self.isolate, self.subnet, self.merge_memory
        )
        config.write_text(yaml.safe_dump(settings))
        return [sys.executable, "-m", "coursehub", "--config", str(config), "up"]

    def admin(self) -> HubAPI:
        return HubAPI(self.url, (self.state_dir / "cli-token").read_text().strip())

    def settle_seconds(self) -> float:
        return MERGE_WAIT if self.merge_memory else 0.0

    def settle_memory(self, say: Echo) -> None:
        """With merge_memory: until ksmd has scanned everything twice since now (a page is merged on
        the scan after the one that first saw it unchanged), at most MERGE_WAIT seconds."""
        if not self.merge_memory:
            return
        start = memmerge.full_scans()
        deadline = time.monotonic() + MERGE_WAIT
        while memmerge.full_scans() < start + 2 and time.monotonic() < deadline:
            time.sleep(2)
        done = memmerge.full_scans() - start
        say(f"ksmd: {done} full scan(s) of mergeable memory since the users arrived")

    def add_accounts(self, usernames: list[str]) -> None:
        """Workshop accounts with the benchmark's password, as `coursehub accounts create` makes them."""
        store = AccountStore(self.state_dir / "accounts.sqlite")
        existing = {info.username for info in store.list()}
        for name in usernames:
            if name not in existing:
                store.create(name, self.password)

    def hub_pid(self) -> int:
        pid = _pid_from(self.state_dir / "hub.pid")
        if pid is None:
            raise CoursehubError(f"the coursehub hub wrote no pid file in {self.state_dir}")
        return pid

    def proxy_pid(self) -> int | None:
        return _pid_from(self.state_dir / "proxy.pid")

    def pids_by_user(self, users: list[str]) -> dict[str, list[int]]:
        """Every process of each user's own Unix account, and a root-owned process above its server in
        the same cgroup (fork mode's monitor: one per server before the shared log collector, still one
        when no collector takes a server's output): it is memory that user costs too."""
        by_uid = procstats.pids_by_uid()
        found: dict[str, list[int]] = {}
        for user in users:
            try:
                uid = pwd.getpwnam(unix_name(user, self.prefix)).pw_uid
            except KeyError:
                found[user] = []
                continue
            pids = by_uid.get(uid, [])
            own = {procstats.cgroups_of(pid) for pid in pids} - {""}
            parents = {stat.ppid for stat in map(procstats.read_stat, pids) if stat is not None}
            monitors = [parent for parent in parents - set(pids) if procstats.cgroups_of(parent) in own]
            found[user] = sorted({*pids, *monitors})
        return found

    def metrics_text(self) -> str | None:
        """/hub/metrics with the CLI's token (it has read:metrics); None when it does not answer."""
        try:
            token = (self.state_dir / "cli-token").read_text().strip()
            response = requests.get(
                self.url + "hub/metrics", headers={"Authorization": f"token {token}"}, timeout=30
            )
        except (OSError, requests.RequestException) as exc:
            log.warning("could not read the metrics of the %s hub: %s", self.system, exc)
            return None
        return response.text if response.status_code == 200 else None

    def keep_logs(self) -> None:
        """The servers' logs (coursehub writes one per server in its state folder)."""
        logs = self.state_dir / "logs"
        if logs.is_dir():
            shutil.copytree(logs, self.log_path.parent / f"{self.system}-servers", dirs_exist_ok=True)

    def remove_leftovers(self) -> None:
        """Processes, cgroups and Unix accounts of this hub's prefix (and only these)."""
        # The fork servers are started by the hub but live in sessions of their own: a hub that never
        # came up, or was killed, left them running (three found after this session's runs).
        stop_forkservers(self.state_dir / "run")
        accounts = [e for e in pwd.getpwall() if e.pw_name.startswith(self.prefix)]
        for entry in accounts:
            for pid in procstats.pids_of_uid(entry.pw_uid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for group in cgroups.all_groups():
            if group.dirs[0].name.startswith(self.prefix):
                group.kill_and_remove()
        for entry in accounts:
            subprocess.run(["userdel", entry.pw_name], capture_output=True, timeout=60, check=False)
        if self.isolate:  # what `coursehub down` removes: namespaces, the gateway, the nftables table
            net = netns.hub_net(self.state_dir, self.subnet)
            netns.remove_all(net)
            netns.teardown_hub(net)


def free_bench_subnet() -> str:
    """One of the benchmark's subnets that no hub or network of this machine uses now (tried in
    random order, so that two benchmarks starting together rarely pick the same one)."""
    candidates = list(BENCH_SUBNETS)
    random.shuffle(candidates)
    for subnet in candidates:
        try:  # a tag of no hub: every address in the range counts as someone else's
            netns.check_subnet(netns.HubNet("none", ipaddress.IPv4Network(subnet)))
        except SandboxError:
            continue
        return subnet
    raise CoursehubError(
        f"every benchmark subnet ({BENCH_SUBNETS[0]} … {BENCH_SUBNETS[-1]}) is in use on this machine: "
        "stop the other benchmarks, or remove what an interrupted one left with `coursehub down`"
    )


def _pid_from(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def make_hub(system: str, log_dir: Path) -> BenchHub:
    """The (not yet started) hub for one of configs.SYSTEMS."""
    if system == "stock":
        return StockHub(system, log_dir, raised_timeouts=False)
    if system == "stock-600":
        return StockHub(system, log_dir, raised_timeouts=True)
    if system == "coursehub":
        return CoursehubHub(system, log_dir)
    if system == "coursehub-noisolate":
        return CoursehubHub(system, log_dir, isolate=False)
    if system == "coursehub-merge":
        return CoursehubHub(system, log_dir, merge_memory=True)
    raise CoursehubError(f"unknown system {system!r}: choose from {', '.join(SYSTEMS)}")
