"""Fixtures that start real coursehub hubs (hub, proxy, culler, sandboxed servers) for tests."""

from __future__ import annotations

import csv
import fcntl
import functools
import ipaddress
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml

from coursehub.clients.hubapi import HubAPI
from coursehub.clients.kernel import KernelSession
from coursehub.clients.loopback import browser_session, resolve_localhost_names
from coursehub.settings import HubSettings
from coursehub.tools.ports import shared_picker

# Hubs with subdomains (the default) serve <user>.localhost, which browsers resolve and glibc does not.
resolve_localhost_names()

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "test-output"
pytest_plugins = ["cpuaccount"]  # CPU-seconds per test group, for choosing what to cut (tests/cpuaccount.py)
COURSEHUB = [sys.executable, "-m", "coursehub"]


def _worker_slot() -> tuple[int, int]:
    """This xdist worker's index and the number of workers (0, 1 without xdist)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


# Runs 34 and 35 each lost a test hub whose proxy found its port taken: ports were picked at random
# below the ephemeral range, where every hub's sandbox also gives its users' servers ports. Each worker
# now takes ports from its own slice of the range nobody else is given (coursehub.tools.ports).
# The same picker serves `coursehub bench` when a test runs it in this worker.
_PORTS = shared_picker(*_worker_slot())


def free_port() -> int:
    """A TCP port nothing listens on, no other worker is given and no server or connection is given."""
    return _PORTS.pick()


# Servers run in network namespaces (network.isolate, the default), and hubs run side by side (xdist
# workers, other checkouts): each test hub gets a /24 of its own from a range nothing on this machine
# uses (test_hub_network.py takes 10.219/16 and 10.213.0/28), counted under a lock shared by every
# process, skipping a /24 whose gateway is on the host still (a running or crashed hub's).
TEST_SUBNETS = list(ipaddress.IPv4Network("10.230.0.0/16").subnets(new_prefix=24))


def hub_subnet() -> str:
    """A /24 no other test hub on this machine uses now."""
    addresses = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, timeout=30)
    out = addresses.stdout
    gateways = {a["local"] for link in json.loads(out or "[]") for a in link.get("addr_info", ())}
    with open(Path(tempfile.gettempdir()) / "coursehub-test-subnets", "a+") as counter:
        fcntl.flock(counter, fcntl.LOCK_EX)
        counter.seek(0)
        start = int(counter.read().strip() or 0)
        for step in range(len(TEST_SUBNETS)):
            subnet = TEST_SUBNETS[(start + step) % len(TEST_SUBNETS)]
            if str(subnet.network_address + 1) not in gateways:
                break
        counter.seek(0)
        counter.truncate()
        counter.write(str(start + step + 1))
    return str(subnet)


def eventually(condition, timeout: float = 60, interval: float = 0.2):
    """Poll `condition` until it returns something truthy (returned), or return None at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def wait_for(condition, timeout: float = 60, interval: float = 0.2, what: str = "condition"):
    """Poll `condition` until it returns something truthy, or fail the test at the deadline."""
    value = eventually(condition, timeout, interval)
    if not value:
        pytest.fail(f"timed out after {timeout} s waiting for {what}")
    return value


def needs_root_sandbox() -> None:
    """Fail, saying what is missing, where the machine cannot run sandboxed servers (a skip would pass)."""
    if os.geteuid() != 0:
        pytest.fail(
            "hub tests need root: they create Unix accounts, cgroups and namespaces. Run the suite as "
            "root (sudo ./run test), or leave the hub tier out knowingly with -m 'not hub'"
        )
    if not shutil.which("bwrap"):
        pytest.fail("bubblewrap is missing: the test command installs it (apt-get install bubblewrap)")


