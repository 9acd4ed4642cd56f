"""The configurations of the benchmarked systems, as data and text (pure, no I/O)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

SYSTEMS = ("stock", "stock-600", "coursehub", "coursehub-noisolate", "coursehub-merge")
LABELS = {
    "stock": "stock JupyterHub, default timeouts",
    "stock-600": "stock JupyterHub, 600 s timeouts",
    "coursehub": "coursehub, defaults",
    # The same hub with servers on the host's network: the difference is what a namespace costs.
    "coursehub-noisolate": "coursehub, network.isolate off",
    # Opt-in (docs/security.md says why it is not the default): what merging equal pages saves.
    "coursehub-merge": "coursehub, sandbox.merge_memory on",
}
# Servers' namespaces of the benchmark's hubs: a range of their own, not the default one a real
# hub on this machine may use (`up` refuses a subnet in use), cut in sixteen /20s (4,094 servers
# each) so that two benchmarks on one machine (a run and the suite's smoke test) each get their own.
# (Not 10.216.0.0/16, the whole range of older benchmarks: they would refuse to start beside these.)
BENCH_SUBNET = "10.218.0.0/16"
BENCH_SUBNETS = tuple(str(net) for net in ipaddress.IPv4Network(BENCH_SUBNET).subnets(new_prefix=20))
RAISED_TIMEOUT = 600
RAISED_SPAWN_LIMIT = 10_000
# Scopes of the bench's own service token on stock hubs: enough to find and stop servers.
ADMIN_SCOPES = ["list:users", "read:users", "read:servers", "delete:servers"]


@dataclass(frozen=True)
class Ports:
    """The three ports a hub needs, chosen free by the caller."""

    public: int
    hub_api: int
    proxy_api: int


@dataclass(frozen=True)
class StockSpec:
    """Everything a stock hub's jupyterhub_config.py depends on."""

    ports: Ports
    workdir: Path
    singleuser: Path  # jupyterhub-singleuser of the users' environment
    proxy: str  # configurable-http-proxy executable
    password: str
    admin_token: str
    raised_timeouts: bool


def stock_config(spec: StockSpec) -> str:
    """A minimal jupyterhub_config.py: DummyAuthenticator, SimpleLocalProcessSpawner, SQLite."""
    work = spec.workdir
    lines = [
        "c = get_config()  # noqa: F821",
        f"c.JupyterHub.bind_url = 'http://127.0.0.1:{spec.ports.public}/'",
        f"c.JupyterHub.hub_bind_url = 'http://127.0.0.1:{spec.ports.hub_api}'",
        f"c.JupyterHub.db_url = 'sqlite:///{work / 'jupyterhub.sqlite'}'",
        f"c.JupyterHub.cookie_secret_file = '{work / 'jupyterhub_cookie_secret'}'",
        f"c.JupyterHub.pid_file = '{work / 'hub.pid'}'",
        f"c.ConfigurableHTTPProxy.command = ['{spec.proxy}']",
        f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{spec.ports.proxy_api}'",
        f"c.ConfigurableHTTPProxy.pid_file = '{work / 'proxy.pid'}'",
        "c.JupyterHub.authenticator_class = 'dummy'",
        f"c.DummyAuthenticator.password = {spec.password!r}",
        "c.Authenticator.allow_all = True",
        "c.JupyterHub.spawner_class = 'simple'",
        f"c.SimpleLocalProcessSpawner.home_dir_template = '{work / 'homes'}/{{username}}'",
        f"c.Spawner.cmd = ['{spec.singleuser}']",
        # The bench runs as root; jupyter_server refuses root without this flag.
        "c.Spawner.args = ['--ServerApp.allow_root=True']",
        "c.Spawner.default_url = '/lab'",
        f"c.JupyterHub.services = [{{'name': 'bench', 'api_token': {spec.admin_token!r}}}]",
        "c.JupyterHub.load_roles = [",
        f"    {{'name': 'bench', 'scopes': {ADMIN_SCOPES!r}, 'services': ['bench']}}",
        "]",
    ]
    if spec.raised_timeouts:
        lines += [
            f"c.Spawner.start_timeout = {RAISED_TIMEOUT}",
            f"c.Spawner.http_timeout = {RAISED_TIMEOUT}",
            f"c.JupyterHub.concurrent_spawn_limit = {RAISED_SPAWN_LIMIT}",
        ]
    return "\n".join(lines) + "\n"


def coursehub_settings(
    ports: Ports,
    workdir: Path,
    user_prefix: str,
    isolate: bool = True,
    subnet: str = BENCH_SUBNETS[0],
    merge_memory: bool = False,
) -> dict:
    """A coursehub.yaml with coursehub's defaults, except what a benchmark must isolate (and `isolate`,
    `merge_memory`)."""
    sandbox: dict = {"home_root": str(workdir / "homes"), "user_prefix": user_prefix}
    if merge_memory:
        sandbox["merge_memory"] = True
    return {
        "hub": {
            "port": ports.public,
            "api_port": ports.hub_api,
            "proxy_api_port": ports.proxy_api,
            "state_dir": str(workdir / "state"),
        },
        # coursehub's default authenticator (workshop accounts, argon2 hashes): a class's logins cost
        # what they cost in the benchmark too (BenchHub.add_accounts creates them).
        "sandbox": sandbox,
        # Every simulated reader comes from this machine's one address: room for the crowd.
        "binder": {"max_per_repo": 100, "per_client_per_minute": 200},
        "network": {"isolate": isolate, "subnet": subnet},
    }
