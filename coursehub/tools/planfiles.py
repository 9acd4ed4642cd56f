"""The planner's inputs from files: the price table and the latest benchmark's measurements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from coursehub.errors import ConfigError
from coursehub.settings.base import parse_size
from coursehub.tools.plan import MIB, Machine, Overhead, PriceTable

PRICES = Path(__file__).resolve().parent / "prices.yaml"
BENCH_RESULTS = Path("bench-results") / "results.json"


def load_prices(path: Path = PRICES) -> PriceTable:
    """The price table: machines (name, vcpus, memory, hourly) and the cluster fee."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        machines = tuple(
            Machine(str(m["name"]), float(m["vcpus"]), parse_size(m["memory"]), float(m["hourly"]))
            for m in data["machines"]
        )
        return PriceTable(
            machines=machines,
            currency=str(data.get("currency", "USD")),
            as_of=str(data.get("as_of", "")),
            note=str(data.get("note", "")),
            cluster_hourly=float(data.get("kubernetes_cluster_hourly", 0.0)),
            hours_per_month=float(data.get("hours_per_month", 730)),
        )
    except OSError as exc:
        raise ConfigError(f"cannot read the price table {path}: {exc.strerror}") from exc
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"the price table {path} is not valid ({exc}): each machine needs name, vcpus, "
            "memory (e.g. 64G) and hourly"
        ) from exc


def overhead_from_bench(path: Path = BENCH_RESULTS) -> Overhead | None:
    """Per-user and hub overhead measured by `coursehub bench` (coursehub's own run), if any."""
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return overhead_from_results(results, str(path))


def overhead_from_results(results: dict[str, Any], source: str) -> Overhead | None:
    """The Overhead of a results.json's coursehub system (else the first system with memory)."""
    systems = results.get("systems", {})
    ordered = [systems[name] for name in ("coursehub", *systems) if name in systems]
    for entry in ordered:
        memory = entry.get("memory") or {}
        per_user = (memory.get("pss_per_user_mib") or {}).get("p50")
        hub = memory.get("hub_plus_proxy_mib")
        cpu = (memory.get("cpu_s_per_spawn") or {}).get("p50")
        if per_user and hub:
            default = Overhead()
            return Overhead(
                server_memory=int(per_user * MIB),
                hub_memory=int(hub * MIB),
                cpu_seconds_per_start=float(cpu) if cpu else default.cpu_seconds_per_start,
                source=f"{source} ({entry.get('label', 'benchmark')}, {results.get('started_at', '?')})",
            )
    return None
