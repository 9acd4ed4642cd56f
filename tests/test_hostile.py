"""A malicious student (alice) attacks another (bob) from a kernel and from a terminal; all of it fails.

Extends test_hub_isolation.py (which covers reading another home from a kernel, other users'
processes being invisible, tokens of one student on another's server, secrets in memory) with what
an attacker tries next. Every test ends by checking that bob's kernel still runs code.
"""

from __future__ import annotations

import json
import os
import pwd
import time

import pytest
import requests
from conftest import eventually, wait_for
from reliability import Terminal, answers, processes_of_uids, record

from coursehub.clients.hubapi import HubAPI
from coursehub.spawner import cgroups

pytestmark = pytest.mark.hub
SECRET = "bob only 7f3a"


def run_json(hub, user, token, code: str, server: str = "", **params) -> dict:
    """Run `code` (which prints one JSON value) with `params` available as PARAMS."""
    prelude = f"import json\nPARAMS = json.loads({json.dumps(params)!r})\n"
    return json.loads(hub.run(user, token, prelude + code, server=server).strip().splitlines()[-1])


@pytest.fixture(scope="module")
def world(shared_hub):
    """alice (attacker) and bob (victim) with running servers; what bob keeps private."""
    hub = shared_hub
    alice, bob = hub.create_accounts("hos", 2)
    tokens = {name: hub.token_for(name) for name in (alice, bob)}
    for name in (alice, bob):
        hub.spawn(name, tokens[name])
    bob_info = run_json(
        hub,
        bob,
        tokens[bob],
        """
import os
for path in ('secret.txt', '/tmp/bob-secret.txt', '/dev/shm/bob-secret.txt'):
    open(path, 'w').write(PARAMS['secret'])
print(json.dumps({'home': os.environ['HOME'], 'url': os.environ['JUPYTERHUB_SERVICE_URL'],
                  'server_token': os.environ['JUPYTERHUB_API_TOKEN']}))
""",
        secret=SECRET,
    )
    terminal = LiveTerminal(hub.server_url(alice), tokens[alice])
    yield hub, alice, bob, tokens, bob_info, terminal
    try:
        terminal.close()
    except Exception:  # noqa: BLE001 - the fork bomb test stops the server under it
        pass


class LiveTerminal:
    """alice's terminal, opened again after a test restarted her server."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.term = Terminal(url, token)

    @property
    def ws(self):
        return self.term.ws

    def run(self, command: str, timeout: float = 120) -> tuple[int, str]:
        return self.term.run(command, timeout)

    def reopen(self) -> None:
        try:
            self.term.close()
        except Exception:  # noqa: BLE001 - its server is gone
            pass
        self.term = Terminal(self.url, self.token)

    def close(self) -> None:
        self.term.close()


def victim_works(hub, bob, tokens) -> bool:
    """bob's kernel still runs code, his files are intact and the hub answers."""
    out = hub.run(bob, tokens[bob], "print(6 * 7, open('secret.txt').read())")
    return out.strip() == f"42 {SECRET}" and requests.get(hub.url + "hub/api/", timeout=30).ok


def mode(hub) -> str:
    return hub.overrides["sandbox"]["spawn_mode"]


def fork_mode_only(hub, why: str) -> None:
    """Skip in exec mode what does not depend on how the sandbox was made (keeps CI short)."""
    if mode(hub) == "exec":
        pytest.skip(f"the same in both spawn modes ({why}): runs in fork mode only")


