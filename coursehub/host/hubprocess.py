"""Starting, stopping and inspecting the hub: the side effects behind up, down and status."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from coursehub.auth.accounts import AccountStore, Credential
from coursehub.clients.hubapi import HubAPI
from coursehub.courses.build import sync_catalog
from coursehub.courses.buildnet import from_settings
from coursehub.courses.environments import ensure_environment, find_user_python, stack_spec
from coursehub.courses.gc import collect as collect_environments
from coursehub.errors import CoursehubError, HubNotRunning, ReloadAsked
from coursehub.host.runtime import ensure_secret, ensure_state_dir, find_proxy
from coursehub.host.units import DELEGATE_ENV
from coursehub.hubconfig.origins import hub_origin, subdomain_host
from coursehub.hubconfig.pipeline import hub_api_ip
from coursehub.names import REVOKE_PATH
from coursehub.paths import StatePaths
from coursehub.settings import Settings
from coursehub.spawner import cgroups
from coursehub.spawner.accounts import unix_name
from coursehub.spawner.bwrap import find_bwrap
from coursehub.spawner.forkclient import ensure_forkserver, stop_forkservers

log = logging.getLogger(__name__)
SHIM = Path(__file__).parent.parent / "hub" / "jupyterhub_config.py"
# What `coursehub reload` sends `up`: not SIGHUP, which a closing terminal sends too.
RELOAD_SIGNAL = signal.SIGUSR1
Echo = Callable[[str], None]


def running_url(settings: Settings, paths: StatePaths) -> str:
    """The URL of the hub running from `paths` (it may have been started with --ip/--port)."""
    try:
        return paths.hub_url.read_text().strip() or local_url(settings)
    except OSError:
        return local_url(settings)


def hub_url(settings: Settings) -> str:
    """The URL users open."""
    if settings.hub.public_url:
        return settings.hub.public_url.rstrip("/") + "/"
    return hub_origin(settings) + "/"


def local_url(settings: Settings) -> str:
    """Where this machine's CLI reaches the hub: the proxy itself when the TLS front end is in front."""
    if settings.tls.mode == "off":
        return hub_url(settings)
    return f"http://127.0.0.1:{settings.hub.port}/"


def start_front_end(settings: Settings, paths: StatePaths, echo: Echo) -> subprocess.Popen | None:
    """Caddy in front of the proxy when tls is on (None otherwise); one a crashed `up` left is replaced."""
    from coursehub.host import frontend

    stop_front_end(paths, echo)
    if settings.tls.mode == "off":
        return None
    proc = frontend.launch(settings, paths)
    echo(f"TLS front end (caddy, pid {proc.pid}) serves {hub_url(settings)}; its log: {paths.logs}/caddy.log")
    return proc


def front_end_changed(settings: Settings, paths: StatePaths) -> bool:
    """True when `settings` need another front end than the running one (started, stopped or changed)."""
    from coursehub.host import frontend

    running = read_pid(paths.caddy_pid) is not None
    if settings.tls.mode == "off":
        return running
    try:
        return not running or paths.caddyfile.read_text() != frontend.caddyfile_text(settings, paths)
    except OSError:
        return True


def stop_front_end(paths: StatePaths, echo: Echo) -> None:
    """Stop the TLS front end of this state folder, if one runs."""
    pid = read_pid(paths.caddy_pid)
    if pid is not None and b"caddy" in Path(f"/proc/{pid}/cmdline").read_bytes():
        _terminate(pid, "TLS front end", echo)
    paths.caddy_pid.unlink(missing_ok=True)


