"""Two students on a real hub: neither reaches the other's files, processes or server."""

from __future__ import annotations

import json
import os

import pytest
import requests
from conftest import wait_for

from coursehub.clients.hubapi import HubAPI
from coursehub.clients.kernel import KernelSession
from coursehub.errors import CoursehubError

pytestmark = pytest.mark.hub


@pytest.fixture(scope="module")
def students(shared_hub):
    """Two workshop students with running servers, and each one's token."""
    alice, bob = shared_hub.create_accounts("stu", 2)
    tokens = {name: shared_hub.token_for(name) for name in (alice, bob)}
    for name in (alice, bob):
        shared_hub.spawn(name, tokens[name])
    return shared_hub, alice, bob, tokens


def home_of(hub, token, user) -> str:
    return hub.run(user, token, "import os; print(os.environ['HOME'])").strip()


def test_each_student_runs_code_as_own_unix_user(students):
    hub, alice, bob, tokens = students
    for user in (alice, bob):
        out = hub.run(
            user,
            tokens[user],
            "import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name, os.getcwd())",
        )
        unix, cwd = out.split()
        assert unix == hub.prefix + user
        assert cwd == str(hub.home_root / unix)
    assert "2" in hub.run(alice, tokens[alice], "print(1 + 1)")


def test_demo_course_is_merged_into_home(students):
    hub, alice, _, tokens = students
    out = hub.run(alice, tokens[alice], "import os; print(sorted(os.listdir('demo')))")
    assert "welcome.ipynb" in out


def test_cannot_read_or_write_other_home(students):
    hub, alice, bob, tokens = students
    bob_home = home_of(hub, tokens[bob], bob)
    hub.run(bob, tokens[bob], "open('secret.txt', 'w').write('bob only')")
    code = f"""
import os, json
home = {bob_home!r}
report = {{}}
for what, action in [("list", lambda: os.listdir(home)),
                     ("read", lambda: open(home + '/secret.txt').read()),
                     ("write", lambda: open(home + '/evil.txt', 'w').write('x')),
                     ("list_root", lambda: os.listdir(os.path.dirname(home)))]:
    try:
        report[what] = ("ok", action())
    except OSError as e:
        report[what] = ("denied", type(e).__name__)
print(json.dumps(report))
"""
    report = json.loads(hub.run(alice, tokens[alice], code))
    assert report["read"][0] == "denied", report
    assert report["write"][0] == "denied", report
    assert report["list"][0] == "denied", report
    # The homes' parent is an empty tmpfs in the sandbox: only alice's own home shows.
    listing = report["list_root"]
    assert listing[0] == "ok" and listing[1] == [hub.prefix + alice], report
    assert "bob only" in hub.run(bob, tokens[bob], "print(open('secret.txt').read())")


def test_cannot_see_other_processes(students):
    hub, alice, bob, tokens = students
    hub.run(bob, tokens[bob], "print('bob is busy')")
    code = """
import os
uids = set()
for p in filter(str.isdigit, os.listdir('/proc')):
    for line in open(f'/proc/{p}/status'):
        if line.startswith('Uid:'):
            uids.add(int(line.split()[1]))
print(len([p for p in os.listdir('/proc') if p.isdigit()]), sorted(uids), os.getuid())
"""
    count, *rest = hub.run(alice, tokens[alice], code).split(maxsplit=1)
    uids, own = rest[0].rsplit(maxsplit=1)
    assert int(count) < 10  # bwrap's init, the server, its kernels: nobody else's
    assert uids == f"[{own}]"  # every visible process is alice's own


def test_hub_secrets_are_hidden(students):
    hub, alice, _, tokens = students
    code = f"import os; print(os.listdir({str(hub.state_dir)!r}))"
    listing = hub.run(alice, tokens[alice], code)
    for secret in ("jupyterhub.sqlite", "jupyterhub_cookie_secret", "accounts.sqlite", "cli-token"):
        assert secret not in listing