def test_files_and_tmp_of_another_student(world):
    hub, alice, bob, tokens, info, term = world
    home = info["home"]
    listing = sorted(os.listdir(home))
    shell = {
        "read home": f"cat {home}/secret.txt",
        "list home": f"ls {home}",
        "write home": f"touch {home}/evil",
        "copy home": f"cp -r {home} ~/loot",
        "read bob's /tmp": "cat /tmp/bob-secret.txt",
        "read bob's /dev/shm": "cat /dev/shm/bob-secret.txt",
        "find bob's files": f"grep -rl '{SECRET}' /tmp /dev/shm /run /var/tmp {os.path.dirname(home)}"
        " 2>/dev/null | grep .",
    }
    results = {what: term.run(cmd) for what, cmd in shell.items()}
    kernel = run_json(
        hub,
        alice,
        tokens[alice],
        """
import os
out = {}
for path in ('/tmp/bob-secret.txt', '/dev/shm/bob-secret.txt', PARAMS['home'] + '/secret.txt'):
    try:
        out[path] = open(path).read()
    except OSError as e:
        out[path] = type(e).__name__
out['tmp'] = sorted(os.listdir('/tmp')) + sorted(os.listdir('/dev/shm'))
print(json.dumps(out))
""",
        home=home,
    )
    leaked = [w for w, (rc, text) in results.items() if rc == 0 or SECRET in text]
    leaked += [k for k, v in kernel.items() if SECRET in str(v) or "bob-secret.txt" in str(v)]
    unchanged = sorted(os.listdir(home)) == listing
    held = not leaked and unchanged and victim_works(hub, bob, tokens)
    record(
        "hostile: another student's home, /tmp, /dev/shm",
        "read, list, write, copy, grep from a terminal; read from a kernel: all denied or not there",
        len(results) + 3,
        held,
        mode=mode(hub),
    )
    assert not leaked, {w: results.get(w) for w in leaked} | {"kernel": kernel}
    assert held


def test_signal_and_ptrace_another_students_processes(world):
    hub, alice, bob, tokens, info, term = world
    bob_uid = pwd.getpwnam(hub.prefix + bob).pw_uid
    victims = sorted(processes_of_uids({bob_uid}))
    assert victims, "bob has no processes to attack"
    kernel = run_json(
        hub,
        alice,
        tokens[alice],
        """
import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_SEIZE = 16, 0x4206
out = {}
for pid in PARAMS['pids']:
    for what, act in [('signal 0', lambda: os.kill(pid, 0)),
                      ('SIGKILL', lambda: os.kill(pid, signal.SIGKILL)),
                      ('SIGSTOP', lambda: os.kill(pid, signal.SIGSTOP)),
                      ('mem', lambda: open(f'/proc/{pid}/mem', 'rb').read(1))]:
        try:
            act()
            out[f'{pid} {what}'] = 'ok'
        except OSError as e:
            out[f'{pid} {what}'] = type(e).__name__
    for name, req in (('attach', PTRACE_ATTACH), ('seize', PTRACE_SEIZE)):
        r = libc.ptrace(req, pid, None, None)
        out[f'{pid} ptrace {name}'] = 'ok' if r == 0 else os.strerror(ctypes.get_errno())
print(json.dumps(out))
""",
        pids=victims,
    )
    shell = [term.run(f"kill -9 {' '.join(map(str, victims))}")]
    shell.append(term.run(f"timeout 5 strace -p {victims[0]}"))
    shell.append(term.run(f"timeout 10 gdb -batch -p {victims[0]} -ex 'call (int)getpid()'"))
    succeeded = [k for k, v in kernel.items() if v == "ok"]
    succeeded += [text for rc, text in shell[:2] if rc == 0]
    alive = all(os.path.exists(f"/proc/{pid}") for pid in victims)
    held = not succeeded and alive and victim_works(hub, bob, tokens)
    record(
        "hostile: signal or ptrace another student's processes",
        "kill (0, KILL, STOP), ptrace attach/seize, /proc/pid/mem, strace, gdb: none reaches bob",
        len(kernel) + len(shell),
        held,
        mode=mode(hub),
        pids_attacked=len(victims),
    )
    assert not succeeded, succeeded
    assert held