def preflight(settings: Settings) -> None:
    """Refuse to start, saying exactly what is missing, when the machine cannot isolate users."""
    problems = []
    if os.geteuid() != 0:
        problems.append(
            "coursehub up must run as root: it creates a Unix account, a sandbox and a cgroup "
            "per student (run it with sudo)"
        )
    if not find_bwrap():
        problems.append("bubblewrap is not installed: apt-get install bubblewrap")
    if cgroups.cgroup_version() == 0:
        problems.append("no cgroup hierarchy is mounted at /sys/fs/cgroup")
    userns = Path("/proc/sys/kernel/unprivileged_userns_clone")
    if userns.exists() and userns.read_text().strip() == "0":
        problems.append("unprivileged user namespaces are off: sysctl kernel.unprivileged_userns_clone=1")
    if settings.network.isolate:
        from coursehub.spawner import netns

        problems += netns.preflight()
    for check in (find_proxy, lambda: subdomain_host(settings), lambda: tls_preflight(settings)):
        try:
            check()
        except CoursehubError as exc:
            problems.append(str(exc))
    if problems:
        raise CoursehubError("cannot start the hub:\n  - " + "\n  - ".join(problems))


def tls_preflight(settings: Settings) -> None:
    """The tls section against the address `up` was given, and caddy, when tls is on."""
    if settings.tls.mode == "off":
        return
    from coursehub.host.frontend import find_caddy
    from coursehub.settings import check_tls

    try:
        check_tls(settings)  # again: --ip and --port change the settings after they were read
    except ValueError as exc:
        raise CoursehubError(str(exc)) from None
    find_caddy()


def read_pid(path: Path) -> int | None:
    """The pid in `path` if that process is alive (a zombie left by a crash is not)."""
    try:
        pid = int(path.read_text().strip())
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    state = stat.rsplit(")", 1)[1].split()[0]
    return None if state in ("Z", "X") else pid


@dataclass
class Prepared:
    """What `prepare` made ready for the hub process."""

    user_env: Path
    admin: Credential | None


def prepare(settings: Settings, paths: StatePaths, echo: Echo, sweep_cgroups: bool = True) -> Prepared:
    """State folder, user environment, course content, admin account, stale cgroups.

    A reload passes sweep_cgroups=False: the running hub may be starting a server whose group is still empty.
    """
    ensure_state_dir(paths)
    ensure_secret(paths.cli_token)
    install_sync_script(paths)
    python = find_user_python(settings.sandbox.python)
    spec = stack_spec(str(python))
    if not (paths.envs / spec.digest / ".coursehub-ready").exists():
        echo(f"Building the user environment with uv (first start only; log in {paths.envs})…")
    network = from_settings(settings.network)  # what its build steps reach, as every course build's
    user_env = ensure_environment(spec, paths.envs, on_line=lambda line: log.debug(line), network=network)
    stacks = {user_env}
    for record in sync_catalog(settings, paths, on_line=lambda line: log.debug(line)):
        echo(f"Course {record.name}: ready ({record.environment})")
        stacks.add(Path(record.stack or user_env))
    if settings.sandbox.spawn_mode == "fork":
        # Warm now, so that the first student does not wait for the imports: one per stack environment.
        for stack in sorted(stacks):
            ensure_forkserver(stack, paths.run, paths.logs)
    removed = collect_environments(paths, keep={spec.digest})
    if removed:
        freed = sum(size for _, size in removed) / 2**20
        echo(f"Removed {len(removed)} environment(s) no course uses any more ({freed:.0f} MiB).")
    admin = None
    if settings.auth.type == "workshop":
        store = AccountStore(paths.accounts)
        for name in settings.admin_users():
            admin = store.ensure_admin(name) or admin
    if settings.network.isolate:
        prepare_network(settings, paths, echo)
    if settings.disk_limited():
        check_disk_quotas(settings, echo)
    if settings.sandbox.merge_memory and settings.sandbox.spawn_mode == "fork":
        enable_memory_merging(echo)
    elif settings.sandbox.merge_memory:
        echo("sandbox.merge_memory does nothing with sandbox.spawn_mode: exec (servers share no pages).")
    removed = cgroups.remove_empty_groups(settings.sandbox.user_prefix) if sweep_cgroups else 0
    if removed:
        echo(f"Removed {removed} stale cgroup(s) left by an earlier run.")
    return Prepared(user_env=user_env, admin=admin)


