"""Hostile course repositories on a real hub: nothing they ship runs as root or unsandboxed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import hub_root

pytestmark = pytest.mark.hub


@pytest.fixture(scope="module")
def private_uv_cache():
    """A uv cache of this module's own: whatever a hostile build does to it poisons nothing else."""
    root = hub_root()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UV_CACHE_DIR", str(root / "uv-cache"))
        yield root / "uv-cache"


@pytest.fixture(scope="module")
def exec_hub(private_uv_cache, make_hub_module):
    """A hub that starts servers as fresh processes (the path that runs bwrap)."""
    return make_hub_module(sandbox={"spawn_mode": "exec"})


def course_repo(root: Path, name: str, files: dict[str, str]) -> Path:
    """A course folder with `files` (relative path -> text); postBuild is made executable."""
    repo = root / name
    for rel, text in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if (repo / "postBuild").exists():
        os.chmod(repo / "postBuild", 0o755)
    return repo


def test_a_course_shipping_bin_bwrap_changes_nothing(exec_hub):
    hub = exec_hub
    marker = hub.root / "fake-bwrap-ran"
    # The hostile course puts its own `bwrap` first on the servers' PATH: it would run instead
    # of bubblewrap, and start the server with no sandbox at all.
    fake = f"#!/bin/sh\ntouch {marker}\nexit 1\n"
    post_build = (
        "#!/bin/bash\nset -e\nprefix=$(python -c 'import sys; print(sys.prefix)')\n"
        f"cat > \"$prefix/bin/bwrap\" <<'EOF'\n{fake}EOF\nchmod 755 \"$prefix/bin/bwrap\"\n"
    )
    repo = course_repo(hub.root, "fakebwrap", {"postBuild": post_build, "notes.md": "hi\n"})
    os.chmod(hub.root, 0o777)  # the fake bwrap (run as the student) could leave its marker
    try:
        hub.cli("course", "add", str(repo), "--name", "fakebwrap", "--access", "open")
        (name,) = hub.create_accounts("fb", 1)
        token = hub.token_for(name)
        hub.spawn(name, token, server="fakebwrap")
        # Sandboxed: the server's hostname is the course's (bubblewrap's UTS namespace).
        assert hub.run(name, token, "import socket; print(socket.gethostname())", "fakebwrap").strip() == (
            "fakebwrap"
        )
        assert not marker.exists()
    finally:
        os.chmod(hub.root, 0o755)