# bubblewrap's --dev: what a server and its terminals need, none of the host's devices.
MINIMAL_DEV = {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm"}
MINIMAL_DEV |= {"stdin", "stdout", "stderr", "fd", "core"}  # symlinks into /proc


def test_dev_is_minimal_in_both_spawn_modes(students):
    hub, alice, _, tokens = students
    code = """
import json, os
primary, _ = os.openpty()  # a terminal still works: a private devpts
with open('/dev/null', 'w') as null:
    null.write('x')
print(json.dumps(sorted(os.listdir('/dev'))))
"""
    entries = set(json.loads(hub.run(alice, tokens[alice], code)))
    assert entries <= MINIMAL_DEV, sorted(entries - MINIMAL_DEV)  # e.g. kmsg, kvm, the disks
    assert {"null", "urandom", "ptmx"} <= entries


def test_token_of_one_student_cannot_reach_other_server(students):
    hub, alice, bob, tokens = students
    response = requests.get(
        hub.server_url(bob) + "api/contents",
        timeout=30,
        headers={"Authorization": f"token {tokens[alice]}"},
    )
    assert response.status_code in (403, 404), response.status_code
    with pytest.raises(CoursehubError, match="403"):
        KernelSession(hub.server_url(bob), tokens[alice])
    # alice's token cannot drive bob's server through the hub API either
    response = HubAPI(hub.url, tokens[alice]).request("DELETE", f"users/{bob}/server")
    assert response.status_code in (403, 404)


def test_cookie_of_one_student_cannot_reach_other_server(students):
    hub, alice, bob, tokens = students
    session = hub.login(alice)
    # Opening a page runs the OAuth dance that gives the browser a cookie for that server.
    assert session.get(hub.server_url(alice) + "lab", timeout=60).status_code == 200
    own = session.get(hub.server_url(alice) + "api/contents", timeout=60)
    assert own.status_code == 200, own.status_code
    page = session.get(hub.server_url(bob) + "lab", timeout=60)
    assert page.status_code == 403, page.status_code
    other = session.get(hub.server_url(bob) + "api/contents", timeout=60)
    assert other.status_code in (403, 404)
    assert "secret.txt" not in other.text


LISTENING = """
import json, socket
ports = set()
for line in open('/proc/net/tcp').readlines()[1:] + open('/proc/net/tcp6').readlines()[1:]:
    fields = line.split()
    if fields[3] == '0A':  # LISTEN
        ports.add(int(fields[1].rsplit(':', 1)[1], 16))
# The address other namespaces reach this one at: a UDP connect picks it and sends nothing.
probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
probe.connect(('192.0.2.1', 9))
print(json.dumps({'address': probe.getsockname()[0], 'ports': sorted(ports)}))
"""


def test_server_port_directly_needs_auth(students):
    hub, alice, bob, tokens = students
    # Bob's listening ports and address, as his own kernel sees them (his namespace, or the host's).
    bobs = json.loads(hub.run(bob, tokens[bob], LISTENING))
    assert bobs["ports"], bobs  # his server at least
    targets = [(host, port) for port in bobs["ports"] for host in (bobs["address"], "127.0.0.1")]
    # From alice's kernel: every one of those, and every port listening where she is, without bob's token.
    code = f"""
import json, urllib.request
exec({LISTENING!r}.replace('print(', 'mine = json.loads('))
targets = {targets!r} + [('127.0.0.1', port) for port in mine['ports']]
hits = []
for host, port in targets:
    try:
        url = f'http://{{host}}:{{port}}/user/{bob}/api/contents'
        if b'secret.txt' in urllib.request.urlopen(url, timeout=0.3).read():
            hits.append((host, port))
    except Exception:
        pass
print(len(targets), hits)
"""
    count, hits = hub.run(alice, tokens[alice], code).split(maxsplit=1)
    assert int(count) >= 3  # bob's server at its address and on loopback, her own at least were tried
    assert hits.strip() == "[]"


def test_no_descriptor_or_variable_of_the_hub_or_others_reaches_a_server(students):
    hub, alice, bob, tokens = students
    code = """
import os, json
leaks = []
inspected = 0
unix = {}
for line in open('/proc/net/unix').readlines()[1:]:
    fields = line.split()
    if len(fields) >= 8:
        unix[fields[6]] = fields[7]
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        env = dict(kv.split('=', 1) for kv in open(f'/proc/{pid}/environ').read().split('\\0') if '=' in kv)
        listed = os.listdir(f'/proc/{pid}/fd')
    except OSError:
        continue
    fds = {}
    for fd in listed:
        try:
            fds[fd] = os.readlink(f'/proc/{pid}/fd/{fd}')
        except OSError:
            pass  # closed meanwhile: this very listing's own descriptor, in this kernel
    inspected += 1
    for key in ('COURSEHUB_STATE_DIR', 'COURSEHUB_CONFIG', 'CONFIGPROXY_AUTH_TOKEN', 'JPY_COOKIE_SECRET'):
        if key in env:
            leaks.append(f'{pid}: env {key}')
    if env.get('JUPYTERHUB_USER', 'ALICE') != 'ALICE':
        leaks.append(f'{pid}: another user in env')
    for fd, target in fds.items():
        inode = target[8:-1] if target.startswith('socket:[') else ''
        if int(fd) > 2 and ('/fork-' in unix.get(inode, '') or '/state/' in target):
            leaks.append(f'{pid}: fd {fd} -> {target} {unix.get(inode, "")}')
print(json.dumps([inspected, leaks]))
""".replace("ALICE", alice)
    inspected, leaks = json.loads(hub.run(alice, tokens[alice], code))
    assert inspected >= 2  # at least the server and this kernel
    assert leaks == []


def test_no_server_holds_the_secret_of_a_user_started_before(students):
    hub, alice, bob, tokens = students  # alice's server was started first, from the same fork server
    secret = hub.run(alice, tokens[alice], "import os; print(os.environ['JUPYTERHUB_API_TOKEN'])").strip()
    mask = os.urandom(len(secret))
    masked = bytes(a ^ b for a, b in zip(secret.encode(), mask, strict=True))
    # Only masked forms travel through bob's server; his kernel rebuilds the secret and scans every
    # other process of his sandbox for it: his server, and a kernel of his forked after alice's kernel
    # request (which carried her token through the fork server) and held open meanwhile.
    code = f"""
import os, re
secret = bytes(a ^ b for a, b in zip({masked!r}, {mask!r}))
found, scanned = [], 0
for pid in filter(str.isdigit, os.listdir('/proc')):
    if int(pid) == os.getpid():
        continue
    try:
        maps = open(f'/proc/{{pid}}/maps').read().splitlines()
        mem = open(f'/proc/{{pid}}/mem', 'rb', 0)
    except OSError:
        continue
    scanned += 1
    for line in maps:
        start, end = (int(x, 16) for x in line.split()[0].split('-'))
        if line.split()[1][0] != 'r' or end - start > 1 << 30:
            continue
        try:
            mem.seek(start)
            if secret in mem.read(end - start):
                found.append(pid)
        except (OSError, ValueError, OverflowError):
            pass
print(scanned, sorted(set(found)))
"""
    with KernelSession(hub.server_url(bob), tokens[bob]) as held:
        assert held.execute("print(1)").stdout.strip() == "1"
        scanned, found = hub.run(bob, tokens[bob], code).split(maxsplit=1)
    assert int(scanned) >= 2
    assert found.strip() == "[]"


# Written by the student's kernel: each leaves a marker in the home if the server ever runs it.
USER_SHADOWS = """
import os, site, sys
home = os.environ['HOME']
def put(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, 'w').write(text)
def marker(name):
    return f"open(os.path.join(os.environ['HOME'], {name!r}), 'w').write(str(os.getpid()))"
put(f'{home}/.jupyter/jupyter_server_config.py', 'import os\\n' + marker('server-config-ran') + '\\n')
version = f'python{sys.version_info[0]}.{sys.version_info[1]}'
# The user site of this course (PYTHONUSERBASE) and the default one under ~/.local.
for folder in {site.getusersitepackages(), f'{home}/.local/lib/{version}/site-packages'}:
    put(f'{folder}/coursehub-shadow.pth', 'import os; ' + marker('user-site-ran') + '\\n')
    put(f'{folder}/usercustomize.py', 'import os\\n' + marker('usercustomize-ran') + '\\n')
    # A shadow of the server's own package: in the server, it would replace Jupyter Server.
    put(f'{folder}/jupyter_server/__init__.py', 'import os\\n' + marker('shadow-imported') + '\\n')
put(f'{site.getusersitepackages()}/coursehub_user_pkg.py', 'ANSWER = 42\\n')
print('written')
"""
MARKERS = ("server-config-ran", "user-site-ran", "usercustomize-ran", "shadow-imported")


def test_user_config_and_user_site_never_reach_the_server(shared_hub):
    hub = shared_hub
    (carol,) = hub.create_accounts("ucf", 1)
    token = hub.token_for(carol)
    hub.spawn(carol, token)
    assert "written" in hub.run(carol, token, USER_SHADOWS)
    api = HubAPI(hub.url, token)
    assert api.request("DELETE", f"users/{carol}/server").status_code in (202, 204)
    stopped = lambda: "" not in api.json("GET", f"users/{carol}")["servers"]  # noqa: E731
    wait_for(stopped, what=f"{carol}'s server to stop")
    url = hub.spawn(carol, token)
    # Before any kernel runs (kernels do read the user site): the server ran none of it.
    headers = {"Authorization": f"token {token}"}
    ran = [
        name
        for name in MARKERS
        if requests.get(f"{url}api/contents/{name}", headers=headers, timeout=30).status_code != 404
    ]
    assert ran == [], "the server ran what the student put in their home"
    # Kernels still import what the student installed with pip install --user.
    assert "42" in hub.run(carol, token, "import coursehub_user_pkg; print(coursehub_user_pkg.ANSWER)")


def test_jupyterlab_keeps_settings_and_workspaces_in_the_home(students):
    hub, alice, _, tokens = students
    url, headers = hub.server_url(alice), {"Authorization": f"token {tokens[alice]}"}
    theme = url + "lab/api/settings/@jupyterlab/apputils-extension:themes"
    saved = requests.put(theme, json={"raw": '{"theme": "JupyterLab Dark"}'}, headers=headers, timeout=30)
    assert saved.status_code == 204, saved.text
    workspace = requests.get(url + "lab/api/workspaces/default", headers=headers, timeout=30)
    assert workspace.status_code == 200, workspace.text
    listing = "import os; print(os.listdir(os.path.expanduser('~/.jupyter/lab')))"
    assert "user-settings" in hub.run(alice, tokens[alice], listing)