def prepare_network(settings: Settings, paths: StatePaths, echo: Echo) -> None:
    """The gateway address and nftables table of servers' network namespaces."""
    from coursehub.spawner import netns

    net = netns.hub_net(paths.root, settings.network.subnet)
    try:
        resolv = Path("/etc/resolv.conf").read_text()
    except OSError:
        resolv = ""
    dns = netns.nameservers(resolv)
    network = settings.network
    netns.setup_hub(net, settings.hub.api_port, network.allow, network.deny, dns)
    if not dns:
        echo("Servers' namespaces have no DNS: /etc/resolv.conf names only loopback resolvers.")
    if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "1":
        echo(
            "Servers reach the hub only, not the internet: the host does not forward "
            "(sysctl net.ipv4.ip_forward=1 allows it; see docs/security.md)."
        )


def check_disk_quotas(settings: Settings, echo: Echo) -> None:
    """Say once, with what to do, when limits.disk cannot be enforced on the homes' file system."""
    from coursehub.spawner import diskquota, homequota

    problem = homequota.quota_problem(settings.sandbox.home_root)
    if problem:
        echo(diskquota.off_message(problem))


def enable_memory_merging(echo: Echo) -> None:
    """Turn ksmd on (and fast enough for a class) for sandbox.merge_memory; say so if it cannot be."""
    from coursehub.spawner import memmerge

    changed, problem = memmerge.enable()
    for line in changed:
        echo(line)
    if problem:
        echo(memmerge.off_message(problem))


def install_sync_script(paths: StatePaths) -> None:
    """Put the content sync script where every sandbox can read it."""
    from coursehub.payloads import sync

    paths.sync_script.parent.mkdir(exist_ok=True)
    os.chmod(paths.sync_script.parent, 0o755)
    shutil.copyfile(sync.__file__, paths.sync_script)
    os.chmod(paths.sync_script, 0o644)


def orphans(settings: Settings) -> list[int]:
    """Services and proxy a crashed hub of this config left running (they outlive kill -9)."""
    api_url = f"http://{hub_api_ip(settings, settings.hub.state_dir)}:{settings.hub.api_port}/hub/api"
    proxy_flag = f"--api-port {settings.hub.proxy_api_port}"
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        is_service = b"JUPYTERHUB_SERVICE_NAME=" in b"\0".join(environ) and (
            f"JUPYTERHUB_API_URL={api_url}".encode() in environ
        )
        if is_service or ("configurable-http-proxy" in cmdline and proxy_flag in cmdline):
            found.append(int(proc.name))
    return found


def kill_orphans(settings: Settings, echo: Echo) -> None:
    """Stop what a crashed hub left behind before a new one starts its own."""
    for pid in orphans(settings):
        try:
            os.kill(pid, signal.SIGTERM)
            echo(f"Stopped a process left by an earlier hub (pid {pid}).")
        except ProcessLookupError:
            pass


def start_hub(settings: Settings, paths: StatePaths, user_env: Path) -> subprocess.Popen:
    """Launch JupyterHub (which launches the proxy and services) with coursehub's shim."""
    if (pid := read_pid(paths.hub_pid)) is not None:
        raise CoursehubError(f"a hub is already running (pid {pid}); stop it with `coursehub down`")
    env = hub_environ(os.environ, settings.model_dump_json(), paths.root, user_env)
    return subprocess.Popen(
        hub_command(),
        cwd=paths.root,
        env=env,
        start_new_session=True,
        preexec_fn=_interruptible,
    )


# V8's young generation: with its default semi-space size, the proxy held 76-77 MiB
# after 5 requests to each of 400 routes; with 1 MiB, 63-64 MiB and the same CPU (Node 20, 2 runs
# each). The hub passes its environment on to the proxy it starts (JupyterHub's ConfigurableHTTPProxy).
PROXY_NODE_OPTIONS = "--max-semi-space-size=1"


def hub_environ(
    base: Mapping[str, str], settings_json: str, state_dir: Path, user_env: Path
) -> dict[str, str]:
    """The hub's environment (and so its proxy's and services'), from `base` (coursehub's own)."""
    node_options = base.get("NODE_OPTIONS", "")
    if "--max-semi-space-size" not in node_options:  # an admin's own choice stays
        node_options = f"{node_options} {PROXY_NODE_OPTIONS}".strip()
    return {
        **base,
        # The effective settings, command-line overrides included, validated again by the shim.
        "COURSEHUB_SETTINGS_JSON": settings_json,
        "COURSEHUB_STATE_DIR": str(state_dir),
        "COURSEHUB_USER_ENV": str(user_env),
        # Each login's argon2 hash takes 19 MiB in one of the hub's threads. glibc raises its mmap
        # threshold past a freed mmap'd block, so later hashes came from the threads' heaps and
        # stayed resident (hub PSS 98 -> 139 MiB after 10 logins); a fixed threshold (which also
        # stops the raising) gives every hash's memory back when it is done.
        "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1048576",
        "NODE_OPTIONS": node_options,
    }