def test_direct_connections_to_another_server(world):
    hub, alice, bob, tokens, info, term = world
    fork_mode_only(hub, "network and the server's token check")
    base = info["url"].rstrip("/")  # http://127.0.0.1:<port>/user/<bob>
    attempts = {
        "no token": (base + "/api/contents/secret.txt", {}),
        "alice's token": (base + "/api/contents/secret.txt", {"Authorization": f"token {tokens[alice]}"}),
        "alice's token in URL": (base + f"/api/contents/secret.txt?token={tokens[alice]}", {}),
    }
    kernel = run_json(
        hub,
        alice,
        tokens[alice],
        """
import os, urllib.request, urllib.error
out = {}
own = os.environ['JUPYTERHUB_API_TOKEN']
for what, (url, headers) in PARAMS['attempts'].items():
    for method in ('GET', 'POST'):
        target = url if method == 'GET' else url.replace('/api/contents/secret.txt', '/api/kernels')
        data = b'{}' if method == 'POST' else None
        req = urllib.request.Request(target, headers=headers, method=method, data=data)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                out[f'{what} {method}'] = [r.status, r.read().decode(errors='replace')[:200]]
        except urllib.error.HTTPError as e:
            out[f'{what} {method}'] = [e.code, '']
        except OSError as e:
            out[f'{what} {method}'] = [0, type(e).__name__]
# alice's own server token, presented to bob's server
req = urllib.request.Request(PARAMS['base'] + '/api/contents', headers={'Authorization': 'token ' + own})
try:
    out['server token'] = [urllib.request.urlopen(req, timeout=10).status, '']
except urllib.error.HTTPError as e:
    out['server token'] = [e.code, '']
except OSError as e:
    out['server token'] = [0, type(e).__name__]
print(json.dumps(out))
""",
        attempts=attempts,
        base=base,
    )
    rc, curl = term.run(
        f"curl -s -o /dev/null -w '%{{http_code}}' -H 'Authorization: token {tokens[alice]}' "
        f"{base}/api/contents/secret.txt"
    )
    reached = {k: v for k, v in kernel.items() if v[0] in range(200, 300) or SECRET in v[1]}
    # Refused by bob's server (401, 403, a redirect to log in), or not connected at all ("000"):
    # with network.isolate, alice's namespace has no route to bob's.
    held = not reached and curl.strip() in ("403", "401", "302", "000") and victim_works(hub, bob, tokens)
    record(
        "hostile: connect to another student's server port directly",
        "bob's port from alice's kernel and terminal, without a token, with her token or server token",
        len(kernel) + 1,
        held,
        mode=mode(hub),
        statuses=" ".join(sorted({str(v[0]) for v in kernel.values()} | {curl.strip()})),
    )
    assert not reached, reached
    assert held, curl


def proxy_and_api_ports(hub) -> tuple[int, int]:
    import yaml

    settings = yaml.safe_load(hub.config.read_text())["hub"]
    return settings["proxy_api_port"], settings["api_port"]


