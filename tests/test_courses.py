"""Courses on a real hub: add from git, launch links in a browser, updates, guests, rosters, bad input."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from conftest import free_port, run_first_cell, wait_for

pytestmark = [pytest.mark.hub, pytest.mark.browser]


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
    )


def notebook(code: str) -> str:
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": [code]}
    return json.dumps(
        {
            "cells": [cell],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


def make_course_repo(root: Path) -> Path:
    """A git repo as an instructor would have it: requirements, notebooks in folders, data."""
    repo = root / "bio101"
    (repo / "week1").mkdir(parents=True)
    (repo / "data").mkdir()
    (repo / "requirements.txt").write_text("tabulate==0.9.0\n")
    (repo / "week1" / "intro.ipynb").write_text(
        notebook(
            "from tabulate import tabulate\nprint(tabulate([[6, 7]], headers=['x', 'y'], tablefmt='plain'))"
        )
    )
    (repo / "week1" / "notes.md").write_text("version 1\n")
    (repo / "data" / "values.csv").write_text("x,y\n6,7\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "week 1")
    return repo


@pytest.fixture(scope="module")
def course_hub(make_hub_module):
    hub = make_hub_module(temporary={"idle_timeout": 60, "per_client_per_minute": 3}, culler={"every": 10})
    repo = make_course_repo(hub.root)
    out = hub.cli("course", "add", str(repo), "--notebook", "week1/intro.ipynb").stdout
    assert "bio101 is ready" in out and "/hub/launch/bio101" in out
    hub.cli("course", "add", str(repo), "--name", "open101", "--access", "open")
    hub.cli("course", "add", str(repo), "--name", "roster", "--access", "someone-else")
    return hub, repo


def login_in_browser(page, hub, name):
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", hub.passwords[name])
    page.click("input[type=submit], button[type=submit]")


def test_launch_link_opens_the_notebook_in_the_course_environment(course_hub, browser, output_dir):
    hub, _ = course_hub
    (name,) = hub.create_accounts("bio", 1)
    link = hub.cli("course", "link", "bio101", "week1/intro.ipynb").stdout.strip()
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(120_000)
    page.goto(link)
    login_in_browser(page, hub, name)
    page.wait_for_url("**/user/*/bio101/lab/tree/bio101/week1/intro.ipynb", timeout=180_000)
    text = run_first_cell(page, output_dir, "course-launch-link.png")
    assert "x    y" in text and "6    7" in text  # printed by the course's own package
    page.close()


def test_update_brings_new_files_and_keeps_student_edits(course_hub):
    hub, repo = course_hub
    (name,) = hub.create_accounts("upd", 1)
    token = hub.token_for(name)
    hub.spawn(name, token, server="bio101")
    notes = "import pathlib; p = pathlib.Path('bio101/week1/notes.md')"
    hub.run(name, token, notes + "; p.write_text('my own notes')", server="bio101")
    (repo / "week1" / "notes.md").write_text("version 2\n")
    (repo / "week2.ipynb").write_text(notebook("print('week 2')"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "week 2")
    hub.cli("course", "update", "bio101")
    hub.api().stop_server(name, "bio101")
    wait_for(lambda: not hub.api().json("GET", f"users/{name}")["servers"], what="the stop")
    hub.spawn(name, token, server="bio101")
    out = hub.run(
        name,
        token,
        notes + "; import os; print(p.read_text(), os.path.exists('bio101/week2.ipynb'))",
        server="bio101",
    )
    assert out.strip() == "my own notes True"


@pytest.fixture(scope="module")
def guest(course_hub):
    """A temporary user from a course link, made when the module's first guest test starts.

    The culler's minute of idleness then runs beside the module's other tests; the test of the culling
    comes last in the module.
    """
    hub, _ = course_hub
    made = guest_login(hub)
    assert made is not None, "the module's first guest link was rate-limited"
    return made


def guest_login(hub) -> tuple[requests.Session, str] | None:
    """A new temporary user through the open course's link, or None when the link answers 429."""
    session = requests.Session()
    response = session.get(hub.url + "hub/tmplogin?course=open101&notebook=week1/intro.ipynb", timeout=120)
    if response.status_code == 429:
        return None
    # A fast start lands in JupyterLab at once; a slow one on the spawn-pending page first.
    assert response.status_code == 200 and "tmp-" in response.url
    # From the path: with subdomains the host also names the user (tmp-x.localhost).
    user = "tmp-" + urlsplit(response.url).path.split("tmp-", 1)[1].split("/")[0]
    return session, user