def hub_command() -> list[str]:
    """The hub's command line: coursehub's JupyterHub app (hub/app.py) with the config shim."""
    return [sys.executable, "-m", "coursehub.hub.app", "-f", str(SHIM)]


def _interruptible() -> None:
    """In the hub's process before exec: SIGINT and SIGQUIT back to their default actions.

    A shell starts a command in the background (`coursehub up &` in a script, nohup) with both ignored,
    and an ignored signal stays ignored across exec: JupyterHub stops its services with SIGINT, so each
    stop waited its 10 s before SIGTERM, and `coursehub down` killed the hub in its cleanup after 30 s.
    The hub has a session of its own (start_new_session), so a terminal's Ctrl-C still never reaches it.
    """
    for number in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(number, signal.SIG_DFL)


def _wait_until_up(hub: subprocess.Popen, settings: Settings, paths: StatePaths, echo: Echo) -> bool:
    """Wait until the hub answers and end what changed accounts left behind; False if it did not come up."""
    paths.hub_url.write_text(local_url(settings))
    api = HubAPI(local_url(settings), paths.cli_token.read_text().strip())
    try:
        api.wait_until_up(time.monotonic() + 120)
    except HubNotRunning as exc:
        if hub.poll() is None:
            echo(str(exc))
        return False
    if settings.auth.type == "workshop":
        # Accounts deleted, disabled or reset while the hub was down: end what they left behind.
        try:
            revoke_pending(AccountStore(paths.accounts), api, echo)
        except CoursehubError as exc:
            echo(f"{exc} (kept for the next start)")
    return True


Reloader = Callable[[], tuple[Settings, Path]]


def supervise(
    hub: subprocess.Popen,
    settings: Settings,
    paths: StatePaths,
    echo: Echo,
    reload: Reloader | None = None,
) -> int:
    """Wait for the hub; forward Ctrl-C and SIGTERM to it so it stops cleanly; on RELOAD_SIGNAL, `reload`.

    A reload reads and prepares the new settings first (the old hub keeps serving if they fail), then
    restarts only the hub process: users' servers keep running and are re-attached (cleanup_servers off).
    """
    current = [hub]
    stopping, reloading, waiting = [False], [False], [False]

    def forward(signum: int, _frame: object) -> None:
        stopping[0] = True
        if current[0].poll() is None:
            current[0].send_signal(signal.SIGTERM)

    def reload_asked(signum: int, _frame: object) -> None:
        reloading[0] = True
        if waiting[0]:
            waiting[0] = False  # a second signal, before the first is handled, must not raise again
            raise ReloadAsked  # out of the blocking wait for the hub below

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(RELOAD_SIGNAL, reload_asked)
    paths.up_pid.write_text(f"{os.getpid()}\n")  # only now: before, the reload signal would kill `up`
    if _wait_until_up(hub, settings, paths, echo):
        echo(
            f"coursehub is running at {hub_url(settings)}  (Ctrl-C stops the hub; "
            f"`coursehub down` also stops users' servers; `coursehub reload` applies the config)"
        )
    while True:
        # A blocking wait, woken by the reload signal: a wait with a timeout polls the child every
        # 50 ms (Popen.wait's loop), 0.16 CPU-s a minute for as long as the hub runs.
        try:
            try:
                waiting[0] = True
                if not reloading[0] or stopping[0]:
                    return current[0].wait()
            finally:
                waiting[0] = False
        except ReloadAsked:  # also when it came as the hub exited: the reload then starts a new hub
            pass
        if stopping[0]:
            continue
        reloading[0] = False
        if reload is None:
            _reload_answer(paths, "error: this hub was not started by `coursehub up`")
            continue
        try:
            new_settings, user_env = reload()
        except CoursehubError as exc:
            echo(f"Reload refused, the running hub is unchanged: {exc}")
            _reload_answer(paths, f"error: {exc}")
            continue
        echo("Reloading: restarting the hub process (users' servers keep running)…")
        current[0].terminate()
        try:
            current[0].wait(120)
        except subprocess.TimeoutExpired:
            current[0].kill()  # its servers are not its children: they keep running
            current[0].wait(30)
        if stopping[0]:
            return current[0].returncode
        current[0] = start_hub(new_settings, paths, user_env)
        settings = new_settings
        if _wait_until_up(current[0], settings, paths, echo):
            echo(f"coursehub reloaded (hub pid {current[0].pid})")
            _reload_answer(paths, "ok")
        else:
            _reload_answer(paths, f"error: the new hub did not come up; see the log in {paths.logs}")


