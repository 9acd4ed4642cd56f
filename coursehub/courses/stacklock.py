"""The server stack's lock: every distribution of the stack environment, pinned by version and hash.

The root fork server imports this environment, so nothing in it may come from whatever the index
serves that day: uv installs it with --require-hashes from `stack-lock.txt`, which is compiled from
SERVER_STACK by `./run lock` (environments.refresh_lock) and committed.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import EnvironmentBuildError

LOCK = Path(__file__).with_name("stack-lock.txt")
OVERRIDES = Path(__file__).with_name("stack-overrides.txt")  # what the stack leaves out, and why
# The oldest Python the stack supports (ipykernel 7 needs 3.11); the lock holds every platform's hashes.
LOCK_PYTHON = "3.11"
HEADER = "# The server stack, pinned by hash: written by `./run lock` from SERVER_STACK; do not edit.\n"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def lock_pins(text: str) -> dict[str, str]:
    """name -> version of every pinned line of a lock (pure; names normalised as PEP 503 says)."""
    pins = {}
    for line in text.splitlines():
        match = _PIN.match(line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins


def missing_from_lock(text: str, stack: tuple[str, ...]) -> list[str]:
    """The stack's `name==version` pins the lock does not hold at that version (pure)."""
    pins = lock_pins(text)
    return [pin for pin in stack if lock_pins(pin).items() - pins.items()]


def lock_text(stack: tuple[str, ...]) -> str:
    """The committed lock, refused when it was compiled for other versions than `stack` pins."""
    text = LOCK.read_text()
    stale = missing_from_lock(text, stack)
    if stale:
        raise EnvironmentBuildError(
            f"{LOCK} does not pin {', '.join(stale)}: refresh it with `./run lock` "
            "(a JupyterHub other than coursehub's pinned one changes the stack)"
        )
    return text


def compile_command(uv: str, requirements: Path, output: Path) -> list[str]:
    """uv's command that writes the lock for `requirements` (pure).

    uv keeps the versions an existing `output` pins, so a refresh changes only what it must.
    """
    return [
        uv, "pip", "compile", "--quiet", "--universal", "--generate-hashes",
        "--python-version", LOCK_PYTHON, "--no-header", "--override", str(OVERRIDES),
        str(requirements), "-o", str(output),
    ]  # fmt: skip