class StackPool:
    """The stack environment handed from a stopped test hub to the next one, instead of a clone and a delete.

    A hub's first start clones the machine's stack environment (`cp -al` of ~28,000 files) into its
    state folder, and the test deletes it with the hub: ~1.5 CPU-s per hub, ~50 hubs a run on two
    cores. The clone is root's, read-only and sealed; only its kernelspec names its place, and is
    written again for the next hub. The clone itself stays tested where it is the subject
    (tests/test_untrusted.py) and by hubs with a private store (COURSEHUB_CACHE_DIR), which never lend.
    """

    def __init__(self, root: Path, keep: int = 6) -> None:
        self.root, self.keep = root, keep

    @staticmethod
    @functools.cache  # finding the users' Python runs it: once per worker, not per hub start and stop
    def digest() -> str:
        from coursehub.courses.environments import find_user_python, stack_spec

        return stack_spec(str(find_user_python())).digest

    def lend(self, envs: Path) -> None:
        """Put a pooled stack environment at `envs`/<digest>, if one is there and `envs` has none."""
        if os.environ.get("COURSEHUB_CACHE_DIR") or not self.root.is_dir():
            return
        from coursehub.courses.environments import READY, install_kernelspec

        target = envs / self.digest()
        if target.exists():
            return
        for entry in sorted(self.root.glob(f"{target.name}.*")):
            envs.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(entry, target)  # atomic: another worker's hub may take the same one
            except OSError:
                continue
            if not (target / READY).exists():
                shutil.rmtree(target, ignore_errors=True)
                continue
            install_kernelspec(target, final=target)
            return

    def give_back(self, envs: Path) -> None:
        """Keep a stopped hub's stack environment for the next hub (up to `keep`), else leave it."""
        if os.environ.get("COURSEHUB_CACHE_DIR"):
            return
        from coursehub.courses.environments import READY

        env = envs / self.digest()
        if not (env / READY).exists() or len(list(self.root.glob(f"{env.name}.*"))) >= self.keep:
            return
        self.root.mkdir(mode=0o700, exist_ok=True)
        os.rename(env, self.root / f"{env.name}.{secrets.token_hex(4)}")


stack_pool = StackPool(Path(tempfile.gettempdir()) / "coursehub-tests" / "stack-pool")


def pytest_sessionstart(session: pytest.Session) -> None:
    """The controller empties the pool: a run lends only what its own hubs gave back."""
    if not hasattr(session.config, "workerinput"):
        shutil.rmtree(stack_pool.root, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):
        shutil.rmtree(stack_pool.root, ignore_errors=True)


