"""The Grafana dashboard queries only metrics the hub exports, and is importable as is."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import jupyterhub.metrics  # noqa: F401  (registers JupyterHub's metrics)
import pytest
from prometheus_client import REGISTRY

import coursehub.metrics  # noqa: F401  (registers coursehub's metrics)

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboards" / "coursehub.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
# Words of PromQL that look like metric names but are not.
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}
REQUIRED = {  # what issue 6 asks the dashboard to show
    "coursehub_running_servers",
    "coursehub_spawn_duration_seconds_bucket",
    "coursehub_spawn_to_first_kernel_seconds_bucket",
    "coursehub_spawn_failures_total",
    "coursehub_pending_spawns",
    "coursehub_oom_kills_total",
    "coursehub_server_memory_bytes",
    "coursehub_server_memory_limit_bytes",
    "coursehub_course_build_seconds",
    "coursehub_course_build_failed",
    "coursehub_temporary_users",
    "process_start_time_seconds",
}


def exported_names() -> set[str]:
    """Every series name the hub's registry can serve, with histogram and counter suffixes."""
    names = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or Grafana's label_values(...)) refers to."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,[^)]*\)", r"\1", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if not call and word.lower() not in KEYWORDS:
            names.add(word)
    return names


def panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and template variable."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel '{panel['title']}' {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        yield f"variable {variable['name']}", query["query"] if isinstance(query, dict) else query


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_every_query_uses_exported_metrics(dashboard):
    exported = exported_names()
    unknown = {(where, name) for where, expr in queries(dashboard) for name in metric_names(expr) - exported}
    assert not unknown, f"the dashboard queries metrics the hub does not export: {sorted(unknown)}"


def test_the_dashboard_covers_what_the_issue_asks_for(dashboard):
    used = {name for _, expr in queries(dashboard) for name in metric_names(expr)}
    assert REQUIRED <= used, f"no panel shows {sorted(REQUIRED - used)}"


def test_it_imports_as_is_with_a_prometheus_input(dashboard):
    (source,) = dashboard["__inputs"]
    assert source["name"] == "DS_PROMETHEUS" and source["pluginId"] == "prometheus"
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    assert dashboard["id"] is None  # Grafana assigns its own on import
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == DATASOURCE, panel["title"]
            assert panel["targets"] and all(t["datasource"] == DATASOURCE for t in panel["targets"])


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (course) (rate(a_bucket{job=~"$job"}[$__rate_interval]))', {"a_bucket"}),
        ("histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m])))", {"x_bucket"}),
        ("a / on (user, server) b", {"a", "b"}),
        ('label_values(m{job=~"$job"}, course)', {"m"}),
        ("changes(process_start_time_seconds[24h]) * 1000", {"process_start_time_seconds"}),
        ("topk(20, up) and bool nope_not", {"up", "nope_not"}),
    ],
)
def test_metric_names_are_read_from_promql(expr, names):
    assert metric_names(expr) == names


def test_the_checker_catches_a_misspelt_metric(dashboard):
    broken = json.loads(json.dumps(dashboard))
    broken["panels"][1]["targets"][0]["expr"] = "sum(coursehub_runing_servers)"
    found = {name for _, expr in queries(broken) for name in metric_names(expr)} - exported_names()
    assert found == {"coursehub_runing_servers"}