def test_temporary_user_link_works(course_hub, guest):
    hub, _ = course_hub
    session, user = guest
    wait_for(
        lambda: hub.api().json("GET", f"users/{user}")["servers"].get("open101", {}).get("ready"),
        timeout=120,
        what="the guest's server",
    )
    # The path under the hub's origin leads on to the guest's server (its own host with subdomains).
    lab = session.get(hub.url + f"user/{user}/open101/lab/tree/open101/week1/intro.ipynb", timeout=120)
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    assert lab.url.startswith(hub.server_url(user, "open101") + "lab/tree/open101/week1/intro.ipynb"), lab.url
    assert (hub.home_root / (hub.prefix + user)).is_dir()


def test_guest_links_are_rate_limited_per_address(course_hub):
    hub, _ = course_hub
    # A client that claims another address each time is still one client.
    codes = [
        requests.get(
            hub.url + "hub/tmplogin?course=open101",
            headers={"X-Real-Ip": f"10.0.0.{i}", "X-Forwarded-For": f"10.0.1.{i}"},
            allow_redirects=False,
            timeout=60,
        ).status_code
        for i in range(5)
    ]
    assert 429 in codes, codes


def test_roster_denies_an_outsider_and_guests_cannot_open_account_courses(course_hub):
    hub, _ = course_hub
    (name,) = hub.create_accounts("out", 1)
    session = hub.login(name)
    response = session.get(hub.url + "hub/launch/roster", timeout=60)
    assert response.status_code == 403 and "not enrolled" in response.text
    assert not hub.api().json("GET", f"users/{name}")["servers"]  # no spawn happened
    guest = requests.get(hub.url + "hub/tmplogin?course=bio101", timeout=60)
    assert guest.status_code == 403


@pytest.mark.parametrize(
    ("query", "status", "text"),
    [
        ("launch/nope", 404, "Courses you can open"),
        ("launch/bio101?path=../../etc/passwd", 400, "may not contain"),
        ("launch/bio101?path=/etc/passwd", 400, "relative"),
        ("launch/bio101?path=week1%00intro.ipynb", 400, "control characters"),
        ("launch/bio101?path=no/such.ipynb", 200, "opening the course folder"),
    ],
)
def test_bad_launch_links_get_clear_answers(course_hub, query, status, text):
    hub, _ = course_hub
    name = f"bad-{status}"
    if name not in hub.passwords:
        hub.passwords.update({n: hub.passwords.get(n) for n in hub.create_accounts(name, 1)})
    session = hub.login(next(n for n in hub.passwords if n.startswith(name)))
    response = session.get(hub.url + "hub/" + query, timeout=60, allow_redirects=False)
    assert response.status_code == status
    assert text in response.text


def test_broken_repos_fail_clearly_and_change_nothing(course_hub):
    hub, repo = course_hub
    config_before = hub.config.read_text()
    bad = [
        ["course", "add", str(hub.root / "missing-repo"), "--name", "ghost"],
        ["course", "add", str(repo), "--name", "badref", "--ref", "no-such-branch"],
    ]
    for args in bad:
        result = hub.cli(*args, check=False)
        assert result.returncode == 1
        assert "error:" in result.stderr and ("git" in result.stderr or "cannot" in result.stderr)
    broken = hub.root / "broken"
    broken.mkdir()
    (broken / "requirements.txt").write_text("this-package-does-not-exist-coursehub==1.0\n")
    result = hub.cli("course", "add", str(broken), check=False)
    assert result.returncode == 1 and "install packages" in result.stderr
    assert hub.config.read_text() == config_before
    assert "bio101" in hub.cli("course", "list").stdout


