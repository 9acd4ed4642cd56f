"""Prometheus metrics coursehub adds beside JupyterHub's own (served at /hub/metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

OOM_KILLS = Counter(
    "coursehub_oom_kills", "Processes killed by the kernel's OOM killer in user servers", ["course"]
)
SERVER_MEMORY = Gauge(
    "coursehub_server_memory_bytes", "Memory used by a user server's cgroup", ["user", "course"]
)
