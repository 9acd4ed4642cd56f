"""sandbox.merge_memory: the kernel's same-page merging (KSM) for forked servers and their kernels.

Every server and kernel of an environment is forked from one fork server, so they start with the
same pages; Python's reference counts then copy most of them into each
process (about 55 MiB of private memory per user, measured). Pages that stay byte-for-byte equal
across users are what KSM merges back. The fork server marks each server and kernel
with PR_SET_MEMORY_MERGE; this module turns ksmd on and says what it costs.

Why opt-in: merging across users opens a timing side channel (a write to a merged page takes a
copy-on-write fault, so a process can tell whether another holds a page with exactly the content
it guessed), and merged pages are a Rowhammer target shared between users. See docs/security.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

KSM = Path("/sys/kernel/mm/ksm")
# ksmd's default (100 pages every 20 ms, 20 MB/s) needs minutes per GiB: users arriving at a class's
# pace would fill memory before their pages were merged. 1,000 pages per 20 ms cost ksmd about 15 %
# of one core here while 10 users' servers were being merged (measured), and little once they are
# (smart_scan skips pages that did not change).
PAGES_TO_SCAN = 1000


@dataclass(frozen=True)
class KsmState:
    """What /sys/kernel/mm/ksm says (pure data)."""

    present: bool
    run: int = 0
    pages_to_scan: int = 0


def read_state(root: Path = KSM) -> KsmState:
    """The machine's KSM settings (absent when the kernel has none)."""
    try:
        return KsmState(True, int((root / "run").read_text()), int((root / "pages_to_scan").read_text()))
    except (OSError, ValueError):
        return KsmState(False)


def full_scans(root: Path = KSM) -> int:
    """How many times ksmd has scanned all mergeable memory (0 without KSM)."""
    try:
        return int((root / "full_scans").read_text())
    except (OSError, ValueError):
        return 0


def changes(state: KsmState) -> dict[str, int]:
    """The KSM settings to write so that merging keeps up with a class (pure)."""
    wanted = {}
    if state.run != 1:
        wanted["run"] = 1  # 0: stopped; 2: unmerge everything and stop
    if state.pages_to_scan < PAGES_TO_SCAN:
        wanted["pages_to_scan"] = PAGES_TO_SCAN
    return wanted


def off_message(problem: str) -> str:
    """What `up` says once when sandbox.merge_memory cannot work here (pure)."""
    return f"Memory merging is OFF (sandbox.merge_memory is set): {problem}. Servers run unmerged."


def enable(root: Path = KSM) -> tuple[list[str], str | None]:
    """Turn ksmd on for merging: (what was changed, as lines to print; the problem, if any)."""
    state = read_state(root)
    if not state.present:
        return [], "this kernel has no KSM (CONFIG_KSM)"
    done: list[str] = []
    for name, value in changes(state).items():
        try:
            (root / name).write_text(str(value))
        except OSError as exc:
            return done, f"cannot write {root / name}: {exc.strerror}"
        done.append(f"KSM: {name} = {value} (was {getattr(state, name)})")
    return done, None