@contextlib.contextmanager
def remote_host():
    """A namespace of this test's own, at an address servers reach as they reach the internet.

    Not the host's loopback: servers' network namespaces (network.isolate) refuse every service
    of the host. A benchmark-range address (198.18/15), on a veth pair of this machine only.
    """
    tag = secrets.token_hex(2)
    namespace, veth = f"coursehub-test-remote-{tag}", f"chtrem{tag}"
    third, fourth = secrets.randbelow(250) + 1, 2 * secrets.randbelow(120) + 2
    host, remote = f"198.18.{third}.{fourth}", f"198.18.{third}.{fourth + 1}"
    inside = ["ip", "-n", namespace]

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, timeout=30)

    try:
        run("ip", "netns", "add", namespace)
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        run("ip", "addr", "add", f"{host}/32", "dev", veth)
        run("ip", "link", "set", veth, "up")
        # Replies to servers come back in on this veth: forwarding for it only, as coursehub does for its own.
        Path(f"/proc/sys/net/ipv4/conf/{veth}/forwarding").write_text("1")
        run(*inside, "link", "set", "lo", "up")
        run(*inside, "link", "set", "eth0", "up")
        run(*inside, "addr", "add", f"{remote}/32", "dev", "eth0")
        run("ip", "route", "add", f"{remote}/32", "dev", veth)
        run(*inside, "route", "add", f"{host}/32", "dev", "eth0")
        run(*inside, "route", "add", "default", "via", host)
        yield remote, ["ip", "netns", "exec", namespace]
    finally:
        subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)


def test_nbgitpuller_links_keep_working(course_hub):
    hub, repo = course_hub
    (name,) = hub.create_accounts("pull", 1)
    session = hub.login(name)
    token = hub.token_for(name)
    hub.spawn(name, token)
    show = ["git", "-C", str(repo), "branch", "--show-current"]
    branch = subprocess.run(show, capture_output=True, text=True, check=True).stdout.strip()
    # Served over git:// as a remote would be (students' git refuses repos owned by others), from
    # an address of its own (servers reach no service of the host).
    port = free_port()
    remote = contextlib.ExitStack()
    address, exec_in = remote.enter_context(remote_host())
    daemon = subprocess.Popen(
        [
            *exec_in,
            "git",
            "daemon",
            "--export-all",
            "--reuseaddr",
            f"--port={port}",
            f"--listen={address}",
            f"--base-path={repo.parent}",
            str(repo.parent),
        ]
    )
    url = f"git://{address}:{port}/{repo.name}"
    try:
        wait_for(
            lambda: subprocess.run(["git", "ls-remote", url], capture_output=True).returncode == 0,
            timeout=30,
            what="git daemon",
        )
        query = {"repo": url, "branch": branch, "urlpath": "lab/tree/bio101/week1/intro.ipynb"}
        link = session.get(hub.url + "hub/user-redirect/git-pull", params=query, timeout=120)
        # On the user's own host with subdomains (the default).
        assert link.status_code == 200 and link.url.startswith(hub.server_url(name) + "git-pull"), link.url
        # The page's script then reads this event stream while the server pulls.
        events = requests.get(
            hub.server_url(name) + "git-pull/api",
            timeout=300,
            params={"repo": url, "branch": branch, "targetpath": "bio101"},
            headers={"Authorization": f"token {token}"},
        ).text
    finally:
        daemon.terminate()
        daemon.wait(30)
        remote.close()
    assert '"phase": "finished"' in events, events[-500:]
    pulled = hub.run(name, token, "import os; print(os.path.exists('bio101/week1/intro.ipynb'))")
    assert pulled.strip() == "True"