@dataclass
class Hub:
    """A real `coursehub up` process and helpers to act as its users."""

    root: Path
    overrides: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.state_dir = self.root / "state"
        self.prefix = "t" + secrets.token_hex(2) + "-"
        self.home_root = self.root / "homes"
        self.port = free_port()
        # Hubs follow the product's default (hub.subdomains on: the hub at localhost, each server at
        # <user>.localhost) unless a test says otherwise; COURSEHUB_TEST_SUBDOMAINS=0 or 1 sets it for
        # every hub that does not.
        default = HubSettings.model_fields["subdomains"].default
        forced = os.environ.get("COURSEHUB_TEST_SUBDOMAINS", "")
        if forced:
            default = forced != "0"
        self.subdomains = bool(self.overrides.get("hub", {}).get("subdomains", default))
        self.url = f"http://{'localhost' if self.subdomains else '127.0.0.1'}:{self.port}/"
        settings = {
            "hub": {
                "port": self.port,
                "api_port": free_port(),
                "proxy_api_port": free_port(),
                "state_dir": str(self.state_dir),
                "admin_users": ["admin"],
            },
            "limits": {"memory": "384M", "cpu": 1, "pids": 128},
            "sandbox": {"home_root": str(self.home_root), "user_prefix": self.prefix},
            "network": {"subnet": hub_subnet()},
            "auth": {"lockout": {"max_failures": 3, "window": 120, "lockout": 120}},
        }
        if self.subdomains != HubSettings.model_fields["subdomains"].default:
            settings["hub"]["subdomains"] = self.subdomains  # else the hub runs on the default, unsaid
        for section, values in self.overrides.items():
            if isinstance(values, dict):
                settings.setdefault(section, {}).update(values)
            else:
                settings[section] = values  # a list section, such as courses
        self.config = self.root / "coursehub.yaml"
        self.config.write_text(yaml.safe_dump(settings))
        self.log_path = self.root / "hub.log"
        self.passwords: dict[str, str] = {}

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run the coursehub CLI against this hub's config."""
        env = {**os.environ, "PATH": f"{REPO / 'node_modules' / '.bin'}:{os.environ['PATH']}"}
        result = subprocess.run(
            [*COURSEHUB, "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if check and result.returncode != 0:
            pytest.fail(f"coursehub {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def start(self, *up_args: str, preexec_fn=None) -> None:
        """Start `coursehub up` (with extra options) and wait until the hub answers."""
        env = {**os.environ, "PATH": f"{REPO / 'node_modules' / '.bin'}:{os.environ['PATH']}"}
        stack_pool.lend(self.state_dir / "envs")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*COURSEHUB, "--config", str(self.config), "up", *up_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=preexec_fn,
        )
        wait_for(self._answers, timeout=300, what=f"the hub at {self.url} (log: {self.log_path})")

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"coursehub up exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        try:
            return requests.get(self.url + "hub/api/", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def hub_pid(self) -> int:
        return int((self.state_dir / "hub.pid").read_text())

    def api(self) -> HubAPI:
        return HubAPI(self.url, (self.state_dir / "cli-token").read_text().strip())

    def create_accounts(self, prefix: str, count: int) -> list[str]:
        """Workshop accounts through the CLI; remembers their passwords from the CSV."""
        out = self.root / f"cards-{prefix}"
        self.cli("accounts", "create", "--count", str(count), "--prefix", prefix, "--out", str(out))
        names = []
        for csv_file in out.glob("*.csv"):
            for row in csv.DictReader(csv_file.open()):
                self.passwords[row["username"]] = row["password"]
                names.append(row["username"])
        return sorted(names)

    def login(self, username: str, password: str | None = None) -> requests.Session:
        """Log in through the form, as a browser does; fail the test unless it works."""
        session, response = self.try_login(username, password or self.passwords[username])
        assert response.status_code == 302, f"login of {username} refused: {response.status_code}"
        return session

    def try_login(self, username: str, password: str) -> tuple[requests.Session, requests.Response]:
        session = browser_session()
        session.get(self.url + "hub/login", timeout=30)
        response = session.post(
            self.url + "hub/login",
            allow_redirects=False,
            timeout=60,
            data={
                "username": username,
                "password": password,
                "_xsrf": session.cookies.get("_xsrf", path="/hub/"),
            },
        )
        return session, response

    def token_for(self, username: str) -> str:
        """An API token of `username`, made by the user's own logged-in session."""
        session = self.login(username)
        response = session.post(
            self.url + f"hub/api/users/{username}/tokens",
            json={},
            headers={"X-XSRFToken": session.cookies.get("_xsrf", path="/hub/")},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return response.json()["token"]

    def spawn(self, username: str, token: str, server: str = "") -> str:
        """Start a server as its user and wait until the hub says it is ready; its URL."""
        api = HubAPI(self.url, token)
        path = f"users/{username}/servers/{server}" if server else f"users/{username}/server"
        response = api.request("POST", path)
        assert response.status_code in (201, 202), response.text
        wait_for(
            lambda: api.json("GET", f"users/{username}")["servers"].get(server, {}).get("ready"),
            timeout=300,
            what=f"{username}'s server",
        )
        return self.server_url(username, server)

    def server_url(self, username: str, server: str = "") -> str:
        """Where a user's server answers: under the hub's origin, or at <user>.localhost with subdomains."""
        base = f"http://{username}.localhost:{self.port}/" if self.subdomains else self.url
        return base + f"user/{username}/" + (f"{server}/" if server else "")

    def run(self, username: str, token: str, code: str, server: str = "") -> str:
        """Run `code` in a fresh kernel of the user's server; its stdout (errors fail the test)."""
        url = self.server_url(username, server)
        with KernelSession(url, token) as kernel:
            result = kernel.execute(code)
        assert result.status == "ok", f"{result.status}: {result.error}\n{result.stderr}"
        return result.stdout

    def forkserver_pid(self, environment: Path) -> int | None:
        """The pid of the fork server of one of this hub's environments, if it runs."""
        from coursehub.spawner.forkclient import forkserver_pid

        return forkserver_pid(self.state_dir / "run", environment.name)

    def kill9(self) -> None:
        """Kill the hub process itself with SIGKILL (its proxy and servers stay)."""
        os.kill(self.hub_pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        """SIGTERM `coursehub up` and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def teardown(self) -> None:
        """Stop everything and delete the Unix accounts this hub created."""
        self.cli("down", check=False)
        self.stop()
        from coursehub.spawner.accounts import passwd_lock

        # Under the spawner's own lock: other hubs (other xdist workers) add accounts meanwhile.
        with passwd_lock():
            for entry in pwd.getpwall():
                if entry.pw_name.startswith(self.prefix):
                    subprocess.run(["userdel", entry.pw_name], capture_output=True, check=False)
        if self.log_path.exists():
            OUTPUT.mkdir(exist_ok=True)
            shutil.copy(self.log_path, OUTPUT / f"{self.root.name}.log")
        stack_pool.give_back(self.state_dir / "envs")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """Where tests leave artefacts (screenshots, reports) for humans to look at."""
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


def hub_root() -> Path:
    """A fresh folder users' sandboxes can traverse (pytest's tmp_path is 0700 root-only)."""
    import tempfile

    base = Path(tempfile.gettempdir()) / "coursehub-tests"
    base.mkdir(exist_ok=True)
    os.chmod(base, 0o755)
    root = Path(tempfile.mkdtemp(prefix="hub-", dir=base))
    os.chmod(root, 0o755)
    return root


def hub_factory():
    """Yield a function that starts real hubs; tear all of them down afterwards."""
    needs_root_sandbox()
    hubs: list[Hub] = []

    def make(**overrides) -> Hub:
        hub = Hub(hub_root(), overrides)
        hubs.append(hub)
        hub.start()
        return hub

    yield make
    for hub in hubs:
        hub.teardown()


@pytest.fixture
def make_hub():
    """Factory of real hubs, torn down at the end of the test."""
    yield from hub_factory()


@pytest.fixture(scope="module")
def make_hub_module():
    """Factory of real hubs shared by a module's tests."""
    yield from hub_factory()


@pytest.fixture(scope="session")
def session_hubs():
    """One plain hub per spawn mode for the whole session, started when a test first needs it.

    Tests that share them create their own accounts (prefixes per test) and leave other users alone.
    """
    needs_root_sandbox()
    hubs: dict[str, Hub] = {}

    def get(mode: str) -> Hub:
        if mode not in hubs:
            hub = Hub(hub_root(), {"sandbox": {"spawn_mode": mode}})
            hubs[mode] = hub
            hub.start()
        return hubs[mode]

    yield get
    for hub in hubs.values():
        hub.teardown()


@pytest.fixture(scope="module", params=["fork", "exec"])
def shared_hub(request, session_hubs):
    """The session's hub in each spawn mode (fork server, fresh process), for tests the mode can change."""
    return session_hubs(request.param)


@pytest.fixture(scope="module")
def fork_hub(session_hubs):
    """The session's fork-mode hub, for tests that the spawn mode cannot change (login, the browser)."""
    return session_hubs("fork")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Keep tests that share a session hub on one xdist worker, and each module's tests together.

    With `--dist loadgroup` (the test command's default), a module's module-scoped hub then starts once,
    and the session hubs are not started again on every worker. tryfirst: xdist reads the marks in its
    own hook of this name, which otherwise runs first and sees none of them.
    """
    groups: dict = {}
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"session_hubs", "shared_hub", "fork_hub"}:
            # A worker per spawn mode: each starts only the session hub its tests use.
            callspec = getattr(item, "callspec", None)
            mode = callspec.params.get("shared_hub", "fork") if callspec else "fork"
            group = f"session-hub-{mode}"
        elif "edge_hub" in names:
            group = "edge-hub"
        elif "postgres" in names:
            group = "postgres"
        else:
            group = item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))
        groups[item] = group
    # Longest groups first, so that short ones fill the workers at the end. xdist hands groups to free
    # workers in collection order only with --no-loadscope-reorder (the test command passes it): by default
    # it orders them by their number of tests, and modules of many quick pure tests went first while the
    # longest hub modules started minutes in (a whole run: 14 min, one worker busy 3 min after another).
    # The order below is from a whole run's per-worker timeline (wall time per group), longest first.
    first_seen = {group: i for i, group in reversed(list(enumerate(groups.values())))}
    items.sort(
        key=lambda item: (
            HEAVY_GROUPS.index(groups[item]) if groups[item] in HEAVY_GROUPS else len(HEAVY_GROUPS),
            first_seen[groups[item]],
        )
    )


HEAVY_GROUPS = [
    "tests/test_untrusted.py",
    "tests/test_grading.py",
    "session-hub-fork",
    "tests/test_hub_restart.py",
    "tests/test_crash.py",
    "session-hub-exec",
    "tests/test_hub_network.py",
    "tests/test_binder.py",
    "edge-hub",
    "tests/test_cull_warning.py",
    "tests/test_courses.py",
    "tests/test_bench_smoke.py",
    "postgres",
    "tests/test_service.py",
    "tests/test_sso_oidc.py",
    "tests/test_origins.py",
    "tests/test_ops_loadtest.py",
    "tests/test_tls.py",
    "tests/test_leaks.py",
    "tests/test_sso_domains.py",
    "tests/test_sso_tmp.py",
    "tests/test_home.py",
    "tests/test_sso_lti13.py",
]


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


# Module scope: Playwright's sync API keeps an event loop running while it is open, and later
# tests call asyncio.run().
@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (never a downloaded browser)."""
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: the test command installs it (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_executable(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def chromium_executable() -> str:
    """Debian's Chromium, run in a network namespace that the suite's hubs do not change (browsernet.py)."""
    from browsernet import BrowserNet

    return BrowserNet.chromium(CHROMIUM)


@dataclass
class Postgres:
    """A real PostgreSQL server from Debian's packages, run as `postgres` in a temporary cluster."""

    root: Path
    port: int
    user: str = "coursehub"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16) + "%@:/")  # URL-hostile

    @property
    def bin(self) -> Path:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
        if not found:
            pytest.fail("PostgreSQL is missing: the test command installs it (apt-get install postgresql)")
        return found[-1].parent

    def as_postgres(self, *cmd: str, timeout: float = 120) -> str:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
        )
        if result.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the cluster's Unix socket."""
        psql = [str(self.bin / "psql"), "-h", str(self.root), "-p", str(self.port), "-d", database]
        return self.as_postgres(*psql, "-Atqc", statement)

    def start(self) -> None:
        data = self.root / "data"
        pwfile = self.root / "pw"
        pwfile.write_text(secrets.token_hex(16))
        shutil.chown(pwfile, "postgres")
        initdb = [str(self.bin / "initdb"), "-D", str(data), "--auth-local=peer", "--auth-host=scram-sha-256"]
        self.as_postgres(*initdb, f"--pwfile={pwfile}")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg_ctl = [str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.root / "server.log"), "-w"]
        self.as_postgres(*pg_ctl, "-o", options, "start")
        escaped = self.password.replace("'", "''")
        self.sql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{escaped}'")

    def stop(self) -> None:
        pg_ctl = [str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "stop"]
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *pg_ctl],
            capture_output=True,
            timeout=120,
            check=False,
        )

    def create_database(self) -> str:
        """A fresh database owned by the hub's role; its URL (without the password)."""
        name = "hub_" + secrets.token_hex(4)
        self.sql(f"CREATE DATABASE {name} OWNER {self.user}")
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def password_file(self, folder: Path) -> Path:
        """The password in a root-owned 0600 file, as database.password_file wants it."""
        path = folder / "db-password"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.password + "\n")
        return path


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL cluster for the session; each hub gets its own database in it."""
    if os.geteuid() != 0:
        pytest.skip("the PostgreSQL tests run the server as the postgres user (needs root)")
    root = hub_root()
    shutil.chown(root, "postgres", "postgres")
    os.chmod(root, 0o700)
    server = Postgres(root, free_port())
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def postgres_settings(server: Postgres) -> dict:
    """The `database:` section of a hub with its own database on `server`, password in a 0600 file."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="coursehub-dbpw-"))  # 0700, root's
    return {"url": server.create_database(), "password_file": str(server.password_file(folder))}


