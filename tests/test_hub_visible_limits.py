"""Limits a student can see on a real hub: memory against the course's limit, and why a kernel died."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import requests
from conftest import hub_root, run_first_cell

pytestmark = [pytest.mark.hub, pytest.mark.browser]

LIMIT = 320 * 2**20  # the course's own, below the test hubs' 384M
# Per test process: another checkout's run of this module on the machine has its own.
CGROUP_PARENT = f"coursehub-test-visible-{os.getpid()}"
OWN_CGROUPS = {"SandboxSpawner": {"cgroup_parent": CGROUP_PARENT}}
HOG = "blocks = []\nwhile True:\n    blocks.append(bytearray(16 * 2**20))"


@pytest.fixture(scope="module")
def small_hub(make_hub_module):
    """A hub with one course whose memory limit is its own."""
    repos = hub_root()
    folder = repos / "small"
    folder.mkdir()
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": ["1"]}
    kernelspec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    notebook = {"cells": [cell], "metadata": {"kernelspec": kernelspec}, "nbformat": 4, "nbformat_minor": 5}
    (folder / "hog.ipynb").write_text(json.dumps(notebook))
    course = {
        "name": "small",
        "repo": str(folder),
        "default_notebook": "hog.ipynb",
        "access": "accounts",
        "limits": {"memory": f"{LIMIT // 2**20}M"},
    }
    hub = make_hub_module(courses=[course], jupyterhub=OWN_CGROUPS)
    yield hub
    shutil.rmtree(repos, ignore_errors=True)
    hub.cli("down", check=False)
    for parent in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}"):
        parent.rmdir()


def get_from_a_new_server(hub, prefix: str, path: str) -> requests.Response:
    """A new student's server of the course, asked for `path` with the student's token."""
    (name,) = hub.create_accounts(prefix, 1)
    token = hub.token_for(name)
    url = hub.spawn(name, token, "small")
    return requests.get(url + path, headers={"Authorization": f"token {token}"}, timeout=30)


def test_the_server_reports_memory_against_the_courses_limit(small_hub):
    # jupyter-resource-usage's endpoint, which JupyterLab's status bar reads.
    metrics = get_from_a_new_server(small_hub, "mem", "api/metrics/v1")
    assert metrics.status_code == 200, metrics.text
    report = metrics.json()
    assert report["limits"]["memory"]["rss"] == LIMIT, report
    # PSS: pages a forked server shares with its kernels count once (RSS counts them per process).
    assert 0 < report["pss"] < LIMIT, report
    assert "warn" not in report["limits"]["memory"] or not report["limits"]["memory"]["warn"], report


def test_an_idle_server_does_not_scan_its_processes_every_second(small_hub):
    # jupyter-resource-usage's Prometheus gauges cost each idle server a psutil walk of its processes every
    # second (~1 ms of CPU a second, three quarters of an idle server's CPU; 20 held servers: 1.59 -> 0.38
    # CPU-s a minute). Nothing reads them (the status bar asks its API on demand, the hub watches cgroups).
    metrics = get_from_a_new_server(small_hub, "idle", "metrics")
    assert metrics.status_code == 200, metrics.text
    assert "http_request_duration_seconds" in metrics.text  # jupyter_server's own metrics are served
    assert "total_memory_usage" not in metrics.text


def test_a_kernel_killed_for_memory_says_why_in_jupyterlab(small_hub, browser, output_dir):
    (name,) = small_hub.create_accounts("oom", 1)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(120_000)
    page.goto(small_hub.url + "hub/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", small_hub.passwords[name])
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(f"**/user/{name}/small/lab**", timeout=180_000)
    page.goto(small_hub.server_url(name, "small") + "lab/tree/small/hog.ipynb")
    # The status bar shows the server's memory against the course's limit (jupyter-resource-usage).
    page.locator("text=/Mem: .* \\/ 3[23]\\d/").first.wait_for(timeout=60_000)
    text = run_first_cell(page, output_dir, "oom-notice.png", code=HOG, expect="ran out of memory")
    assert "320 MiB" in text and "the course small" in text, text
    page.close()
