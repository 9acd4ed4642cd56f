"""Culling students understand: JupyterLab warns before the idle culler stops a server, and asking never
counts as activity (a real hub with a one-minute culler, Chromium)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest import run_first_cell, wait_for

pytestmark = pytest.mark.hub

# The shortest culler the settings allow, a warning for most of it, and the hub reading the proxy's
# activity every 2 s (JupyterHub's default is 5 min): were the proxy's record of requests still the
# server's activity, the polling below would keep moving the server's last activity.
CULLER = {"timeout": 60, "every": 10, "warn_before": 45}
FAST_PROXY_READS = {"JupyterHub": {"last_activity_interval": 2}}
BANNER = "#coursehub-cull-warning"


@pytest.fixture(scope="module")
def cull_hub(make_hub_module):
    return make_hub_module(culler=CULLER, jupyterhub=FAST_PROXY_READS)


def running(hub, name: str) -> bool:
    """Whether the hub says the user's default server runs."""
    return running_named(hub, name, "")


@pytest.mark.browser
@pytest.mark.usefixtures("polled_server")  # first: its culler wait runs beside this one
def test_jupyterlab_warns_before_the_culler_stops_an_idle_server(cull_hub, browser, output_dir):
    hub = cull_hub
    (name,) = hub.create_accounts("warn", 1)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(120_000)
    page.goto(hub.url + "hub/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", hub.passwords[name])
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(hub.server_url(name, "demo") + "lab**", timeout=180_000)
    page.goto(hub.server_url(name, "demo") + "lab/tree/demo/welcome.ipynb")
    run_first_cell(page, output_dir, "cull-warning-cell.png", code="print(6 * 7)", expect="42")
    page.keyboard.press("Control+s")
    banner = page.locator(BANNER)

    # Left alone with JupyterLab open (and polling): the warning comes.
    banner.wait_for(timeout=180_000)
    text = banner.inner_text()
    page.screenshot(path=str(output_dir / "cull-warning-banner.png"))
    assert "will be stopped for inactivity" in text
    assert "saved files are kept" in text
    assert "running a cell, saving, typing in a notebook" in text

    # The student comes back: the warning goes, as the culler's clock starts again.
    page.locator(".jp-Notebook").first.click()
    banner.wait_for(state="detached", timeout=60_000)

    # Left alone again: warned again, then stopped by the culler, and JupyterLab says so.
    banner.wait_for(timeout=180_000)
    assert "will be stopped for inactivity" in banner.inner_text()
    wait_for(lambda: not running_named(hub, name, "demo"), timeout=300, interval=1, what="the culler")
    page.wait_for_function(
        "s => (document.querySelector(s) || {}).innerText?.includes('was stopped for inactivity')",
        arg=BANNER,
        timeout=120_000,
    )
    page.screenshot(path=str(output_dir / "cull-warning-stopped.png"))
    page.close()


@pytest.fixture(scope="module")
def polled_server(cull_hub):
    """A server polled every second, in a thread from the module's start, until the culler stops it.

    The culler's minute runs beside the browser test's (which asks for this fixture first), not after
    it: the two waits overlapped take the module ~80 s less.
    """
    hub = cull_hub
    (name,) = hub.create_accounts("poll", 1)
    token = hub.token_for(name)
    url = hub.spawn(name, token)
    auth = {"Authorization": f"token {token}"}
    first = requests.get(url + "coursehub/activity", headers=auth, timeout=30)
    assert first.status_code == 200, first.text
    assert first.json()["enabled"] and first.json()["timeout"] == 60
    stop_times: set = set()

    def poll() -> bool:
        # What an open JupyterLab asks every few seconds, and the warning's own question, through the proxy.
        for path in ("coursehub/activity", "api/kernels", "api/sessions", "api/terminals", "api/contents"):
            answer = requests.get(url + path, headers=auth, timeout=30, allow_redirects=False)
            if path == "coursehub/activity" and answer.status_code == 200:
                stop_times.add(answer.json()["stop_at"])
        return not running(hub, name)

    def until_stopped() -> set:
        wait_for(poll, timeout=300, interval=1, what="the culler to stop a server polled every second")
        return stop_times

    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(until_stopped)


def test_polling_for_the_warning_never_keeps_a_server_alive(polled_server):
    # The culler stopped it (or the wait failed, raised here), and the hub's last activity of the server
    # never moved while it was polled.
    stop_times = polled_server.result()
    assert len(stop_times) == 1, stop_times


def running_named(hub, name: str, server: str) -> bool:
    """Whether the hub says the user's named server runs."""
    return bool(hub.api().json("GET", f"users/{name}")["servers"].get(server, {}).get("ready"))