def test_hub_secrets_and_the_proxy_api(world):
    hub, alice, bob, tokens, info, term = world
    state = hub.state_dir
    targets = [
        state / "jupyterhub.sqlite",
        state / "jupyterhub_cookie_secret",
        state / "accounts.sqlite",
        state / "cli-token",
        state / "logs",
        state / "proxy.pid",
    ]
    shell = {str(t): term.run(f"cat {t} || ls {t}") for t in targets}
    query = (
        f"import sqlite3; print(sqlite3.connect('{targets[0]}').execute('select * from users').fetchone())"
    )
    shell["sqlite"] = term.run(f'python3 -c "{query}"')
    proxy_port, api_port = proxy_and_api_ports(hub)
    kernel = run_json(
        hub,
        alice,
        tokens[alice],
        """
import os, urllib.request, urllib.error
out = {}
def ask(what, url, method='GET', data=None, headers={}):
    req = urllib.request.Request(url, method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            out[what] = r.status
    except urllib.error.HTTPError as e:
        out[what] = e.code
    except OSError as e:
        out[what] = type(e).__name__
proxy = f"http://127.0.0.1:{PARAMS['proxy']}/api/routes"
own = {'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']}
ask('proxy routes', proxy)
ask('proxy routes with own token', proxy, headers=own)
hijack = json.dumps({'target': 'http://127.0.0.1:1'}).encode()
ask('proxy hijack of bob', proxy + '/user/' + PARAMS['bob'], 'POST', hijack)
ask('proxy delete bob', proxy + '/user/' + PARAMS['bob'], 'DELETE')
hub = f"http://127.0.0.1:{PARAMS['api']}/hub/api"
ask('hub api: bob', hub + '/users/' + PARAMS['bob'], headers=own)
ask("hub api: bob's tokens", hub + '/users/' + PARAMS['bob'] + '/tokens', headers=own)
ask('hub api: stop bob', hub + '/users/' + PARAMS['bob'] + '/server', 'DELETE', headers=own)
print(json.dumps(out))
""",
        proxy=proxy_port,
        api=api_port,
        bob=bob,
    )
    user_api = HubAPI(hub.url, tokens[alice])
    outside = {
        "user token: bob's tokens": user_api.request("GET", f"users/{bob}/tokens").status_code,
        "user token: stop bob": user_api.request("DELETE", f"users/{bob}/server").status_code,
    }
    opened = [what for what, (rc, _) in shell.items() if rc == 0]
    allowed = [w for w, s in {**kernel, **outside}.items() if isinstance(s, int) and s < 400]
    held = not opened and not allowed and victim_works(hub, bob, tokens)
    record(
        "hostile: hub database, cookie secret, tokens, proxy and hub APIs",
        "state files from a terminal; proxy API (list, hijack, delete bob's route) and hub API for bob",
        len(shell) + len(kernel) + len(outside),
        held,
        mode=mode(hub),
        statuses=" ".join(sorted({str(s) for s in {**kernel, **outside}.values()})),
    )
    assert not opened, {w: shell[w] for w in opened}
    assert not allowed, {**kernel, **outside}
    assert held


def host_secrets(hub, bob, tokens, info) -> dict[str, str]:
    """Every secret alice must not find: bob's tokens, the cookie secret, proxy and CLI tokens."""
    proxy_pid = int((hub.state_dir / "proxy.pid").read_text())
    environ = dict(
        kv.split(b"=", 1) for kv in open(f"/proc/{proxy_pid}/environ", "rb").read().split(b"\0") if b"=" in kv
    )
    return {
        "bob's user token": tokens[bob],
        "bob's server token": info["server_token"],
        "cookie secret": (hub.state_dir / "jupyterhub_cookie_secret").read_text().strip(),
        "proxy auth token": environ[b"CONFIGPROXY_AUTH_TOKEN"].decode(),
        "cli token": (hub.state_dir / "cli-token").read_text().strip(),
        # The guests' cullers lend their tokens to the culler process: whoever holds one deletes guests.
        "temporary culler token": (hub.state_dir / "coursehub-temporary-culler-token").read_text().strip(),
        "binder culler token": (hub.state_dir / "coursehub-binder-culler-token").read_text().strip(),
    }


def xor(data: bytes, mask: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, mask, strict=True))


