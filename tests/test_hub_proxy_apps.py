"""Web applications a course runs beside JupyterLab (jupyter-server-proxy): only their owner reaches them.

The test course installs jupyter-server-proxy and a small web app registered through its entry point,
on a fixed port. Alice opens it through her server's URL; Bob gets nothing, neither through the hub
nor straight from his kernel to her app's port (each server has its own network namespace).
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path

import pytest
import requests
from conftest import free_port
from test_courses import git

from coursehub.spawner.accounts import unix_name

pytestmark = pytest.mark.hub

APP = '''
import http.server
import os
import pwd
import sys


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {pwd.getpwuid(os.getuid()).pw_name}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def setup_hello():
    """jupyter-server-proxy's entry point: how to start the app."""
    return {"command": [sys.executable, "-m", "helloapp", "{port}"], "port": PORT, "absolute_url": False}


if __name__ == "__main__":
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Hello).serve_forever()
'''

SETUP = """
from setuptools import setup

setup(
    name="helloapp",
    version="1.0",
    py_modules=["helloapp"],
    entry_points={"jupyter_serverproxy_servers": ["hello = helloapp:setup_hello"]},
)
"""


@pytest.fixture(scope="module")
def apps_hub(make_hub_module):
    """A hub (default settings) with a course whose servers run the 'hello' app on a fixed port."""
    hub = make_hub_module()
    repo = hub.root / "apps"
    repo.mkdir()
    port = free_port()
    (repo / "helloapp.py").write_text(APP.replace("PORT", str(port)))
    (repo / "setup.py").write_text(SETUP)
    (repo / "requirements.txt").write_text("jupyter-server-proxy==4.4.0\n")
    (repo / "README.md").write_text("A course with a web app.\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "app")
    hub.cli("course", "add", str(repo), "--name", "apps", "--access", "open")
    return hub, port


def server_addresses(hub, username: str) -> list[str]:
    """The IPv4 addresses of the network namespace the user's processes run in, loopback aside."""
    uid = pwd.getpwnam(unix_name(username, hub.prefix)).pw_uid
    pid = next(p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _owner(p) == uid)
    out = subprocess.run(
        ["nsenter", "-t", pid, "-n", "ip", "-j", "-4", "addr"], capture_output=True, text=True, timeout=30
    )
    interfaces = json.loads(out.stdout or "[]")
    found = [a["local"] for i in interfaces for a in i.get("addr_info", [])]
    return [address for address in found if not address.startswith("127.")]


def _owner(proc: Path) -> int | None:
    try:
        return os.stat(proc).st_uid
    except OSError:
        return None


def test_a_courses_web_app_answers_its_owner_and_nobody_else(apps_hub):
    hub, port = apps_hub
    alice, bob = hub.create_accounts("app", 2)
    tokens = {name: hub.token_for(name) for name in (alice, bob)}
    for name in (alice, bob):
        hub.spawn(name, tokens[name], server="apps")
    app = hub.server_url(alice, "apps") + "hello/"
    mine = requests.get(app, headers={"Authorization": f"token {tokens[alice]}"}, timeout=120)
    assert mine.status_code == 200, (mine.status_code, mine.text[:300])
    assert mine.text.startswith("hello from ")
    assert hub.prefix in mine.text  # the app runs as Alice's sandboxed account
    # Through the hub: Bob's token does not open Alice's server, nor anonymous requests.
    theirs = requests.get(app, headers={"Authorization": f"token {tokens[bob]}"}, timeout=60)
    assert theirs.status_code == 403, theirs.status_code
    anonymous = requests.get(app, allow_redirects=False, timeout=60)
    assert anonymous.status_code in (302, 403) and "hello from" not in anonymous.text
    # Straight from Bob's kernel to the app's port, at loopback and at Alice's server's own address.
    alice_host = hub.api().json("GET", f"users/{alice}")["servers"]["apps"]["url"]
    targets = ["127.0.0.1", *server_addresses(hub, alice)]
    probe = (
        "import socket\n"
        f"for host in {targets!r}:\n"
        "    try:\n"
        f"        s = socket.create_connection((host, {port}), timeout=3)\n"
        "        s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
        "        print(host, b''.join(iter(lambda: s.recv(4096), b'')))\n"
        "    except OSError as exc:\n"
        "        print(host, 'refused', type(exc).__name__)\n"
    )
    out = hub.run(bob, tokens[bob], probe, server="apps")
    assert "hello from" not in out, (alice_host, out)
    assert out.count("refused") == len(targets), out