def _reload_answer(paths: StatePaths, answer: str) -> None:
    """Tell a waiting `coursehub reload` how it went (written whole, then renamed)."""
    tmp = paths.reload_status.with_suffix(".tmp")
    tmp.write_text(answer + "\n")
    os.replace(tmp, paths.reload_status)


def request_reload(settings: Settings, paths: StatePaths, timeout: float = 900) -> str:
    """Ask the `coursehub up` of this state folder to reload; its answer, or CoursehubError."""
    pid = read_pid(paths.up_pid)
    try:
        if pid is not None and b"coursehub" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            pid = None  # a pid file left by a killed `up`, its number since reused by another program
    except OSError:
        pid = None
    if pid is None or read_pid(paths.hub_pid) is None:
        raise CoursehubError(
            "no hub of this config runs: start it (`systemctl start coursehub` or `coursehub up`)"
        )
    paths.reload_status.unlink(missing_ok=True)
    os.kill(pid, RELOAD_SIGNAL)
    deadline = time.monotonic() + timeout  # a reload may build new courses' environments
    while time.monotonic() < deadline:
        try:
            answer = paths.reload_status.read_text().strip()
        except FileNotFoundError:
            if read_pid(paths.up_pid) is None:
                raise CoursehubError("`coursehub up` exited during the reload; see its log") from None
            time.sleep(0.3)
            continue
        if answer != "ok":
            raise CoursehubError(answer.removeprefix("error: "))
        return answer
    raise CoursehubError(f"no answer from `coursehub up` (pid {pid}) within {timeout:.0f} s; see its log")


def use_service_cgroups(paths: StatePaths, echo: Echo) -> None:
    """Under a systemd service with Delegate=yes, servers' cgroups go in its subtree; remember where."""
    ensure_state_dir(paths)
    paths.cgroup_parent.unlink(missing_ok=True)
    os.environ.pop(cgroups.PARENT_ENV, None)
    if not os.environ.get(DELEGATE_ENV):
        return
    try:
        own = Path("/proc/self/cgroup").read_text()
    except OSError:
        own = ""
    parent = cgroups.delegated_parent(own, cgroups.cgroup_version())
    if parent is None:
        echo(
            f"{DELEGATE_ENV} is set, but this is no systemd service on cgroup v2: servers' cgroups stay "
            f"under {cgroups.CGROUP_ROOT / cgroups.DEFAULT_PARENT}"
        )
        return
    cgroups.enter_delegated_subtree(parent)
    os.environ[cgroups.PARENT_ENV] = parent  # inherited by the hub, and so its spawner
    paths.cgroup_parent.write_text(parent + "\n")
    echo(f"Servers' cgroups live under the service's delegated subtree {cgroups.CGROUP_ROOT / parent}")


