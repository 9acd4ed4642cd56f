"""The BinderHub-compatible API on a real hub: event-stream contract, thebe in Chromium, /v2 links, limits."""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from conftest import REPO, free_port, run_first_cell, wait_for
from test_courses import make_course_repo

from coursehub.clients.kernel import KernelSession
from coursehub.clients.loopback import browser_session
from coursehub.courses.catalog import load_catalog
from coursehub.launch.binder.build import build_repository
from coursehub.launch.binder.spec import parse_build_path
from coursehub.spawner.accounts import unix_name
from coursehub.tools.bench.readers import binder_spec, measure_readers

pytestmark = [pytest.mark.hub, pytest.mark.browser]
THEBE = REPO / "node_modules" / ".cache" / "thebe-0.9.3"
MAX_TOTAL = 3
PER_MINUTE = 20


@pytest.fixture(scope="module")
def book(make_hub_module):
    """A hub whose open course 'book' comes from a git:// repository, and the origin of a textbook.

    The textbook's port is held (bound and listening) from here on: a port only looked up as free was
    taken by something else before the page's server bound it (seen once in a whole run).
    """
    page_socket = socket.create_server(("127.0.0.1", 0))
    page_port = page_socket.getsockname()[1]
    origin = f"http://127.0.0.1:{page_port}"  # another port: another origin than the hub's
    hub = make_hub_module(
        binder={
            "allowed_origins": [origin],
            "max_total": MAX_TOTAL,
            "max_per_repo": MAX_TOTAL,
            "per_client_per_minute": PER_MINUTE,
        }
    )
    repos = hub.root / "git"
    repo = make_course_repo(repos)
    port = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--export-all", "--reuseaddr", f"--port={port}", "--listen=127.0.0.1"]
        + [f"--base-path={repos}", str(repos)]
    )
    url = f"git://127.0.0.1:{port}/{repo.name}"
    try:
        wait_for(
            lambda: subprocess.run(["git", "ls-remote", url], capture_output=True).returncode == 0,
            timeout=30,
            what="git daemon",
        )
        hub.cli("course", "add", url, "--name", "book", "--access", "open", "--notebook", "week1/intro.ipynb")
        yield hub, url, origin, page_socket
    finally:
        daemon.terminate()
        page_socket.close()


@pytest.fixture(autouse=True)
def no_binder_users_left(book):
    """Each test starts and ends with no anonymous servers (the quotas count them)."""
    yield
    api = book[0].api()
    names = [u["name"] for u in api.users() if "coursehub-binder" in u.get("groups", [])]
    for name in names:  # as the culler does: named servers first, then the user
        api.request("DELETE", f"users/{name}/servers/book")
    for name in names:
        stopped = functools.partial(lambda n: not api.json("GET", f"users/{n}")["servers"], name)
        wait_for(stopped, timeout=60, what="servers to stop")
        assert api.request("DELETE", f"users/{name}").status_code == 204


def spec_of(url: str, ref: str = "HEAD") -> str:
    """What thebe sends for repoProvider 'git'."""
    return f"git/{quote(url, safe='')}/{ref}"


def build(hub, spec: str, headers: dict | None = None) -> tuple[requests.Response, list[dict]]:
    """Read /build's event stream as EventSource does, up to `ready` or `failed`."""
    response = requests.get(
        hub.url + "hub/binder/build/" + spec,
        headers={"Accept": "text/event-stream", **(headers or {})},
        stream=True,
        timeout=300,
    )
    events = []
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("data:"):
            events.append(json.loads(line[5:]))
            if events[-1]["phase"] in ("ready", "failed"):
                break
    response.close()
    return response, events


def launch(hub, url: str) -> dict:
    """The ready event of a fresh launch (fails the test otherwise)."""
    _, events = build(hub, spec_of(url))
    assert events and events[-1]["phase"] == "ready", events
    return events[-1]


