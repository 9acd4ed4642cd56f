"""Simulated students against any JupyterHub: the engine behind `coursehub bench`.

from coursehub.tools.loadtest import Credential, LoadConfig, run_load_test, summarize
run = run_load_test(LoadConfig("http://127.0.0.1:8000/"), [Credential("ana", "pw")])
print(summarize(run)["ttfr"])
"""

from coursehub.tools.loadtest.results import PHASES, Phase, RunResult, StudentResult
from coursehub.tools.loadtest.students import (
    ADMIT,
    STOP,
    WAIT,
    Credential,
    Gate,
    LoadConfig,
    LoadTest,
    run_load_test,
)
from coursehub.tools.loadtest.summary import (
    describe,
    errors_by_kind,
    percentile,
    phase_stats,
    summarize,
)

__all__ = [
    "ADMIT",
    "PHASES",
    "STOP",
    "WAIT",
    "Credential",
    "Gate",
    "LoadConfig",
    "LoadTest",
    "Phase",
    "RunResult",
    "StudentResult",
    "describe",
    "errors_by_kind",
    "percentile",
    "phase_stats",
    "run_load_test",
    "summarize",
]
