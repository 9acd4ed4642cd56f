"""Pure parts of the sandbox: Unix names for any hub username, and the bubblewrap command line."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from coursehub.spawner.accounts import owner_marker, unix_name
from coursehub.spawner.bwrap import HIDING_TMPFS_SIZE, SandboxSpec, bwrap_args
from coursehub.spawner.sandbox import kernel_nproc

# A host root as bwrap.host_root() reads it: /bin a symlink, and the folders the view replaces.
ROOT = (
    ("bin", "usr/bin"),
    ("dev", None),
    ("etc", None),
    ("proc", None),
    ("run", None),
    ("tmp", None),
    ("usr", None),
)

VALID = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


@pytest.mark.parametrize(
    "name",
    [
        "alice",
        "Alice",
        "ana.maria@uni.example.edu",
        "josé",
        "学生",
        "x" * 200,
        "a b/c",
        "-",
        "ROOT",
        "ch-alice-1",
    ],
)
def test_unix_names_are_valid_for_any_hub_name(name):
    assert VALID.match(unix_name(name)), unix_name(name)


def test_clean_names_stay_readable_and_unclean_ones_get_a_digest():
    assert unix_name("alice") == "ch-alice"
    assert unix_name("Ana@x.org").startswith("ch-ana-x-org-")


def test_names_that_collide_after_sanitising_stay_apart():
    names = ["ana@x", "ana-x", "Ana-X", "ana x", "ana.x", "x" * 200, "x" * 201]
    assert len({unix_name(n) for n in names}) == len(names)


def test_owner_marker_binds_account_to_one_hub_user():
    assert owner_marker("ana@x") != owner_marker("ana-x")


def test_bwrap_hides_other_homes_and_state_but_shows_own_home_and_env():
    spec = SandboxSpec(
        home=Path("/home/ch/ch-a"),
        home_root=Path("/home/ch"),
        environment=Path("/state/envs/e1"),
        hidden=(Path("/state"),),
        course_src=Path("/state/courses/demo"),
    )
    args = bwrap_args(spec, ["jupyterhub-singleuser"], root=ROOT)
    joined = " ".join(args)
    # The host's root one top-level entry at a time (symlinks as symlinks), read-only once built.
    assert args[:9] == [
        "bwrap",
        "--symlink",
        "usr/bin",
        "/bin",
        "--ro-bind",
        "/etc",
        "/etc",
        "--ro-bind",
        "/usr",
    ]
    last_mount = max(i for i, a in enumerate(args) if a in ("--bind", "--ro-bind", "--tmpfs", "--remount-ro"))
    assert args[last_mount : last_mount + 2] == ["--remount-ro", "/"]
    # tmpfs over the homes' parent and the state dir come before the binds that show through.
    assert joined.index("--tmpfs /home/ch") < joined.index("--bind /home/ch/ch-a /home/ch/ch-a")
    assert joined.index("--tmpfs /state") < joined.index("--ro-bind /state/envs/e1")
    for flag in ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--new-session"):
        assert flag in args
    assert "--die-with-parent" not in args  # servers must outlive a hub crash
    assert "--tmpfs /tmp" in joined
    assert args[-1] == "jupyterhub-singleuser"


def test_kernels_leave_headroom_for_the_server():
    assert kernel_nproc(128) == 96
    assert kernel_nproc(512) == 384
    assert kernel_nproc(16) >= 8


def test_start_queue_runs_a_few_at_once_and_keeps_order():
    import asyncio

    from coursehub.spawner.sandbox import StartQueue

    queue, running, peak, order = StartQueue(), [], [0], []

    async def start(name):
        async with queue.slot(name, 2):
            running.append(name)
            peak[0] = max(peak[0], len(running))
            order.append(name)
            await asyncio.sleep(0.01)
            running.remove(name)

    async def burst():
        tasks = [asyncio.create_task(start(i)) for i in range(6)]
        await asyncio.sleep(0)
        positions = list(queue.waiting)
        await asyncio.gather(*tasks)
        return positions

    waiting_early = asyncio.run(burst())
    assert peak[0] == 2
    assert order == list(range(6))  # first come, first served
    assert waiting_early == [2, 3, 4, 5]  # the rest wait, and know their place
    assert queue.waiting == []


def mounts_in_bwrap_args(args: list[str]) -> list[tuple]:
    """bubblewrap's mount options read back as (kind, source, target, readonly, tmpfs size); the
    root's top-level binds and symlinks, and its final remount, read as one read-only bind of /."""
    root = [f"/{name}" for name, _ in ROOT]
    mounts, size, i = [("bind", "/", "/", True, 0)], 0, 1
    while args[i] in ("--ro-bind", "--symlink") and args[i + 2] in root:
        i += 3
    while args[i] != "--":
        option = args[i]
        if option == "--remount-ro" and args[i + 1] == "/":
            i += 2
        elif option == "--size":
            size, i = int(args[i + 1]), i + 2
        elif option in ("--ro-bind", "--bind"):
            mounts.append(("bind", args[i + 1], args[i + 2], option == "--ro-bind", 0))
            i += 3
        elif option in ("--proc", "--dev", "--remount-ro"):
            mounts.append((option[2:], "", args[i + 1], True, 0))
            i += 2
        elif option == "--tmpfs":
            mounts.append(("tmpfs", "", args[i + 1], True, size))
            size, i = 0, i + 2
        elif option in ("--chdir", "--hostname"):
            i += 2
        else:
            i += 1  # --unshare-*, --new-session: not about the filesystem
    return mounts