def test_build_stream_ends_ready_with_a_server_and_a_token_for_it_alone(book):
    hub, url, origin, _ = book
    response, events = build(hub, spec_of(url), {"Origin": origin})
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Access-Control-Allow-Origin"] == origin
    phases = [e["phase"] for e in events]
    assert phases[0] == "waiting" and phases[-1] == "ready", phases
    assert {"fetching", "built", "launching"} <= set(phases)
    ready = events[-1]
    for key in ("url", "token", "image", "repo_url", "binder_ref_url", "binder_launch_host", "message"):
        assert ready[key], key
    assert ready["binder_request"] == "v2/" + spec_of(url)
    assert ready["repo_url"] == url
    user = ready["url"].rstrip("/").split("/")[-2]
    assert user.startswith("bnd-") and ready["url"] == hub.server_url(user, "book")
    printed = _run(ready, "from tabulate import tabulate\nprint(tabulate([[6, 7]], tablefmt='plain'))")
    assert "6  7" in printed  # the course's own package
    # As on Binder, the repository is the server's root folder.
    auth = {"Authorization": f"token {ready['token']}"}
    root = requests.get(ready["url"] + "api/contents", headers=auth, timeout=30).json()
    assert {"week1", "data", "requirements.txt"} <= {item["name"] for item in root["content"]}
    # thebe, on the textbook's origin, talks to the server's own origin (with subdomains) with the token.
    specs = requests.get(ready["url"] + "api/kernelspecs", headers={**auth, "Origin": origin}, timeout=30)
    assert specs.status_code == 200 and specs.headers.get("Access-Control-Allow-Origin") == origin
    # The token opens this one server and nothing of the hub.
    hub_api = requests.get(hub.url + "hub/api/users", headers={"Authorization": f"token {ready['token']}"})
    assert hub_api.status_code == 403


def test_build_without_event_stream_accept_is_400(book):
    hub, url, _, _ = book
    response = requests.get(hub.url + "hub/binder/build/" + spec_of(url), timeout=30)
    assert response.status_code == 400


def test_other_origins_get_no_cors_headers(book):
    hub, _, _, _ = book
    response, events = build(hub, "gh/nobody/nothing/HEAD", {"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert events[-1]["phase"] == "failed"


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("zz/org/repo/HEAD", "unknown provider 'zz'"),
        ("gh/only-one-part", "needs a repository and a ref"),
        ("gh/org/repo/..%2F..%2Fetc", "not a valid git ref"),
        (spec_of("file:///etc"), "must be a https://"),
        ("gh/someone/elsewhere/main", "is not a course on this hub"),
        ("BOOK_WRONG_REF", "not at 'no-such-branch'"),
    ],
)
def test_bad_requests_end_in_failed_with_a_clear_message(book, spec, text):
    hub, url, _, _ = book
    spec = spec_of(url, "no-such-branch") if spec == "BOOK_WRONG_REF" else spec
    _, events = build(hub, spec)
    assert events[-1]["phase"] == "failed" and text in events[-1]["message"], events
    assert "ready" not in [e["phase"] for e in events]


def test_quota_full_fails_with_a_clear_message(book):
    hub, url, _, _ = book
    for _ in range(MAX_TOTAL):
        launch(hub, url)
    _, events = build(hub, spec_of(url))
    assert events[-1]["phase"] == "failed", events
    assert f"maximum of {MAX_TOTAL} anonymous servers" in events[-1]["message"]


def test_anonymous_readers_cannot_read_homes_or_reach_each_others_servers(book):
    hub, url, _, _ = book
    (name,) = hub.create_accounts("reg", 1)
    token = hub.token_for(name)
    hub.spawn(name, token, server="book")
    home = hub.run(name, token, write_file("secret.txt", "s3cret"), "book")
    a, b = launch(hub, url), launch(hub, url)
    b_home = _run(b, write_file("b.txt", "b"))
    probe = (
        "for path in [{!r}, {!r}]:\n"
        "    try:\n        print(open(path).read())\n"
        "    except OSError as exc:\n        print(type(exc).__name__)\n"
    )
    seen = _run(a, probe.format(home.strip() + "/secret.txt", b_home.strip() + "/b.txt"))
    assert "s3cret" not in seen and "\nb\n" not in f"\n{seen}", seen
    assert seen.split() and all(word.endswith("Error") for word in seen.split()), seen
    # A's token does not open B's server, and nothing opens it without a token.
    for headers in ({"Authorization": f"token {a['token']}"}, {}):
        response = requests.get(b["url"] + "api/kernels", headers=headers, allow_redirects=False, timeout=30)
        assert response.status_code in (302, 403), response.status_code


