"""Metrics and the admins' status page on a real hub: a spawn, a kernel, an OOM kill, failures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from conftest import wait_for
from prometheus_client.parser import text_string_to_metric_families

from coursehub.clients.hubapi import HubAPI
from coursehub.clients.kernel import KernelSession
from coursehub.settings import Settings

pytestmark = [pytest.mark.hub, pytest.mark.browser]
MEMORY_BOMB = "blocks = []\nwhile True:\n    blocks.append(bytearray(32 * 2**20))"
# Our own cgroup parent: `coursehub down` of another hub on this machine sweeps every group under
# the default parent, which would stop this module's servers midway.
OWN_CGROUPS = {"SandboxSpawner": {"cgroup_parent": "coursehub-test-ops"}}


@pytest.fixture(scope="module", autouse=True)
def remove_own_cgroup_parent():
    """The spawner creates the parent group; leave no empty one behind."""
    yield
    for parent in Path("/sys/fs/cgroup").glob("*/coursehub-test-ops"):
        parent.rmdir()


def scrape(hub) -> dict[tuple[str, tuple], float]:
    """Every sample of /hub/metrics: (name, sorted labels) -> value."""
    response = requests.get(
        hub.url + "hub/metrics", timeout=30, headers={"Authorization": f"token {hub.api().token}"}
    )
    response.raise_for_status()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(hub, name: str, **labels: str) -> float | None:
    """One sample's value, or None when the hub does not export it (yet)."""
    return scrape(hub).get((name, tuple(sorted(labels.items()))))


@pytest.fixture(scope="module")
def activity(make_hub_module):
    """A hub after one spawn, one kernel, one OOM kill, one failed spawn and one failed build."""
    hub = make_hub_module(jupyterhub=OWN_CGROUPS)
    (name,) = hub.create_accounts("ops", 1)
    token = hub.token_for(name)
    assert value(hub, "coursehub_running_servers", course="demo") in (None, 0.0)
    hub.spawn(name, token)
    with KernelSession(hub.server_url(name), token) as kernel:
        assert kernel.execute("print(1 + 1)").stdout.strip() == "2"
        wait_for(
            lambda: value(hub, "coursehub_spawn_to_first_kernel_seconds_count", course="demo"),
            timeout=60,
            what="the first kernel to be seen",
        )
    with KernelSession(hub.server_url(name), token) as kernel:
        assert kernel.execute(MEMORY_BOMB).status == "died"
    # A spawn that fails: the student is not on the roster of a course.
    folder = hub.root / "roster-course"
    folder.mkdir()
    (folder / "README.md").write_text("for someone else\n")
    hub.cli("course", "add", str(folder), "--name", "roster", "--access", "someone-else")
    response = HubAPI(hub.url, token).request("POST", f"users/{name}/servers/roster")
    assert response.status_code >= 400, response.text
    # A build that fails: the course asks for a Python that is not installed.
    broken = hub.root / "broken-course"
    broken.mkdir()
    (broken / "runtime.txt").write_text("python-3.1\n")
    result = hub.cli("course", "add", str(broken), "--name", "broken", check=False)
    assert result.returncode != 0 and "3.1" in result.stdout + result.stderr
    return hub, name, token