def mounts_in_fork_request(request: dict) -> list[tuple]:
    """The fork server's request read as the same tuples (its root is the host's, read-only)."""
    mounts = []
    for m in request["mounts"]:
        if m["kind"] == "root":
            mounts.append(("bind", "/", "/", True, 0))
        elif m["kind"] in ("scratch", "hide"):
            mounts.append(("tmpfs", "", m["target"], True, m["size"]))
        else:
            mounts.append((m["kind"], m["source"], m["target"], m["readonly"], 0))
    return mounts


def test_both_spawn_modes_build_the_same_view_of_the_filesystem():
    from coursehub.spawner.forkclient import fork_request

    spec = SandboxSpec(
        home=Path("/home/ch/ch-a"),
        home_root=Path("/home/ch"),
        environment=Path("/state/envs/e1"),
        course_src=Path("/state/courses/demo"),
        sync_script=Path("/opt/sync.py"),
        shared_data=Path("/data/bio"),
        scratch=Path("/scratch/bio"),
        hidden=(Path("/state"),),
        readonly=(Path("/opt/tools"),),
        tmp_size=256 << 20,
    )
    exec_mode = mounts_in_bwrap_args(bwrap_args(spec, ["srv"], root=ROOT))
    fork_mode = mounts_in_fork_request(fork_request(spec, ["srv"], {}, 1000, 1000, [], Path("/log")))
    assert exec_mode == fork_mode
    # Not the host's /dev (disks, kmsg, kvm) in either mode.
    assert ("dev", "", "/dev", True, 0) in fork_mode
    assert ("bind", "/scratch/bio", "/run/coursehub/scratch", False, 0) in fork_mode