def test_deleting_an_anonymous_user_as_the_culler_does_removes_its_files_and_account(book):
    hub, url, _, _ = book
    ready = launch(hub, url)
    home = Path(_run(ready, write_file("notes.txt", "mine")).strip())
    name = ready["url"].split("/user/")[1].split("/")[0]
    assert (home / "notes.txt").exists()
    api = hub.api()
    groups = api.json("GET", f"users/{name}")["groups"]
    assert set(groups) == {"coursehub-binder", "coursehub-temporary"}
    api.request("DELETE", f"users/{name}/servers/book", json={"remove": True})
    wait_for(lambda: not api.json("GET", f"users/{name}")["servers"], timeout=60, what="the server to stop")
    # JupyterHub can answer 500 while it still removes the named server: the culler retries each round.
    wait_for(lambda: api.request("DELETE", f"users/{name}").status_code == 204, timeout=60, what="deletion")
    wait_for(lambda: not home.exists(), timeout=60, what=f"{home} to be deleted")
    assert subprocess.run(["id", home.name], capture_output=True).returncode != 0


def write_file(name: str, text: str) -> str:
    """Code that writes ~/name and prints the home folder."""
    home = "os.path.expanduser('~')"
    return f"import os; open(os.path.join({home}, '{name}'), 'w').write('{text}'); print({home})"


def _run(ready: dict, code: str) -> str:
    with KernelSession(ready["url"], ready["token"]) as kernel:
        result = kernel.execute(code)
    assert result.status == "ok", result.error
    return result.stdout


@pytest.fixture(scope="module")
def textbook(book, tmp_path_factory):
    """The shipped example page, pointed at the test hub, served from another origin."""
    hub, url, _, page_socket = book
    if not (THEBE / "lib" / "index.js").exists():
        pytest.fail("the thebe bundle is missing: `./run setup test` fetches it")
    root = tmp_path_factory.mktemp("textbook")
    shutil.copytree(THEBE / "lib", root / "thebe")
    page = (REPO / "examples" / "thebe" / "index.html").read_text()
    page = page.replace("https://hub.example.org/hub/binder", hub.url + "hub/binder")
    page = page.replace("https://github.com/example/bio101", url)
    page = page.replace("https://unpkg.com/thebe@0.9.3/lib/", "thebe/")
    (root / "index.html").write_text(page)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler, bind_and_activate=False)
    server.socket.close()
    server.socket, server.server_address = page_socket, page_socket.getsockname()  # held since `book`
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{page_socket.getsockname()[1]}/index.html"
    server.shutdown()


def test_thebe_page_on_another_origin_runs_a_cell_with_the_course_package(
    book, textbook, browser, output_dir
):
    hub = book[0]
    page = browser.new_page()
    page.set_default_timeout(120_000)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        page.goto(textbook)
        page.click(".thebe-activate-button")
        page.locator(".thebe-status", has_text=re.compile("kernel connected", re.I)).wait_for()
        page.click(".thebe-run-button")
        output = page.locator(".thebe-output").filter(has_text="6    7").first
        output.wait_for()
        assert "x    y" in output.inner_text()
    finally:
        page.screenshot(path=str(output_dir / "binder-thebe.png"))
        page.close()
    # The kernel's websocket goes to the reader's server: on its own host with subdomains (the default).
    host = rf"bnd-[0-9a-f]+\.localhost:{hub.port}" if hub.subdomains else rf"127\.0\.0\.1:{hub.port}"
    assert any(re.match(rf"ws://{host}/user/bnd-", url) for url in sockets), sockets


def test_v2_link_opens_jupyterlab_on_the_notebook(book, browser, output_dir):
    hub, url, _, _ = book
    link = hub.url + "hub/binder/v2/" + spec_of(url) + "?urlpath=lab/tree/week1/intro.ipynb"
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(120_000)
    page.goto(link)
    page.wait_for_url("**/user/bnd-*/book/lab/tree/week1/intro.ipynb", timeout=180_000)
    text = run_first_cell(page, output_dir, "binder-v2.png")
    assert "x    y" in text and "6    7" in text
    page.close()


def test_other_repositories_build_with_the_course_builder_and_stream_its_log(book):
    # What binder.allow_any_repo runs, on this hub's state folder (the environment is shared with
    # 'book', so the build is quick): a repository that is not a course, served by the git daemon.
    hub, url, _, _ = book
    subprocess.run(["git", "clone", "-q", "--bare", url, str(hub.root / "git" / "other")], check=True)
    spec = parse_build_path("git", binder_spec(url.rsplit("/", 1)[0] + "/other").removeprefix("git/"))
    events: list[dict] = []

    async def emit(event: dict) -> None:
        events.append(event)

    binder = {"python": "", "state_dir": str(hub.state_dir)}
    # In a thread: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        record = pool.submit(asyncio.run, build_repository(spec, binder, {}, emit, ())).result()
    assert record.ready and record.access == "open" and record.repo == spec.repo_url
    assert (Path(record.content) / "week1" / "intro.ipynb").exists()
    assert [e["phase"] for e in events][-1] == "built"
    assert len([e for e in events if e["phase"] == "building"]) >= 1
    # Built once: the next request finds it in the catalog.
    assert load_catalog(hub.state_dir / "courses")[record.name].environment == record.environment


