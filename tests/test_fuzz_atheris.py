"""Coverage-guided fuzzing (atheris, libFuzzer) of the launch-link, username and config parsers.

Run as a test, this file starts itself as a libFuzzer target for a fixed number of runs; run
directly (`python tests/test_fuzz_atheris.py`) it fuzzes until it finds a crash.
"""

from __future__ import annotations

import importlib.util
import os
import posixpath
import re
import subprocess
import sys

import pytest

# 30,000 runs under `./run reliability` (COURSEHUB_FUZZ_EXAMPLES >= 10,000), 3,000 in the everyday suite.
RUNS = 30_000 if int(os.environ.get("COURSEHUB_FUZZ_EXAMPLES", "500")) >= 10_000 else 3_000


def test_coverage_guided_fuzzing_finds_no_crash(tmp_path):
    if importlib.util.find_spec("atheris") is None:
        pytest.fail("atheris is missing: the test extra installs it (./run setup test)")
    options = [f"-runs={RUNS}", "-max_len=512", "-seed=1", f"-artifact_prefix={tmp_path}/"]
    result = subprocess.run(
        [sys.executable, __file__, *options],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"Done {RUNS} runs" in result.stderr


def fuzz_one(data: bytes) -> None:
    """One input: a parser picked by the first byte, fed the rest; invariants as in test_fuzz.py."""
    import atheris

    from coursehub.errors import ConfigError
    from coursehub.launch.links import LinkError, parse_course_name, parse_path
    from coursehub.settings.yamlfile import parse_settings
    from coursehub.spawner.accounts import unix_name

    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, 3)
    text = fdp.ConsumeUnicodeNoSurrogates(512)
    try:
        if which == 0:
            path = parse_path(text)
            joined = posixpath.normpath(posixpath.join("/course", path))
            assert joined == "/course" or joined.startswith("/course/"), (text, path)
        elif which == 1:
            name = parse_course_name(text)
            assert re.fullmatch(r"[a-z][a-z0-9-]{0,29}", name), name
        elif which == 2:
            name = unix_name(text)
            assert re.fullmatch(r"[a-z][a-z0-9-]{0,31}", name), name
        else:
            parse_settings(text)
    except (LinkError, ConfigError):
        pass


def main() -> None:
    import atheris

    with atheris.instrument_imports():
        import coursehub.launch.links  # noqa: F401
        import coursehub.settings.yamlfile  # noqa: F401
        import coursehub.spawner.accounts  # noqa: F401
    atheris.Setup(sys.argv, fuzz_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