def test_the_server_cgroup_is_all_of_sys_fs_cgroup_in_both_spawn_modes():
    from coursehub.spawner.cgroups import Cgroup
    from coursehub.spawner.forkclient import fork_request

    root = Path("/sys/fs/cgroup")
    v1 = Cgroup(1, tuple(root / c / "coursehub" / "ch-a--default" for c in ("memory", "cpu", "pids")))
    assert v1.view_binds() == [
        (root / "memory/coursehub/ch-a--default", root / "memory"),
        (root / "cpu/coursehub/ch-a--default", root / "cpu"),
        (root / "pids/coursehub/ch-a--default", root / "pids"),
    ]
    v2 = Cgroup(2, (root / "coursehub" / "ch-a--default",))
    assert v2.view_binds() == [(root / "coursehub/ch-a--default", root)]
    spec = SandboxSpec(
        home=Path("/home/ch/ch-a"),
        home_root=Path("/home/ch"),
        environment=Path("/state/envs/e1"),
        cgroup_binds=tuple(v1.view_binds()),
    )
    args = bwrap_args(spec, ["jupyterhub-singleuser"], root=ROOT)
    joined = " ".join(args)
    assert "--unshare-cgroup" in args
    # The host's hierarchy is hidden first; only the server's own folders show through, read-only.
    assert joined.index("--tmpfs /sys/fs/cgroup") < joined.index(
        "--ro-bind /sys/fs/cgroup/memory/coursehub/ch-a--default /sys/fs/cgroup/memory"
    )
    request = fork_request(spec, ["jupyterhub-singleuser"], {}, 1000, 1000, [], Path("/logs/a.log"))
    assert request["cgroup_namespace"] is True
    fork_mode = mounts_in_fork_request(request)
    assert fork_mode == mounts_in_bwrap_args(args)
    assert ("tmpfs", "", "/sys/fs/cgroup", True, HIDING_TMPFS_SIZE) in fork_mode
    assert (
        "bind",
        "/sys/fs/cgroup/pids/coursehub/ch-a--default",
        "/sys/fs/cgroup/pids",
        True,
        0,
    ) in fork_mode


def test_the_log_writer_keeps_the_newest_output_within_its_cap(tmp_path):
    import os
    import threading

    from coursehub.payloads.forkserver import copy_capped

    out, into = os.pipe()
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    cap = 256 * 1024
    writer = threading.Thread(target=copy_capped, args=(out, folder, "server.log", cap))
    writer.start()
    for i in range(2000):  # ~2 MB: eight times the cap
        os.write(into, f"line {i:05d} ".encode() + b"x" * 1000 + b"\n")
    os.write(into, b"the last line\n")
    os.close(into)
    writer.join(30)
    os.close(out)
    os.close(folder)
    sizes = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    assert set(sizes) == {"server.log", "server.log.1"}
    assert sum(sizes.values()) <= cap
    assert (tmp_path / "server.log").read_bytes().endswith(b"the last line\n")
    assert b"line 01999" in (tmp_path / "server.log").read_bytes() + (tmp_path / "server.log.1").read_bytes()


def test_a_budget_pauses_a_reader_past_its_burst_and_refills_at_its_rate():
    from coursehub.payloads.forkserver import Budget

    budget = Budget(rate=100, burst=1000, now=0.0)
    assert budget.wait(0.0) == 0
    budget.tokens -= 1500  # one read may take more than is left
    assert budget.wait(0.0) == pytest.approx(5.01)
    assert budget.wait(4.0) == pytest.approx(1.01)
    assert budget.wait(5.1) == 0
    assert budget.wait(1000.0) == 0 and budget.tokens == 1000  # never more than the burst


def test_a_kernel_that_joins_a_full_cgroup_is_refused(tmp_path):
    """Joining a cgroup ignores its pids limit (a fork would not): the kernel's child checks it itself."""
    from coursehub.payloads.forkserver import pids_limit_reached

    memory, pids = tmp_path / "memory", tmp_path / "pids"
    for folder in (memory, pids):
        folder.mkdir()
        (folder / "cgroup.procs").write_text("")
    procs = [str(memory / "cgroup.procs"), str(pids / "cgroup.procs")]  # cgroup v1: one per controller
    (pids / "pids.max").write_text("128\n")
    (pids / "pids.current").write_text("128\n")  # the new process included: at the limit, fine
    assert pids_limit_reached(procs) == ""
    (pids / "pids.current").write_text("129\n")
    assert "process limit (128)" in pids_limit_reached(procs)
    (pids / "pids.max").write_text("max\n")
    assert pids_limit_reached(procs) == ""