def test_no_secret_of_the_hub_or_another_student_is_findable(world):
    hub, alice, bob, tokens, info, term = world
    secrets = host_secrets(hub, bob, tokens, info)
    assert all(len(v) >= 16 for v in secrets.values()), "a secret was not found on the host"
    masks = {k: os.urandom(len(v)).hex() for k, v in secrets.items()}
    masked = {k: xor(v.encode(), bytes.fromhex(masks[k])).hex() for k, v in secrets.items()}
    # Only masked forms travel to alice's kernel; it rebuilds them and searches every place it can read.
    found = run_json(
        hub,
        alice,
        tokens[alice],
        """
import os
secrets = {k: bytes(a ^ b for a, b in zip(bytes.fromhex(v), bytes.fromhex(PARAMS['masks'][k])))
           for k, v in PARAMS['masked'].items()}
found, files = [], 0
def check(path, data):
    for name, secret in secrets.items():
        if secret in data:
            found.append(f'{name} in {path}')
roots = ['/tmp', '/dev/shm', '/run', '/var/tmp', os.path.dirname(os.environ['HOME']), PARAMS['state'], '/etc']
for root in roots:
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            try:
                if os.path.islink(path) or os.path.getsize(path) > 2 << 20:
                    continue
                with open(path, 'rb') as f:
                    check(path, f.read())
                files += 1
            except OSError:
                pass
for pid in filter(str.isdigit, os.listdir('/proc')):
    for part in ('environ', 'cmdline'):
        try:
            check(f'/proc/{pid}/{part}', open(f'/proc/{pid}/{part}', 'rb').read())
            files += 1
        except OSError:
            pass
print(json.dumps([files, found]))
""",
        masked=masked,
        masks=masks,
        state=str(hub.state_dir),
    )
    files, hits = found
    rc, env_text = term.run("env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'")
    hits += [f"{name} in the terminal's environment" for name, v in secrets.items() if v in env_text]
    held = not hits and files > 10 and victim_works(hub, bob, tokens)
    record(
        "hostile: find another student's hub token or the hub's secrets",
        "files alice can read (/tmp, /run, /etc, homes' parent, state dir), /proc/*/environ and cmdline",
        len(secrets),
        held,
        mode=mode(hub),
        files_searched=files,
    )
    assert not hits, hits
    assert held


def test_symlinks_in_the_home_reach_nothing_of_others(world):
    hub, alice, bob, tokens, info, term = world
    home, state = info["home"], hub.state_dir
    links = {
        "to-bob": home,
        "to-secret": f"{home}/secret.txt",
        "to-db": f"{state}/jupyterhub.sqlite",
        "to-cookie": f"{state}/jupyterhub_cookie_secret",
        "to-shadow": "/etc/shadow",
    }
    for name, target in links.items():
        assert term.run(f"ln -sfn {target} ~/{name}")[0] == 0
    # The server (as alice) is asked for those paths as a browser would: contents API and /files.
    api = requests.Session()
    api.headers["Authorization"] = f"token {tokens[alice]}"
    base = hub.server_url(alice)
    served = {}
    for name in links:
        for url in (f"api/contents/{name}?content=1", f"files/{name}", f"api/contents/{name}/secret.txt"):
            response = api.get(base + url, timeout=30)
            served[url] = (response.status_code, response.text[:300])
    leaked = {
        u: s
        for u, s in served.items()
        if s[0] == 200 and ("root:" in s[1] or SECRET in s[1] or "_xsrf" in s[1])
    }
    leaked |= {u: s for u, s in served.items() if u.startswith("api/contents/to-bob") and s[0] == 200}

    # The content sync at the next start must not follow a symlinked course folder into bob's home.
    bob_listing = sorted(os.listdir(home))
    demo = term.run("ls -d ~/demo && mv ~/demo ~/demo.mine && ln -s " + home + " ~/demo")
    hub.api().stop_server(alice)
    wait_for(lambda: not hub.api().json("GET", f"users/{alice}")["servers"], what=f"{alice}'s stop")
    hub.spawn(alice, tokens[alice])
    term.reopen()
    synced_into_bob = sorted(os.listdir(home)) != bob_listing
    hub.run(alice, tokens[alice], "import os; os.remove('demo'); os.rename('demo.mine', 'demo')")
    for name in links:
        os.unlink(os.path.join(hub.home_root, hub.prefix + alice, name))
    held = not leaked and demo[0] == 0 and not synced_into_bob and victim_works(hub, bob, tokens)
    record(
        "hostile: symlinks in the home",
        "links to bob's home, the hub database, cookie secret, /etc/shadow served by alice's server; "
        "course folder replaced by a link into bob's home before a start: nothing read or written",
        len(served) + 1,
        held,
        mode=mode(hub),
        served_statuses=" ".join(sorted({str(s[0]) for s in served.values()})),
    )
    assert not leaked, leaked
    assert not synced_into_bob, (bob_listing, sorted(os.listdir(home)))
    assert held