def test_readers_benchmark_measures_each_reader(book):
    hub, url, _, _ = book
    run = measure_readers(hub.url + "hub/binder", binder_spec(url), 2)
    assert run.errors == [] and len(run.seconds) == 2, run.errors
    assert all(r.ready_seconds is not None and r.ready_seconds <= r.seconds for r in run.readers)
    assert run.summary()["ok"] == 2


def test_v2_links_keep_logged_in_users_and_refuse_embedding(book):
    hub, url, _, _ = book
    (name,) = hub.create_accounts("v2", 1)
    link = hub.url + "hub/binder/v2/" + spec_of(url) + "?urlpath=lab/tree/week1/intro.ipynb"
    response = hub.login(name).get(link, allow_redirects=False, timeout=60)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/hub/launch/book?path=week1%2Fintro.ipynb")
    # An <img> on some other page must not log anyone in as an anonymous user.
    embedded = requests.get(link, headers={"Sec-Fetch-Dest": "image"}, allow_redirects=False, timeout=60)
    assert embedded.status_code == 400 and "jupyterhub-session-id" not in embedded.cookies


def test_an_anonymous_reader_runs_only_the_server_its_launch_started(book):
    hub, url, _, _ = book
    reader = browser_session()  # cookies as Chromium keeps them for *.localhost
    opened = reader.get(hub.url + "hub/binder/v2/" + spec_of(url), timeout=180)
    # JupyterHub's spawn page, or already the server when it started in time.
    user = re.search(r"/(?:user|spawn-pending)/(bnd-[^/]+)/book", opened.url)
    assert opened.status_code == 200 and user, opened.url
    user = user[1]
    wait_for(
        lambda: hub.api().json("GET", f"users/{user}")["servers"].get("book", {}).get("ready"),
        timeout=180,
        what="the reader's server",
    )
    # The reader's cookie could ask for its default server: the open course again, at the course's
    # limits rather than Binder's, and outside the Binder quotas.
    xsrf = {"X-XSRFToken": reader.cookies.get("_xsrf", path="/hub/")}
    second = reader.post(hub.url + f"hub/api/users/{user}/server", headers=xsrf, timeout=120)
    assert second.status_code in (400, 403), (second.status_code, second.text)
    assert "launch" in second.json()["message"]
    wait_for(
        lambda: not hub.api().json("GET", f"users/{user}")["servers"].get("", {}).get("pending"),
        timeout=60,
        what="the refused start to end",
    )
    assert "" not in hub.api().json("GET", f"users/{user}")["servers"]


def test_a_v2_link_never_starts_an_unregistered_repository_in_a_users_account(book):
    hub, url, _, _ = book
    subprocess.run(["git", "clone", "-q", "--bare", url, str(hub.root / "git" / "notacourse")], check=True)
    other = url.rsplit("/", 1)[0] + "/notacourse"
    spec = parse_build_path("git", binder_spec(other).removeprefix("git/"))
    binder = {"python": "", "state_dir": str(hub.state_dir)}
    with ThreadPoolExecutor(1) as pool:  # built as binder.allow_any_repo would, for anonymous readers
        record = pool.submit(asyncio.run, build_repository(spec, binder, {}, None, ())).result()
    (name,) = hub.create_accounts("v2u", 1)
    session = hub.login(name)
    link = hub.url + "hub/binder/v2/" + spec_of(other) + "?urlpath=lab/tree/week1/intro.ipynb"
    response = session.get(link, allow_redirects=False, timeout=60)
    assert response.status_code == 409 and "not a course of this hub" in response.text
    launched = session.get(hub.url + f"hub/launch/{record.name}", allow_redirects=False, timeout=60)
    assert launched.status_code == 403 and "not a course of this hub" in launched.text
    assert record.name not in hub.api().json("GET", f"users/{name}")["servers"]