def down(settings: Settings, paths: StatePaths, echo: Echo) -> None:
    """Stop every user server, the hub and the proxy; sweep leftover sandboxes."""
    hub_pid = read_pid(paths.hub_pid)
    if hub_pid is not None:
        api = HubAPI(running_url(settings, paths), ensure_secret(paths.cli_token))
        stopped = _stop_all_servers(api)
        echo(f"Stopped {stopped} server(s).")
        _terminate(hub_pid, "hub", echo)
    proxy_pid = read_pid(paths.proxy_pid)
    if proxy_pid is not None:
        _terminate(proxy_pid, "proxy", echo)
    stop_front_end(paths, echo)
    kill_orphans(settings, echo)
    forkservers = stop_forkservers(paths.run)
    if forkservers:
        echo(f"Stopped {forkservers} fork server(s).")
    # Only this hub's sandboxes: other hubs on the machine share the parent cgroup.
    prefix = settings.sandbox.user_prefix
    leftovers = [g for g in cgroups.all_groups() if g.dirs[0].name.startswith(prefix)]
    for group in leftovers:
        group.kill_and_remove()
    if leftovers:
        echo(f"Removed {len(leftovers)} sandbox cgroup(s) and their processes.")
    if settings.network.isolate:
        from coursehub.spawner import netns

        net = netns.hub_net(paths.root, settings.network.subnet)
        removed = netns.remove_all(net)
        netns.teardown_hub(net)
        if removed:
            echo(f"Removed {removed} server network namespace(s).")
    echo("coursehub is down.")


def revoke_pending(store: AccountStore, api: HubAPI, echo: Echo) -> list[str]:
    """Have the hub end the sessions, tokens and servers of changed accounts; the names done."""
    done = []
    for name in store.pending_revocations():
        # Stopping a server can take a while (slow_stop_timeout and beyond).
        response = api.request("POST", f"{REVOKE_PATH}/{name}", timeout=180)
        if response.status_code != 204:
            raise CoursehubError(
                f"the hub could not end {name}'s sessions: {response.status_code} {response.text}"
            )
        store.revoked(name)
        done.append(name)
    if done:
        echo(f"Ended the sessions, tokens and servers of {', '.join(done)}.")
    return done


def _stop_all_servers(api: HubAPI) -> int:
    """Ask the hub to stop every server, then wait (bounded) until none is left."""
    count = 0
    for user in api.users():
        for server in user.get("servers", {}):
            api.stop_server(user["name"], server)
            count += 1
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(u.get("servers") for u in api.users()):
        time.sleep(0.3)
    return count


def _terminate(pid: int, what: str, echo: Echo, timeout: float = 30) -> None:
    """SIGTERM, wait, then SIGKILL."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            echo(f"Stopped the {what} (pid {pid}).")
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    echo(f"Killed the {what} (pid {pid}) after {timeout:.0f} s.")


@dataclass(frozen=True)
class ServerRow:
    """One line of `coursehub status`."""

    user: str
    server: str
    ready: bool
    memory: int
    disk_used: int = 0
    disk_limit: int = 0  # 0: the home has no quota


def home_usage(settings: Settings, hub_user: str) -> tuple[int, int]:
    """(bytes used, quota) of a hub user's home; (0, 0) when it has no quota."""
    import pwd

    from coursehub.spawner import homequota

    try:
        home = Path(pwd.getpwnam(unix_name(hub_user, settings.sandbox.user_prefix)).pw_dir)
    except KeyError:
        return (0, 0)
    usage = homequota.home_usage(home)
    return (usage.used, usage.limit) if usage else (0, 0)


def status(settings: Settings, paths: StatePaths) -> tuple[int | None, int | None, list[ServerRow]]:
    """Hub pid, proxy pid and the servers the hub knows (empty when it is down)."""
    hub_pid, proxy_pid = read_pid(paths.hub_pid), read_pid(paths.proxy_pid)
    rows: list[ServerRow] = []
    if hub_pid is not None:
        api = HubAPI(running_url(settings, paths), ensure_secret(paths.cli_token))
        for user in api.users():
            for name, server in user.get("servers", {}).items():
                leaf = f"{unix_name(user['name'], settings.sandbox.user_prefix)}--{name or 'default'}"
                group = cgroups.group_for(leaf)
                memory = group.memory_bytes() if group.dirs[0].exists() else 0
                used, limit = home_usage(settings, user["name"])
                rows.append(ServerRow(user["name"], name, bool(server.get("ready")), memory, used, limit))
    return hub_pid, proxy_pid, rows