def test_metrics_follow_a_spawn_a_kernel_an_oom_kill_and_failures(activity):
    hub, name, _ = activity
    labels = {"user": name, "server": "default", "course": "demo"}
    wait_for(lambda: value(hub, "coursehub_running_servers", course="demo") == 1, 30, what="running gauge")
    wait_for(lambda: value(hub, "coursehub_oom_kills_total", course="demo"), 60, what="the OOM kill")
    wait_for(
        lambda: value(hub, "coursehub_course_build_failed", course="broken") == 1, 30, what="build failure"
    )
    wait_for(
        lambda: value(hub, "coursehub_spawn_failures_total", course="roster", reason="not-enrolled"),
        30,
        what="the failed spawn",
    )
    samples = scrape(hub)
    assert samples[("coursehub_spawn_duration_seconds_count", (("course", "demo"),))] == 1
    assert samples[("coursehub_course_users", (("course", "demo"),))] == 1
    assert samples[("coursehub_pending_spawns", (("course", "demo"),))] == 0
    assert samples[("coursehub_concurrent_spawn_limit", ())] == Settings().hub.concurrent_spawn_limit
    assert samples[("coursehub_temporary_users", ())] == 0
    assert samples[("coursehub_server_memory_bytes", tuple(sorted(labels.items())))] > 10 * 2**20
    assert samples[("coursehub_server_memory_limit_bytes", tuple(sorted(labels.items())))] == 384 * 2**20
    assert samples[("coursehub_course_build_seconds", (("course", "demo"),))] >= 0
    assert samples[("coursehub_course_built_timestamp_seconds", (("course", "demo"),))] > 1.7e9
    assert samples[("coursehub_course_build_failed", (("course", "demo"),))] == 0
    # The histogram has the buckets of the issue, up to 600 s.
    buckets = {dict(k[1])["le"] for k in samples if k[0] == "coursehub_spawn_duration_seconds_bucket"}
    assert {"2.0", "5.0", "600.0", "+Inf"} <= buckets


def test_status_page_is_for_admins_only(activity):
    hub, name, _ = activity
    session = hub.login(name)
    assert session.get(hub.url + "hub/coursehub/status", timeout=30).status_code == 403
    assert session.get(hub.url + "hub/coursehub/status.json", timeout=30).status_code == 403
    anonymous = requests.get(hub.url + "hub/coursehub/status", timeout=30, allow_redirects=False)
    assert anonymous.status_code == 302 and "/hub/login" in anonymous.headers["Location"]


def test_status_page_shows_the_activity(activity, browser, output_dir):
    hub, name, _ = activity
    admin_password = re.search(r"admin: (\S+)", hub.cli("accounts", "reset", "admin").stdout)
    assert admin_password is not None
    hub.passwords["admin"] = admin_password.group(1)
    session = hub.login("admin")
    report = wait_for(
        lambda: (
            (r := session.get(hub.url + "hub/coursehub/status.json", timeout=30).json())["recent"]
            and any(e["kind"] == "oom" for e in r["recent"])
            # The monitor reads the catalog every few ticks: the failed build may come a sample later.
            and any(c["course"] == "broken" for c in r["courses"])
            and r
        ),
        timeout=60,
        what="the OOM kill and the failed build on the status report",
    )
    assert report["totals"]["servers_running"] == 1 and report["totals"]["spawns_last_hour"] == 1
    assert {e["kind"] for e in report["recent"]} == {"oom", "failure"}
    (demo,) = [c for c in report["courses"] if c["course"] == "demo"]
    assert demo["running"] == 1 and demo["spawns"] == 1 and demo["spawn_p50"] > 0 and demo["oom_kills"] >= 1
    (broken,) = [c for c in report["courses"] if c["course"] == "broken"]
    assert "3.1" in broken["build_error"]
    assert [m["user"] for m in report["memory"]] == [name]

    context = browser.new_context(viewport={"width": 1280, "height": 1600})
    context.add_cookies([{"name": c.name, "value": c.value or "", "url": hub.url} for c in session.cookies])
    page = context.new_page()
    page.goto(hub.url + "hub/coursehub/status")
    page.wait_for_selector("#coursehub-status")
    assert page.inner_text("#total-running") == "1"
    assert page.inner_text("#total-spawns") == "1"
    assert page.locator("#courses tr[data-course=demo] td").nth(4).inner_text() == "1"
    assert "last build failed" in page.inner_text("#courses tr[data-course=broken]")
    assert page.locator("#recent tr[data-kind=oom]").count() >= 1
    assert "not-enrolled" in page.inner_text("#recent")
    assert name in page.inner_text("#memory")
    assert page.locator("#chart-spawns svg circle").count() == 1
    assert page.locator("#chart-memory svg rect").count() >= 2
    page.screenshot(path=str(output_dir / "ops-status-page.png"), full_page=True)
    context.close()
