"""The tests' Chromium does not lose page loads when this host's addresses change (browsernet.py).

Chromium ends every HTTP/2 session (net::ERR_NETWORK_CHANGED) when an address of its network
namespace comes or goes; the HTTPS tests load JupyterLab over HTTP/2 through Caddy while the
suite's other hubs come and go. Here Caddy serves a page over HTTP/2 whose response is held back
while the host's addresses change, as a hub's `up` and `down` change them.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from conftest import free_port, wait_for

CHANGED = "127.31.41.59/32"


CHANGING = threading.Lock()


def change_host_addresses() -> None:
    """What a hub's `up` and `down` do to the host: an address comes on `lo`, and goes."""
    with CHANGING:
        subprocess.run(["ip", "addr", "add", CHANGED, "dev", "lo", "label", "lo:chbtest"], check=True)
        try:
            time.sleep(1)
        finally:
            subprocess.run(["ip", "addr", "del", CHANGED, "dev", "lo"], check=True)
        time.sleep(1)


class SlowPage(BaseHTTPRequestHandler):
    """A page that answers after the host's addresses changed."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self.path.startswith("/page"):
            self.send_error(404)  # the favicon
            return
        change_host_addresses()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(b"<html><body><p id=whole>the whole page</p></body></html>")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http2_page(tmp_path):
    """https://page.localhost:<port>/ served by Caddy (HTTP/2, its internal CA) from SlowPage."""
    upstream = ThreadingHTTPServer(("127.0.0.1", free_port()), SlowPage)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    (tmp_path / "Caddyfile").write_text(
        "{\n admin off\n skip_install_trust\n auto_https disable_redirects\n"
        f" http_port {free_port()}\n https_port {port}\n storage file_system {tmp_path / 'data'}\n}}\n"
        f"https://page.localhost:{port} {{\n tls internal\n"
        f" reverse_proxy 127.0.0.1:{upstream.server_port}\n}}\n"
    )
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    caddy = subprocess.Popen(
        ["caddy", "run", "--adapter", "caddyfile", "--config", str(tmp_path / "Caddyfile")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "caddy.log", "w"),
    )
    try:

        def serving() -> bool:
            try:
                requests.get(f"https://127.0.0.1:{port}/", verify=False, timeout=5)
            except requests.exceptions.SSLError:
                return True  # listening: no certificate for a bare address is right
            except requests.ConnectionError:
                return False
            return True

        wait_for(serving, timeout=60, what="caddy serving https")
        yield f"https://page.localhost:{port}/"
    finally:
        caddy.terminate()
        caddy.wait(timeout=30)
        upstream.shutdown()
        upstream.server_close()


def test_an_http2_page_loads_while_the_hosts_addresses_change(browser, http2_page):
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    try:
        page.goto(http2_page + "page", timeout=60_000)
        assert page.locator("#whole").inner_text() == "the whole page"
        protocol = page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")
        assert protocol == "h2", f"the page came over {protocol}, not HTTP/2: the test tests nothing"
    finally:
        context.close()