def test_pip_install_user_persists_in_the_home_for_that_course(course_hub):
    hub, _ = course_hub
    (name,) = hub.create_accounts("pip", 1)
    token = hub.token_for(name)
    hub.spawn(name, token, server="bio101")
    # A wheel made in the home, installed without an index: servers' namespaces reach the internet
    # only where the host forwards, and a test sends nothing beyond this machine.
    install = """
import subprocess, sys, zipfile
info = 'chjokes-1.0.dist-info'
with zipfile.ZipFile('chjokes-1.0-py3-none-any.whl', 'w') as wheel:
    wheel.writestr('chjokes.py', 'JOKE = 1\\n')
    wheel.writestr(f'{info}/METADATA', 'Metadata-Version: 2.1\\nName: chjokes\\nVersion: 1.0\\n')
    tags = 'Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n'
    wheel.writestr(f'{info}/WHEEL', tags)
    files = ['chjokes.py', f'{info}/METADATA', f'{info}/WHEEL', f'{info}/RECORD']
    wheel.writestr(f'{info}/RECORD', ''.join(f'{f},,\\n' for f in files))
r = subprocess.run([sys.executable, '-m', 'pip', 'install', '--user', '--quiet', '--no-index',
                    'chjokes-1.0-py3-none-any.whl'], capture_output=True, text=True)
print(r.returncode, r.stderr[-300:])
"""
    assert hub.run(name, token, install, server="bio101").startswith("0")
    # A new kernel, and after a restart of the server, still sees it.
    assert "ok" in hub.run(name, token, "import chjokes; print('ok')", server="bio101")
    hub.api().stop_server(name, "bio101")
    wait_for(lambda: not hub.api().json("GET", f"users/{name}")["servers"], what="the stop")
    hub.spawn(name, token, server="bio101")
    assert "ok" in hub.run(name, token, "import chjokes; print('ok')", server="bio101")


def edit_course(hub, name: str, **changes) -> None:
    """Change a course in the hub's coursehub.yaml and rebuild its record."""
    config = yaml.safe_load(hub.config.read_text())
    (course,) = [c for c in config["courses"] if c["name"] == name]
    course.update(changes)
    hub.config.write_text(yaml.safe_dump(config))
    hub.cli("course", "build", name)


def test_shared_data_is_read_only_and_scratch_is_shared(course_hub):
    hub, _ = course_hub
    data, scratch = hub.root / "shared-data", hub.root / "shared-scratch"
    data.mkdir()
    (data / "genome.txt").write_text("ACGT\n")
    os.chmod(data, 0o755)
    os.chmod(data / "genome.txt", 0o644)
    writer, reader = hub.create_accounts("ds", 2)
    edit_course(
        hub, "roster", shared_data=str(data), scratch=str(scratch), access=["someone-else", writer, reader]
    )
    tokens = {name: hub.token_for(name) for name in (writer, reader)}
    for name in (writer, reader):
        hub.spawn(name, tokens[name], server="roster")
    check = (
        "import os; print(open('roster/shared/genome.txt').read().strip(), end=' ')\n"
        "try:\n    open('roster/shared/x', 'w')\nexcept OSError as e:\n    print(type(e).__name__, end=' ')\n"
        "open(f\"roster/scratch/from-{os.environ['JUPYTERHUB_USER']}\", 'w').write('hi')\n"
        "print(sorted(os.listdir('roster/scratch')))"
    )
    assert hub.run(writer, tokens[writer], check, server="roster").startswith("ACGT OSError")
    seen = hub.run(reader, tokens[reader], check, server="roster")
    assert f"from-{writer}" in seen and f"from-{reader}" in seen