def test_the_log_collector_copies_each_servers_output_and_ends_after_them(tmp_path):
    """One collector for many servers: each pipe into its own log; a bad handover changes nothing."""
    import json
    import os
    import socket
    import subprocess
    import sys

    from coursehub.spawner.forkclient import SCRIPT

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    collector = subprocess.Popen(
        [sys.executable, "-I", "-S", str(SCRIPT), "--collect", str(theirs.fileno()), "test"],
        pass_fds=[theirs.fileno()],
    )
    theirs.close()
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    writers = {}
    for name in ("alice--default.log", "../escaped.log", "bob--default.log"):
        out, into = os.pipe()
        socket.send_fds(ours, [json.dumps({"name": name, "cap": 64 * 1024}).encode()], [out, folder])
        os.close(out)
        writers[name] = into
    os.close(folder)
    for i in range(200):  # 200 kB each: three times the cap
        for name in ("alice--default.log", "bob--default.log"):
            os.write(writers[name], f"{name} line {i:04d} ".encode() + b"x" * 1000 + b"\n")
    for into in writers.values():
        os.close(into)
    ours.close()  # the fork server is gone: the collector ends once the pipes have
    assert collector.wait(timeout=60) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "alice--default.log",
        "alice--default.log.1",
        "bob--default.log",
        "bob--default.log.1",
    ]
    assert not (tmp_path.parent / "escaped.log").exists()
    for name, other in (("alice--default.log", b"bob"), ("bob--default.log", b"alice")):
        newest = (tmp_path / name).read_bytes()
        assert newest.splitlines()[-1].startswith(f"{name} line 0199 ".encode())
        assert other not in newest + (tmp_path / f"{name}.1").read_bytes()
        assert (tmp_path / name).stat().st_size + (tmp_path / f"{name}.1").stat().st_size <= 64 * 1024


def test_the_fork_server_finds_its_environments_packages_without_the_site_module(tmp_path):
    """Run with -S -E (so no .pth of a course runs as root), it must still pre-import the stack."""
    import subprocess
    import sys

    from coursehub.spawner.forkclient import SCRIPT

    probe = (
        "import runpy, sys; ns = runpy.run_path(sys.argv[1]); ns['add_environment_path']();"
        "import xdist; print(sys.prefix)"  # xdist: installed in this venv only, not in the base Python
    )
    result = subprocess.run(
        [sys.executable, "-S", "-E", "-c", probe, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == sys.prefix


def test_oom_notice_reads_the_cgroup_and_says_the_limit():
    from coursehub.payloads import oomnotice

    assert oomnotice.oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n") == 3  # v1
    assert oomnotice.oom_kill_count("low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\n") == 2  # v2
    assert oomnotice.oom_kill_count("") == 0
    assert [oomnotice.size_text(n) for n in (2 << 30, 3 << 29, 256 << 20, 512)] == [
        "2 GiB",
        "1.5 GiB",
        "256 MiB",
        "512 bytes",
    ]
    text = oomnotice.notice(2 << 30, "bio101")
    assert "ran out of memory" in text and "may use 2 GiB, the limit of the course bio101" in text
    assert "the limit of your server" in oomnotice.notice(2 << 30, "")
    assert "reached its memory limit" in oomnotice.notice(None, "")


def test_the_root_binds_no_folder_the_view_replaces_above_all_not_run():
    """/run holds network namespaces that come and go: binding it (recursively, as --ro-bind / / did)
    failed a spawn or a build when one went between bwrap's bind and its remount (run 48)."""
    from coursehub.spawner.bwrap import host_root
    from coursehub.spawner.view import ROOT_REPLACED, root_bind_args

    args = root_bind_args(ROOT)
    assert args == ["--symlink", "usr/bin", "/bin", "--ro-bind", "/etc", "/etc", "--ro-bind", "/usr", "/usr"]
    assert ROOT_REPLACED == {"proc", "dev", "tmp", "run"}
    real = dict(host_root())
    assert {"usr", "etc", "run", "tmp"} <= real.keys() and real["etc"] is None
    assert all(link == os.readlink(f"/{name}") for name, link in real.items() if link is not None)
    built = root_bind_args(host_root())
    assert "/" not in built and not any(a.startswith(("/run", "/proc", "/tmp", "/dev")) for a in built)