def test_symlinks_in_course_content_are_dropped(world):
    hub, alice, bob, tokens, info, term = world
    fork_mode_only(hub, "symlinks are dropped on the host when the course is added")
    home, state = info["home"], hub.state_dir
    repo = hub.root / "evil-course"
    repo.mkdir(exist_ok=True)
    (repo / "notes.md").write_text("week 1\n")
    links = {
        "bob": home,
        "secret": f"{home}/secret.txt",
        "db": f"{state}/jupyterhub.sqlite",
        "shadow": "/etc/shadow",
    }
    for name, target in links.items():
        (repo / name).symlink_to(target)
    hub.cli("course", "add", str(repo), "--name", "evilcourse")
    bob_listing = sorted(os.listdir(home))
    hub.spawn(alice, tokens[alice], server="evilcourse")
    seen = run_json(
        hub,
        alice,
        tokens[alice],
        """
import os
out = {'home': sorted(os.listdir('evilcourse')), 'mount': sorted(os.listdir('/run/coursehub/course'))}
out['read'] = [n for n in PARAMS['links'] if os.path.exists('evilcourse/' + n)]
print(json.dumps(out))
""",
        server="evilcourse",
        links=list(links),
    )
    hub.api().stop_server(alice, "evilcourse")
    dropped = not seen["read"] and not set(links) & set(seen["home"] + seen["mount"])
    held = dropped and "notes.md" in seen["home"] and sorted(os.listdir(home)) == bob_listing
    held = held and victim_works(hub, bob, tokens)
    record(
        "hostile: symlinks in course content",
        "links to bob's home and file, the hub database and /etc/shadow in a course: dropped when the "
        "course is added; the student's copy and the mounted content have none",
        len(links),
        held,
        mode=mode(hub),
    )
    assert dropped, seen
    assert held, seen


def server_memory_mib(hub, user: str) -> int:
    """What the user's server cgroup uses now."""
    return cgroups.group_for(f"{hub.prefix}{user}--default").memory_bytes() >> 20


def test_full_tmp_is_a_clear_error_and_hurts_nobody(world):
    hub, alice, bob, tokens, info, term = world
    used = server_memory_mib(hub, alice)
    kernel = run_json(
        hub,
        alice,
        tokens[alice],
        """
import errno, os
out = {}
for folder in ('/tmp', '/dev/shm'):
    written, error = 0, None
    try:
        with open(folder + '/fill', 'wb') as f:
            while written < 8 << 30:
                f.write(b'x' * (1 << 20))
                f.flush()
                written += 1 << 20
    except OSError as e:
        error = errno.errorcode.get(e.errno, str(e.errno))
    os.remove(folder + '/fill')
    out[folder] = [written >> 20, error]
print(json.dumps(out))
""",
    )
    rc, dd = term.run("dd if=/dev/zero of=/tmp/fill bs=1M 2>&1; rm -f /tmp/fill")
    clear = all(err == "ENOSPC" for _, err in kernel.values()) and "No space left on device" in dd
    # Writing to the home goes to the host's disk: there is no quota on this filesystem (see the report).
    alive = hub.run(alice, tokens[alice], "print('alice ok')").strip() == "alice ok"
    held = clear and alive and victim_works(hub, bob, tokens)
    record(
        "hostile: fill /tmp and /dev/shm",
        "'No space left on device' at the cap (a quarter / an eighth of the memory limit); attacker, "
        "victim and hub keep working",
        3,
        held,
        mode=mode(hub),
        server_MiB_before=used,
        tmp_MiB_at_error=kernel["/tmp"][0],
        shm_MiB_at_error=kernel["/dev/shm"][0],
    )
    assert clear, (kernel, dd, used)
    assert held