def test_new_requirements_give_new_servers_the_new_environment_from_the_same_fork_server(course_hub):
    from coursehub.courses.catalog import load_catalog

    hub, repo = course_hub
    chem = hub.root / "chem101"
    subprocess.run(["cp", "-a", str(repo), str(chem)], check=True)
    (chem / "requirements.txt").write_text("tabulate==0.8.10\n")  # an environment of its own
    git(chem, "commit", "-qam", "tabulate 0.8.10")
    hub.cli("course", "add", str(chem), "--name", "chem101")
    (name,) = hub.create_accounts("chem", 1)
    token = hub.token_for(name)
    hub.spawn(name, token, server="chem101")
    before = load_catalog(hub.state_dir / "courses")["chem101"]
    old_env, stack = Path(before.environment), Path(before.stack)
    # One fork server per stack environment, shared by the courses built on it (none of theirs).
    assert stack != old_env and hub.forkserver_pid(old_env) is None
    fork_server = hub.forkserver_pid(stack)
    assert fork_server, "the stack environment has no fork server"

    (chem / "requirements.txt").write_text("tabulate==0.9.0\n")
    git(chem, "commit", "-qam", "tabulate 0.9.0")
    hub.cli("course", "update", "chem101")
    after = load_catalog(hub.state_dir / "courses")["chem101"]
    assert Path(after.environment) != old_env and Path(after.stack) == stack
    # The running server keeps its environment until it restarts.
    version = "import tabulate; print(tabulate.__version__)"
    assert hub.run(name, token, version, server="chem101").strip() == "0.8.10"

    hub.api().stop_server(name, "chem101")
    wait_for(lambda: not hub.api().json("GET", f"users/{name}")["servers"], what="the stop")
    hub.spawn(name, token, server="chem101")
    assert hub.run(name, token, version, server="chem101").strip() == "0.9.0"
    assert hub.forkserver_pid(stack) == fork_server


def process_environ(pid: int) -> dict[bytes, bytes]:
    raw = process_file(pid, "environ")
    return dict(kv.split(b"=", 1) for kv in raw.split(b"\0") if b"=" in kv)


def process_file(pid: int, name: str) -> bytes:
    """/proc/<pid>/<name>, or nothing if the process has gone meanwhile."""
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def test_the_cullers_share_one_process_and_each_culls_with_its_own_services_token(course_hub):
    from coursehub.clients.hubapi import HubAPI
    from coursehub.hubconfig.services import culler_token_env
    from coursehub.names import TEMP_CULLER

    hub, _ = course_hub
    # A guest of its own: the module's guest may be culled (idle 60 s) by the time this test runs
    # (CI run of cee8477: the culler saw no one). The link may still be rate-limited from the test of that.
    _, user = wait_for(
        lambda: guest_login(hub), timeout=150, interval=5, what="a guest link that is not rate-limited"
    )
    token = (hub.state_dir / f"{TEMP_CULLER}-token").read_text().strip()
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    env_name = culler_token_env(TEMP_CULLER).encode()
    (runner,) = [pid for pid in pids if process_environ(pid).get(env_name) == token.encode()]
    command = process_file(runner, "cmdline")
    assert b"coursehub.hub.cullers" in command and token.encode() not in command  # tokens never in argv
    api_url = process_environ(runner)[b"JUPYTERHUB_API_URL"]
    separate = [
        pid
        for pid in pids
        if b"jupyterhub_idle_culler" in process_file(pid, "cmdline")
        and process_environ(pid).get(b"JUPYTERHUB_API_URL") == api_url
    ]
    assert not separate, "this hub still runs a culler process of its own"
    # The guests' loop uses its own service's token: the hub shows it guests only, and deletes no one else.
    outsider = "cullme-not-" + secrets.token_hex(3)
    assert hub.api().request("POST", f"users/{outsider}").status_code == 201
    guests_culler = HubAPI(hub.url, token)
    seen = {u["name"] for u in guests_culler.users()}
    assert user in seen and outsider not in seen, seen
    assert guests_culler.request("DELETE", f"users/{outsider}").status_code in (403, 404)
    assert outsider in {u["name"] for u in hub.api().users()}


def test_an_idle_temporary_user_is_culled_with_files(course_hub, guest):
    """Last in the module: its guest has been idle through the tests above."""
    hub, _ = course_hub
    _, user = guest
    home = hub.home_root / (hub.prefix + user)
    # The temporary culler deletes the idle user, the account and the home (idle_timeout=60 s).
    wait_for(
        lambda: user not in {u["name"] for u in hub.api().users()},
        timeout=300,
        interval=2,
        what=f"temporary user {user} to be culled",
    )
    wait_for(lambda: not home.exists(), timeout=30, what="the temporary home to be deleted")
    # The culler's rounds all succeeded: no 500 (JupyterHub's removal of a named server raced the
    # user's deletion: "orm_spawner not found").
    errors = [line for line in hub.log().splitlines() if re.search(r"\] 5\d\d DELETE /hub/api/users/", line)]
    assert not errors, errors
