"""What a remote git repository's ref points to (`git ls-remote`): course updates and Binder launches."""

from __future__ import annotations

import asyncio

LS_REMOTE_TIMEOUT = 20


async def remote_commit(
    repo: str, ref: str, git_options: tuple[str, ...] = (), timeout: float = LS_REMOTE_TIMEOUT
) -> str | None:
    """The commit `ref` names in `repo` by `git ls-remote`, or None when git cannot say in time."""
    if ref.startswith("-"):
        return None
    proc = await asyncio.create_subprocess_exec(
        "git",
        *git_options,
        "ls-remote",
        "--",
        repo,
        ref,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin"},
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return commit_for_ref(out.decode(errors="replace"), ref)


def commit_for_ref(listing: str, ref: str) -> str | None:
    """The commit of `ref` in `git ls-remote` output: an annotated tag's peeled commit first (pure)."""
    found: dict[str, str] = {}
    for line in listing.splitlines():
        sha, _, name = line.partition("\t")
        found.setdefault(name.strip(), sha.strip())
    for name in (f"refs/tags/{ref}^{{}}", ref, f"refs/heads/{ref}", f"refs/tags/{ref}"):
        if name in found:
            return found[name]
    return None