def test_inode_exhaustion_in_tmp(world):
    hub, alice, bob, tokens, info, term = world
    code = """
import errno, os, shutil
os.makedirs('/tmp/many', exist_ok=True)
made, error = 0, None
try:
    while made < 5_000_000:
        open(f'/tmp/many/{made}', 'w').close()
        made += 1
except OSError as e:
    error = errno.errorcode.get(e.errno, str(e.errno))
shutil.rmtree('/tmp/many')
print(json.dumps([made, error]))
"""
    from coursehub.clients.kernel import KernelSession

    with KernelSession(hub.server_url(alice), tokens[alice]) as kernel:
        result = kernel.execute("import json\n" + code, timeout=600)
    # Fork mode caps the inodes: a clean error. Exec mode cannot (bwrap has no nr_inodes), so the
    # inodes, kernel memory charged to the server's cgroup, end at the memory limit in the OOM
    # killer, inside the attacker's own sandbox; never in the host's memory.
    if result.status == "ok":
        made, error = json.loads(result.stdout.strip().splitlines()[-1])
        outcome = f"{made} files, then {error}"
        ok = error == "ENOSPC" if mode(hub) == "fork" else error in ("ENOSPC", "ENOMEM")
    else:
        outcome, ok = f"kernel {result.status}", result.status == "died" and mode(hub) == "exec"
    api = hub.api()
    if not answers(hub, alice, tokens[alice]):
        # The OOM killer chose the attacker's server: the hub notices, she starts it again.
        wait_for(
            lambda: not api.json("GET", f"users/{alice}")["servers"], timeout=120, what="the hub to notice"
        )
        hub.spawn(alice, tokens[alice])
        term.reopen()
        outcome += "; the attacker's own server was OOM-killed, and started again"
    else:
        term.run("rm -rf /tmp/many", timeout=300)
    left = term.run("ls /tmp/many 2>/dev/null | wc -l")[1].strip()
    alive = hub.run(alice, tokens[alice], "print('alice ok')").strip() == "alice ok"
    held = ok and left == "0" and alive and victim_works(hub, bob, tokens)
    record(
        "hostile: exhaust inodes in /tmp",
        "files created until refused; attacker recovers after deleting them; victim and hub unaffected",
        1,
        held,
        mode=mode(hub),
        outcome=outcome,
    )
    assert ok, outcome
    assert held


TAKEOVER = """
import os, socket, sys, time
port, log = int(sys.argv[1]), sys.argv[2]
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
deadline = time.monotonic() + 60
while True:
    try:
        listener.bind(('127.0.0.1', port))
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(0)
        time.sleep(0.002)
listener.listen(16)
open(log, 'a').write('bound\\n')
listener.settimeout(60)
while True:
    try:
        conn, _ = listener.accept()
    except OSError:
        break
    conn.settimeout(5)
    try:
        request = conn.recv(65536)
    except OSError:
        request = b''
    open(log, 'ab').write(request + b'\\n')
    conn.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 12\\r\\nConnection: close\\r\\n'
                 b'\\r\\ntaken over\\r\\n')
    conn.close()
"""