@pytest.fixture(scope="session")
def edge_hub():
    """One plain hub with an open course, shared by the modules that probe its edges.

    The address lockout is raised: the hostile-request test fails logins from 127.0.0.1 by the
    hundred, and the header tests log in from the same address afterwards.
    """
    needs_root_sandbox()
    hub = Hub(hub_root(), {"jupyterhub": {"WorkshopAuthenticator": {"ip_max_failures": 1_000_000}}})
    hub.start()
    try:
        demo = REPO / "coursehub" / "demo"
        hub.cli("course", "add", str(demo), "--name", "open1", "--access", "open")
        yield hub
    finally:
        hub.teardown()


def run_first_cell(
    page,
    output_dir: Path,
    shot: str,
    code: str | None = None,
    expect: str = "",
    load_timeout: float = 120_000,
) -> str:
    """Wait for the open notebook's kernel, run its first cell (`code` typed in, if given) until the
    output contains `expect`, screenshot `shot`; the output's text."""
    cell = page.locator(".jp-Notebook .jp-CodeCell").first
    cell.wait_for(timeout=load_timeout)
    # The status bar reads "Python 3 (ipykernel) | Idle" once the kernel is connected.
    page.wait_for_selector("text=/ipykernel\\)? \\| Idle/", timeout=120_000)
    cell.click()
    if code is not None:
        cell.locator(".cm-content").click()
        page.keyboard.press("Control+a")
        page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")
    output = cell.locator(".jp-OutputArea-output")
    try:
        output.wait_for()
        shows = "([el, text]) => el.innerText.includes(text)"
        page.wait_for_function(shows, arg=[output.element_handle(), expect])
    finally:
        page.screenshot(path=str(output_dir / shot))
    return output.inner_text()


def network_leftovers(hub: Hub) -> list[str]:
    """The hub's servers' namespaces and veths, its gateway address and nftables table, still on the host."""
    from coursehub.spawner import netns

    subnet = yaml.safe_load(hub.config.read_text()).get("network", {}).get("subnet", "10.217.0.0/16")
    net = netns.hub_net(hub.state_dir, subnet)
    found = [f"namespace {p.name}" for p in netns.NETNS_DIR.glob(f"{net.table}-*")]

    def ip_json(*args: str) -> list[dict]:
        out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=30).stdout
        return json.loads(out or "[]")

    links = [link["ifname"] for link in ip_json("link")]
    found += [f"veth {name}" for name in links if name.startswith(net.veth_prefix)]
    found += [
        f"address {a['local']} ({a.get('label')})"
        for link in ip_json("-4", "addr")
        for a in link.get("addr_info", ())
        if a.get("label") == net.label
    ]
    table = subprocess.run(["nft", "list", "table", "inet", net.table], capture_output=True, timeout=30)
    found += [f"nftables table {net.table}"] if table.returncode == 0 else []
    return found