def test_an_unregistered_repositorys_pth_file_never_runs_as_root_in_fork_mode(book):
    hub, url, _, _ = book
    markers = hub.root / "pth-markers"
    markers.mkdir()
    markers.chmod(0o1777)
    repo = hub.root / "git" / "pthmark"
    shutil.copytree(hub.root / "git" / "bio101", repo)
    code = (
        f"import os\ntry:\n open('{markers}/pth-uid-%d' % os.getuid(), 'w').close()\nexcept OSError:\n pass\n"
    )
    (repo / "postBuild").write_text(
        "#!/bin/bash\nsite=$(python -c 'import sysconfig; print(sysconfig.get_path(\"purelib\"))')\n"
        f'echo {json.dumps("import os; exec(" + repr(code) + ")")} > "$site/zz_coursehub_marker.pth"\n'
    )
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pth"],
        check=True,
    )
    other = url.rsplit("/", 1)[0] + "/pthmark"
    spec = parse_build_path("git", binder_spec(other).removeprefix("git/"))
    binder = {"python": "", "state_dir": str(hub.state_dir)}
    with ThreadPoolExecutor(1) as pool:  # built as binder.allow_any_repo would
        pool.submit(asyncio.run, build_repository(spec, binder, {}, None, ())).result()
    ready = launch(hub, other)  # an anonymous reader's server, on a fork-mode hub
    try:
        with KernelSession(ready["url"], ready["token"]) as kernel:
            assert kernel.execute("print(6 * 7)").stdout.strip() == "42"
        assert not (markers / "pth-uid-0").exists(), "a repository's .pth file ran as root"
    finally:  # the autouse fixture stops servers named 'book' only
        user, server = ready["url"].rstrip("/").split("/")[-2:]
        hub.api().request("DELETE", f"users/{user}/servers/{server}")


def test_a_courses_pth_file_never_runs_as_root_in_fork_mode(book):
    hub, _, _, _ = book
    markers = hub.root / "pth-markers-course"
    markers.mkdir()
    markers.chmod(0o1777)
    course = hub.root / "pthcourse"
    course.mkdir()
    (course / "requirements.txt").write_text("tabulate==0.9.0\n")
    # Outside the sandbox for root (the sandbox's /tmp is private), in the home for the user.
    code = (
        f"import os\nfor d in ('{markers}', os.environ.get('HOME', '/nonexistent')):\n try:\n"
        "  open(os.path.join(d, 'pth-uid-%d' % os.getuid()), 'w').close()\n except OSError:\n  pass\n"
    )
    # And a file of the server stack changed in the course's environment (a hostile wheel can
    # overwrite any file there): the root fork server must never import it.
    stack_code = code.replace("pth-uid-", "stack-uid-")
    (course / "postBuild").write_text(
        "#!/bin/bash\nsite=$(python -c 'import sysconfig; print(sysconfig.get_path(\"purelib\"))')\n"
        f'echo {json.dumps("import os; exec(" + repr(code) + ")")} > "$site/zz_coursehub_marker.pth"\n'
        f'printf "%s\\n" {shlex.quote(stack_code)} >> "$site/jupyter_server/serverapp.py"\n'
    )
    hub.cli("course", "add", str(course), "--name", "pthcourse")
    (name,) = hub.create_accounts("pth", 1)
    token = hub.token_for(name)
    hub.spawn(name, token, server="pthcourse")  # a fork-mode hub: from the stack's fork server
    assert hub.run(name, token, "import tabulate; print('ok')", server="pthcourse").strip() == "ok"
    assert not (markers / "pth-uid-0").exists(), "a course's .pth file ran as root in the fork server"
    assert not (markers / "stack-uid-0").exists(), "the fork server imported the course's copy of the stack"
    # The course's environment is the server's, as its user: its .pth ran there.
    account = pwd.getpwnam(unix_name(name, hub.prefix))
    assert (Path(account.pw_dir) / f"pth-uid-{account.pw_uid}").exists(), "the course's .pth did not run"
    hub.api().stop_server(name, "pthcourse")


def test_launches_per_client_are_rate_limited(book):
    # Last in the module: the address stays limited for a minute.
    hub, _, _, _ = book
    messages = [build(hub, "gh/nobody/nothing/HEAD")[1][-1]["message"] for _ in range(PER_MINUTE + 1)]
    assert "Too many launches from your address" in messages[-1]
    assert "is not a course on this hub" in messages[0]