def test_stale_route_cannot_be_taken_over(world):
    hub, alice, bob, tokens, info, term = world
    (victim,) = hub.create_accounts("vic", 1)
    victim_token = hub.token_for(victim)
    hub.spawn(victim, victim_token)
    service = hub.run(victim, victim_token, "import os; print(os.environ['JUPYTERHUB_SERVICE_URL'])")
    port = int(service.strip().split(":")[2].split("/")[0])
    # alice waits, in the background, for the victim's port to be free, and takes it.
    log = "takeover.log"
    hub.run(
        alice,
        tokens[alice],
        f"import subprocess, sys; open({log!r}, 'w').close()\n"
        f"subprocess.Popen([sys.executable, '-c', {TAKEOVER!r}, '{port}', {log!r}], start_new_session=True,"
        " stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)",
    )
    # The victim shuts their server down from JupyterLab (File > Shut Down): the process exits by itself.
    server = hub.url + f"user/{victim}/"
    headers = {"Authorization": f"token {victim_token}"}
    requests.post(server + "api/shutdown", headers=headers, timeout=30)
    read_log = f"import os; print(open({log!r}).read() if os.path.exists({log!r}) else '')"

    # With the port out of her reach (a namespace of her own), she never binds it: that holds too.
    def alice_bound() -> bool:
        return "bound" in hub.run(alice, tokens[alice], read_log)

    bound = bool(eventually(alice_bound, timeout=15, interval=0.1))
    # The victim's browser, still on the old page, keeps sending requests with its credentials.
    answers_seen = []
    for _ in range(5):
        response = requests.get(server + "api/contents", headers=headers, timeout=30, allow_redirects=False)
        answers_seen.append((response.status_code, response.text[:40]))
        time.sleep(0.2)
    received = hub.run(alice, tokens[alice], read_log)
    reached = [a for a in answers_seen if "taken over" in a[1]]
    leaked = victim_token in received
    held = not reached and not leaked and victim_works(hub, bob, tokens)
    record(
        "hostile: take over the port of a server that just stopped",
        "alice binds the victim's freed port; the victim's requests through the proxy never reach her",
        len(answers_seen),
        held,
        mode=mode(hub),
        alice_bound=bound,
        statuses=" ".join(sorted({str(s) for s, _ in answers_seen})),
    )
    assert not reached, answers_seen
    assert not leaked, received[:500]
    assert held


def test_memory_bomb_from_a_terminal(world):
    hub, alice, bob, tokens, info, term = world
    fork_mode_only(hub, "the same memory cgroup")
    bomb = """python3 -c 'exec("x = []\\nwhile True: x.append(bytearray(1 << 25))")'"""
    rc, text = term.run(bomb, timeout=300)
    killed = rc == 137 or "Killed" in text or "MemoryError" in text
    still = term.run("echo alive")[1].strip() == "alive"
    held = killed and still and victim_works(hub, bob, tokens)
    record(
        "hostile: memory bomb in a terminal",
        "the bomb is killed (or gets MemoryError) at the server's memory limit; terminal, victim, hub fine",
        1,
        held,
        mode=mode(hub),
        exit_status=rc,
    )
    assert killed, (rc, text)
    assert held


def test_fork_bomb_from_a_terminal(world):
    hub, alice, bob, tokens, info, term = world
    alice_uid = pwd.getpwnam(hub.prefix + alice).pw_uid
    pids_limit = 128  # the test hub's limits.pids
    # The shell has no per-kernel process limit: only the server's pids cgroup holds it.
    term.ws.send(json.dumps(["stdin", "bomb() { bomb | bomb & }; bomb\r"]))
    peak, bob_ok, deadline = 0, True, time.monotonic() + 10
    while time.monotonic() < deadline:
        peak = max(peak, len(processes_of_uids({alice_uid})))
        time.sleep(0.2)
    bob_ok = victim_works(hub, bob, tokens)
    hub_ok = requests.get(hub.url + "hub/api/", timeout=30).ok
    # The attacker's way out: stop the server (its cgroup is killed), start again.
    hub.api().stop_server(alice)
    wait_for(lambda: not hub.api().json("GET", f"users/{alice}")["servers"], timeout=120, what="the stop")
    gone = bool(
        wait_for(
            lambda: not processes_of_uids({alice_uid}, zombies=False),
            timeout=60,
            what="the bomb's processes to be gone",
        )
    )
    zombies = len(processes_of_uids({alice_uid}))
    hub.spawn(alice, tokens[alice])
    term.reopen()
    again = hub.run(alice, tokens[alice], "print('alice ok')").strip() == "alice ok"
    held = peak <= pids_limit and bob_ok and hub_ok and gone and again
    record(
        "hostile: fork bomb in a terminal",
        "processes capped by the pids cgroup; victim and hub keep working; stopping the server clears it",
        1,
        held,
        mode=mode(hub),
        peak_processes=peak,
        zombies_left=zombies,
        pids_limit=pids_limit,
    )
    assert peak <= pids_limit, peak
    assert held, (bob_ok, hub_ok, gone, again)
