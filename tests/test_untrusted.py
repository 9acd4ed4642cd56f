"""Hostile course repositories on a real hub: nothing they ship runs as root or unsandboxed."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import hub_root

pytestmark = pytest.mark.hub


@pytest.fixture(scope="module")
def private_uv_cache():
    """A uv cache of this module's own: whatever a hostile build does to it poisons nothing else."""
    from coursehub.courses.environments import (
        READY,
        ensure_environment,
        find_user_python,
        stack_spec,
        stack_store,
    )

    root = hub_root()
    # The stack environment as every hub of this machine gets it (built once per machine, or found),
    # copied, not linked, into this module's store: the module does not build it a second time (a
    # minute of CPU), and its hostile builds meet none of the machine's files.
    spec = stack_spec(str(find_user_python()))
    ensure_environment(spec, root / "seed" / "envs")
    machines = stack_store() / spec.digest
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UV_CACHE_DIR", str(root / "uv-cache"))
        # The store of stack environments too: this module's hostile builds never meet the machine's.
        mp.setenv("COURSEHUB_CACHE_DIR", str(root / "coursehub-cache"))
        ours = stack_store() / spec.digest
        ours.parent.mkdir(mode=0o700, parents=True)
        subprocess.run(["cp", "-a", "--", str(machines), str(ours)], check=True, timeout=600)
        assert (ours / READY).exists() and not ours.samefile(machines)
        shutil.rmtree(root / "seed", ignore_errors=True)
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
        f'cat > "$prefix/bin/bwrap" <<\'EOF\'\n{fake}EOF\nchmod 755 "$prefix/bin/bwrap"\n'
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


# --- builds: run straight from the test (as root, like `coursehub course add`), no hub needed ---

CANARY = "coursehub-canary-" + secrets.token_hex(8)

SETUP_PY = """
import os
from setuptools import setup

here = os.path.dirname(os.path.abspath(__file__))
uid = os.getuid()
try:  # where only a build running as root (or outside a sandbox) could leave a marker
    open(os.path.join({outside!r}, f"setup-py-uid-{{uid}}"), "w").close()
except OSError:
    pass
try:
    state = open({state_file!r}).read()
except OSError:
    state = None
with open(os.path.join(here, "buildmark.py"), "w") as f:
    f.write(f"UID = {{uid}}\\nENV = {{dict(os.environ)!r}}\\nSTATE = {{state!r}}\\n")
setup(name="buildmark", version="1.0", py_modules=["buildmark"])
"""


@pytest.fixture
def build_root(private_uv_cache, monkeypatch):
    """A state folder for direct builds, a world-writable 'outside' folder, a canary secret."""
    root = hub_root()
    state = root / "state"
    state.mkdir(mode=0o755)
    (state / "secret.txt").write_text(CANARY)
    os.chmod(state / "secret.txt", 0o644)  # readable by anyone who can see the state folder
    outside = root / "outside"
    outside.mkdir()
    os.chmod(outside, 0o1777)
    monkeypatch.setenv("COURSEHUB_TEST_CANARY", CANARY)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def build(root: Path, name: str, files: dict[str, str]):
    """Build a course from `files` the way `coursehub course add` does; its catalog record."""
    from coursehub.courses.build import build_course
    from coursehub.paths import StatePaths
    from coursehub.settings import Settings

    repo = course_repo(root, name, files)
    settings = Settings.model_validate(
        {"hub": {"state_dir": str(root / "state")}, "courses": [{"name": name, "repo": str(repo)}]}
    )
    return build_course(settings.courses[0], settings, StatePaths(root / "state"))


def site_packages(env: Path) -> Path:
    (site,) = env.glob("lib/python3*/site-packages")
    return site


def processes_with(text: str) -> list[int]:
    """Pids whose command line contains `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_no_build_step_runs_as_root_sees_secrets_or_outlives_the_build(build_root):
    outside, state_file = build_root / "outside", build_root / "state" / "secret.txt"
    post_build = (
        "#!/bin/bash\nprefix=$(python -c 'import sys; print(sys.prefix)')\n"
        "{ id -u; env; cat " + str(state_file) + ' 2>&1; } > "$prefix/postbuild-env.txt"\n'
        f"touch {outside}/postbuild-uid-$(id -u) 2>/dev/null\n"
        # A daemon left behind: the step's whole process tree must end with it.
        "(setsid sleep 7001 </dev/null >/dev/null 2>&1 &)\n"
    )
    files = {
        "setup.py": SETUP_PY.format(outside=str(outside), state_file=str(state_file)),
        "postBuild": post_build,
    }
    record = build(build_root, "hostile", files)
    env = Path(record.environment)
    mark = (site_packages(env) / "buildmark.py").read_text()
    assert "UID = 0" not in mark and "UID = " in mark  # setup.py ran, not as root
    assert CANARY not in mark  # neither the hub's environment nor the state folder
    post = (env / "postbuild-env.txt").read_text()
    assert post.splitlines()[0] != "0" and CANARY not in post
    assert not list(outside.iterdir()), "a build step wrote outside its sandbox"
    assert not processes_with("sleep 7001"), "a build step's process outlived the build"


def test_a_postbuild_changes_no_other_environment_and_no_cache(build_root, private_uv_cache):
    from coursehub.courses.environments import (
        EnvSpec,
        ensure_environment,
        find_user_python,
        server_stack,
        stack_store,
    )

    poison = "# coursehub-poisoned-" + secrets.token_hex(4)
    post_build = (
        "#!/bin/bash\n"
        'f=$(python -c "import jupyter_server.serverapp as m; print(m.__file__)")\n'
        f'echo "{poison}" >> "$f" || true\n'
    )
    hostile = Path(build(build_root, "poisoner", {"postBuild": post_build}).environment)
    # Built after it, from the same cache: the package the postBuild wrote to and the kernel every
    # environment has (with their dependencies, not the whole stack: JupyterLab's thousands of files
    # would only make the build longer).
    pins = tuple(p for p in server_stack() if p.startswith(("jupyter-server==", "ipykernel==")))
    other = ensure_environment(
        EnvSpec(python=str(find_user_python()), packages=pins), build_root / "state" / "envs"
    )
    assert other != hostile
    serverapp = next(site_packages(other).glob("jupyter_server/serverapp.py"))
    assert poison not in serverapp.read_text()
    caches = [str(private_uv_cache), str(stack_store())]
    cached = subprocess.run(["grep", "-rl", poison, *caches], capture_output=True, text=True)
    assert not cached.stdout, f"a cache or the stack store was changed: {cached.stdout}"
    for env in (hostile, other):
        for path in env.rglob("*"):
            st = path.lstat()
            if path.is_symlink():
                continue
            assert st.st_uid == 0 and not st.st_mode & 0o022, f"{path} is not root-owned read-only"
            # Only the stack's environment shares files, with the machine's store (all root's, read-only).
            assert env == other or not path.is_file() or st.st_nlink == 1, f"{path} is a hard link"


SEEDED_SETUP_PY = """
import glob, os
from setuptools import setup

here = os.path.dirname(os.path.abspath(__file__))
found = glob.glob({pattern!r})
result = []
for path in found:  # the stack's files, linked into the environment being built
    try:
        with open(path, "a") as f:
            f.write({poison!r})
        result.append("written")
    except OSError as exc:
        result.append(type(exc).__name__)
with open(os.path.join(here, "seedmark.py"), "w") as f:
    f.write(f"RESULT = {{result!r}}\\n")
setup(name="seedmark", version="1.0", py_modules=["seedmark"])
"""


def test_a_course_build_starts_from_its_stack_and_cannot_change_the_files_it_shares(build_root):
    from coursehub.courses.catalog import load_catalog

    poison = "# coursehub-seed-poisoned-" + secrets.token_hex(4)
    envs = build_root / "state" / "envs"
    pattern = str(envs / ".*.tmp" / "lib" / "python3*" / "site-packages" / "jupyter_server" / "serverapp.py")
    files = {"setup.py": SEEDED_SETUP_PY.format(pattern=pattern, poison=poison)}
    record = build(build_root, "seeded", files)
    env, stack = Path(record.environment), Path(record.stack)
    assert env != stack
    mark = (site_packages(env) / "seedmark.py").read_text()
    assert "PermissionError" in mark and "written" not in mark, mark  # it found the file, and could not
    (ours,) = site_packages(env).glob("jupyter_server/serverapp.py")
    (theirs,) = site_packages(stack).glob("jupyter_server/serverapp.py")
    assert ours.stat().st_ino == theirs.stat().st_ino  # started from the stack, not installed again
    assert poison not in theirs.read_text()
    assert not (env / "coursehub-stack-versions.txt").exists()  # the stack's mark is not the course's
    kernel = json.loads((env / "share/jupyter/kernels/python3/kernel.json").read_text())
    assert str(env / "bin" / "python") in kernel["argv"], kernel["argv"]
    for path in env.rglob("*"):
        st = path.lstat()
        assert path.is_symlink() or (st.st_uid == 0 and not st.st_mode & 0o022), path
    result = subprocess.run(
        [str(env / "bin" / "python"), "-c", "import seedmark, jupyter_server, sys; print(sys.prefix)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == str(env), result.stderr
    assert load_catalog(build_root / "state" / "courses")["seeded"].environment == str(env)


def test_the_stack_environment_is_built_once_per_machine_and_cloned_with_its_own_kernelspec(build_root):
    from coursehub.courses.environments import ensure_environment, find_user_python, stack_spec, stack_store

    spec = stack_spec(str(find_user_python()))
    first = ensure_environment(spec, build_root / "one" / "envs")
    second = ensure_environment(spec, build_root / "two" / "envs")
    stored = stack_store() / spec.digest
    assert stored.is_dir() and stored.parent.stat().st_mode & 0o777 == 0o700  # root's alone
    (serverapp,) = site_packages(second).glob("jupyter_server/serverapp.py")
    (in_store,) = site_packages(stored).glob("jupyter_server/serverapp.py")
    assert serverapp.stat().st_ino == in_store.stat().st_ino  # a clone, not a second build
    assert not (second.parent / f"{spec.digest}.log").exists()  # nothing was built for it
    for env in (first, second):
        kernel = json.loads((env / "share/jupyter/kernels/python3/kernel.json").read_text())
        assert str(env / "bin" / "python") in kernel["argv"], kernel["argv"]
    result = subprocess.run(
        [str(second / "bin" / "python"), "-c", "import jupyter_server, sys; print(sys.prefix)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == str(second), result.stderr


def test_a_course_that_needs_other_versions_of_the_stack_fails_naming_the_conflict(build_root):
    from coursehub.errors import EnvironmentBuildError

    # The stack's packages accept any idna from 2.8 to 4, the stack environment has a newer one than
    # 3.7: a course may not move what the fork server pre-imports to other versions.
    with pytest.raises(EnvironmentBuildError) as failed:
        build(build_root, "oldidna", {"requirements.txt": "idna==3.7\n"})
    assert "idna" in str(failed.value), failed.value


# A course's own package: setup.py runs as a build step (the install), like postBuild; a course
# without postBuild starts from links to its stack, not from a copy of it (seconds of CPU each).
SLOW_SETUP_PY = """
import subprocess
subprocess.call(["sleep", "7002"])
"""

FILLER_SETUP_PY = """
import os
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "filler"), "ab") as f:
    while True:  # a MiB at a time, into its own build folder, without end
        f.write(os.urandom(1 << 20))
        f.flush()
"""


def test_a_build_step_over_its_time_limit_is_stopped(build_root, monkeypatch):
    from coursehub.courses import environments
    from coursehub.errors import EnvironmentBuildError

    # The stack first, at the real limit (a course starts from it): the step that goes over the
    # limit below can only be the course's own install.
    stack = environments.stack_spec(str(environments.find_user_python()))
    environments.ensure_environment(stack, build_root / "state" / "envs")
    monkeypatch.setattr(environments, "BUILD_TIMEOUT", 20)
    with pytest.raises(EnvironmentBuildError, match="step 'install packages': over its time limit of 20 s"):
        build(build_root, "slow", {"setup.py": SLOW_SETUP_PY})
    assert not processes_with("sleep 7002")


def test_a_build_that_writes_more_than_its_disk_limit_is_stopped(build_root, monkeypatch):
    from coursehub.courses import buildbox
    from coursehub.courses.environments import ensure_environment, find_user_python, stack_spec
    from coursehub.errors import EnvironmentBuildError

    # The stack's linked files are root's, not the builder's: only what the build writes counts.
    ensure_environment(stack_spec(str(find_user_python())), build_root / "state" / "envs")
    monkeypatch.setattr(buildbox, "BUILD_DISK", 128 << 20)
    monkeypatch.setattr(buildbox, "DISK_POLL", 0.2)
    with pytest.raises(EnvironmentBuildError, match="disk limit") as stopped:
        build(build_root, "filler", {"setup.py": FILLER_SETUP_PY})
    assert "install packages" in str(stopped.value)
    envs = build_root / "state" / "envs"
    assert not list(envs.glob(".*.tmp")) and not list(envs.glob(".*.work")), "the build's folders stayed"


def test_disk_use_counts_the_builders_files_only(tmp_path):
    from coursehub.courses.buildbox import builder_bytes

    (tmp_path / "mine").write_bytes(b"x" * 100_000)
    (tmp_path / "shared").write_bytes(b"y" * 100_000)
    os.chown(tmp_path / "mine", 4242, 4242)
    assert 100_000 <= builder_bytes([tmp_path], 4242) < 200_000
    assert builder_bytes([tmp_path], 4243) == 0


def test_seal_makes_the_builders_tree_roots_and_leaves_sealed_files_untouched(tmp_path):
    from coursehub.courses.buildbox import builder_bytes, seal

    tree = tmp_path / "env"
    (tree / "lib" / "deep").mkdir(parents=True)
    made = {  # what a builder left: its own files, set-id and group-writable bits
        "lib/deep/mod.py": 0o664,
        "lib/deep/tool": 0o4775,
        "lib/data": 0o2644,
    }
    for rel, mode in made.items():
        (tree / rel).write_text(rel)
        os.chown(tree / rel, 4242, 4242)
        os.chmod(tree / rel, mode)
    os.chown(tree / "lib" / "deep", 4242, 4242)
    os.chmod(tree / "lib" / "deep", 0o777)
    (tree / "lib" / "link").symlink_to("/etc/shadow")
    os.chown(tree / "lib" / "link", 4242, 4242, follow_symlinks=False)
    # A file shared with the stack: already root's, read-only for others, linked from elsewhere.
    stack_file = tmp_path / "stack.py"
    stack_file.write_text("shared")
    os.chmod(stack_file, 0o644)
    os.link(stack_file, tree / "lib" / "shared.py")
    before = stack_file.stat().st_ctime_ns
    assert builder_bytes([tree], 4242) > 0

    seal(tree)

    expected = {"lib/deep/mod.py": 0o644, "lib/deep/tool": 0o755, "lib/data": 0o644, "lib/deep": 0o755}
    for rel, mode in expected.items():
        st = (tree / rel).lstat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, mode), rel
    assert (tree / "lib" / "link").lstat().st_uid == 0
    assert os.stat("/etc/shadow").st_mode & 0o777 != 0o644  # no chmod through the symlink
    assert builder_bytes([tree], 4242) == 0
    # Not written at all: no chown or chmod on an inode the stack's environment shares.
    assert stack_file.stat().st_ctime_ns == before


def test_the_committed_lock_pins_the_stack_with_a_hash_for_every_distribution():
    from coursehub.courses.environments import server_stack, stack_spec
    from coursehub.courses.stacklock import LOCK, lock_pins

    text = LOCK.read_text()
    assert stack_spec("/usr/bin/python3").lock == text  # what the stack environment is built from
    pins = lock_pins(text)
    for pin in server_stack():
        name, _, version = pin.partition("==")
        assert pins[name.lower()] == version, f"{pin}: refresh the lock with ./run lock"
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1])  # one per distribution
    # A distribution may be listed once per Python version range (its markers differ).
    assert len(entries) >= len(pins) and all("--hash=sha256:" in entry for entry in entries)


def test_a_lock_that_misses_a_stack_pin_is_refused_saying_how():
    from coursehub.courses.stacklock import missing_from_lock

    lock = "jupyter-server==2.21.1 \\\n    --hash=sha256:ab\nipykernel==7.4.0 \\\n    --hash=sha256:cd\n"
    assert missing_from_lock(lock, ("jupyter_server==2.21.1", "ipykernel==7.4.0")) == []
    assert missing_from_lock(lock, ("ipykernel==7.5.0", "jupyterlab==4.6.6")) == [
        "ipykernel==7.5.0",
        "jupyterlab==4.6.6",
    ]


def test_a_distribution_whose_hash_differs_from_the_lock_is_not_installed(build_root):
    from coursehub.courses.environments import EnvSpec, ensure_environment, find_user_python
    from coursehub.errors import EnvironmentBuildError

    # six 1.16.0 exists on the index; this hash is not one of its files'.
    lock = "six==1.16.0 \\\n    --hash=sha256:" + "0" * 64 + "\n"
    spec = EnvSpec(python=str(find_user_python()), packages=("six==1.16.0",), lock=lock)
    with pytest.raises(EnvironmentBuildError, match="install packages") as failed:
        ensure_environment(spec, build_root / "state" / "envs")
    assert "hash" in str(failed.value).lower(), failed.value
    assert not (build_root / "state" / "envs" / spec.digest).exists()


def test_apt_txt_without_the_admins_permission_is_refused_saying_how(build_root):
    from coursehub.errors import EnvironmentBuildError

    with pytest.raises(EnvironmentBuildError, match=r"allow_apt: true") as refused:
        build(build_root, "aptless", {"apt.txt": "coursehub-no-such-package\n"})
    assert "coursehub-no-such-package" in str(refused.value)
    assert not (build_root / "state" / "envs").exists() or not any((build_root / "state" / "envs").iterdir())


@pytest.mark.parametrize(
    "line",
    [
        "./evil.deb",
        "/tmp/x.deb",
        "-oDpkg::Pre-Invoke=id",
        "Foo",
        "a",
        "pkg name",
        "pkg=1.0",
        "http://x/y.deb",
    ],
)
def test_apt_txt_lines_that_are_not_debian_package_names_are_refused(line):
    from coursehub.courses.spec import apt_packages
    from coursehub.errors import EnvironmentBuildError

    with pytest.raises(EnvironmentBuildError, match="not a Debian package name"):
        apt_packages([line])


def test_debian_package_names_pass():
    from coursehub.courses.spec import apt_packages

    assert apt_packages(["graphviz", "libgl1-mesa-glx", "g++", "python3.11-venv"]) == (
        "graphviz",
        "libgl1-mesa-glx",
        "g++",
        "python3.11-venv",
    )


# --- Binder's allow_any_repo: what an anonymous reader may make the hub fetch and build ---

FAKE_DNS = {
    "public.test": ["93.184.216.34"],
    "home.test": ["127.0.0.1"],
    "lan.test": ["10.1.2.3"],
    "office.test": ["192.168.1.20"],
    "cloud-metadata.test": ["169.254.169.254"],
    "v6-local.test": ["fe80::1"],
    "v6-loop.test": ["::1"],
    "mapped.test": ["::ffff:10.0.0.1"],
    "cgnat.test": ["100.64.0.1"],
    "split.test": ["93.184.216.34", "10.0.0.7"],  # one private answer is enough to refuse
}


def fake_resolve(host, port, type=0):  # noqa: A002 - getaddrinfo's own keyword
    """getaddrinfo over FAKE_DNS: no query leaves the test."""
    import socket

    if host not in FAKE_DNS:
        raise socket.gaierror(f"unknown host {host}")
    return [(socket.AF_INET, type, 6, "", (address, port)) for address in FAKE_DNS[host]]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://public.test/org/repo", "only https://"),
        ("git://public.test/repo", "only https://"),  # git's own protocol cannot be pinned
        ("https://home.test/org/repo", "loopback"),
        ("https://v6-loop.test/repo", "loopback"),
        ("https://lan.test/org/repo", "private"),
        ("https://office.test/org/repo", "private"),
        ("https://mapped.test/org/repo", "private"),
        ("https://cloud-metadata.test/latest", "link-local"),
        ("https://v6-local.test/repo", "link-local"),
        ("https://cgnat.test/org/repo", "not a public address"),
        ("https://split.test/org/repo", "private"),
        ("https://nowhere.test/org/repo", "cannot be resolved"),
    ],
)
def test_unregistered_repositories_on_non_public_hosts_are_refused(url, reason):
    from coursehub.launch.binder.spec import unregistered_repo_refusal

    refusal = unregistered_repo_refusal(url, resolve=fake_resolve)
    assert refusal is not None and reason in refusal


def test_unregistered_repositories_on_public_hosts_pass():
    from coursehub.launch.binder.spec import unregistered_repo_refusal

    assert unregistered_repo_refusal("https://public.test/org/repo", resolve=fake_resolve) is None


def test_an_unregistered_repository_is_fetched_only_from_the_addresses_checked():
    from coursehub.launch.binder.spec import pinned_fetch_options

    assert pinned_fetch_options("https://public.test:8443/org/repo", resolve=fake_resolve) == (
        "-c",
        "http.curloptResolve=public.test:8443:93.184.216.34",
        "-c",
        "http.followRedirects=false",
    )
    FAKE_DNS["v6-public.test"] = ["2606:2800:220:1:248:1893:25c8:1946"]
    options = pinned_fetch_options("https://v6-public.test/org/repo", resolve=fake_resolve)
    assert options[1] == "http.curloptResolve=v6-public.test:443:[2606:2800:220:1:248:1893:25c8:1946]"


@pytest.fixture
def git_http_servers(tmp_path):
    """A bare repository served over git's dumb HTTP protocol on loopback, and a server redirecting to it."""
    import http.server
    import threading
    from functools import partial

    repo = tmp_path / "src"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "notes.md").write_text("hello\n")
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), *identity, "commit", "-qm", "one"], check=True)
    bare = tmp_path / "www" / "book.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
    serve = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    )
    target = serve.server_address[1]

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{target}{self.path}")
            self.end_headers()

        def log_message(self, *args):
            pass

    redirect = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    for server in (serve, redirect):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield target, redirect.server_address[1]
    for server in (serve, redirect):
        server.shutdown()


def test_git_connects_only_to_the_pinned_address_and_follows_no_redirect(git_http_servers, tmp_path):
    from coursehub.launch.binder.spec import git_pin_options

    target, redirect = git_http_servers

    def clone(url: str, options: tuple[str, ...], dest: str) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_TERMINAL_PROMPT": "0"}
        cmd = ["git", *options, "clone", "-q", "--", url, str(tmp_path / dest)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)

    # A name no resolver knows reaches the repository only through the pin.
    url = f"http://pinned.test:{target}/book.git"
    assert clone(url, (), "unpinned").returncode != 0
    pinned = clone(url, git_pin_options("pinned.test", target, ["127.0.0.1"]), "pinned")
    assert pinned.returncode == 0, pinned.stderr
    assert (tmp_path / "pinned" / "notes.md").read_text() == "hello\n"
    # A redirect to another address: git follows it by default, and not with the pin's options.
    moved = f"http://moved.test:{redirect}/book.git"
    options = git_pin_options("moved.test", redirect, ["127.0.0.1"])
    assert clone(moved, options[:2], "followed").returncode == 0  # the control: the redirect works
    refused = clone(moved, options, "refused")
    assert refused.returncode != 0 and not (tmp_path / "refused" / "notes.md").exists()


class FakeHandler:
    """What resolve_launch reads of a request handler: binder settings and the catalog."""

    binder = {"allow_any_repo": True, "state_dir": "/nonexistent", "python": ""}

    def records(self) -> dict:
        return {}


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1:9/org/repo", "loopback"),
        ("https://localhost:9/repo", "loopback"),
        ("https://127.1.2.3:9/repo", "loopback"),
        ("git://127.1.2.3:9/repo", "only https://"),
        ("http://example.org/org/repo", "only https://"),
    ],
)
def test_allow_any_repo_refuses_before_any_connection_with_a_clear_message(url, reason, monkeypatch):
    import asyncio

    from coursehub.launch.binder.launch import LaunchRefused, resolve_launch
    from coursehub.launch.binder.spec import parse_build_path

    async def no_build(*_args):  # had the URL passed, the build (and its fetch) would start here
        raise LaunchRefused("would build", 500)

    spec = parse_build_path("git", quote(url, safe="") + "/HEAD")
    with pytest.raises(LaunchRefused) as refused:
        asyncio.run(resolve_launch(FakeHandler(), spec, None, no_build))
    assert reason in str(refused.value) and "does not build" in str(refused.value)


def test_the_launch_hands_its_builder_the_addresses_it_checked(monkeypatch):
    import asyncio
    import socket

    from coursehub.launch.binder.launch import LaunchRefused, resolve_launch
    from coursehub.launch.binder.spec import parse_build_path

    monkeypatch.setattr(socket, "getaddrinfo", fake_resolve)
    seen = []

    async def builder(*args):
        seen.append(args[-1])
        raise LaunchRefused("stop here", 500)

    spec = parse_build_path("git", quote("https://public.test/org/repo", safe="") + "/HEAD")
    with pytest.raises(LaunchRefused, match="stop here"):
        asyncio.run(resolve_launch(FakeHandler(), spec, None, builder))
    assert seen == [pinned("public.test", 443, "93.184.216.34")]


def pinned(host: str, port: int, address: str) -> tuple[str, ...]:
    return ("-c", f"http.curloptResolve={host}:{port}:{address}", "-c", "http.followRedirects=false")


def test_binder_builds_wait_in_their_own_queue_not_in_the_shared_thread_pool(monkeypatch):
    import asyncio
    import threading

    from coursehub.launch.binder import build as binder_build
    from coursehub.settings import Course, Settings

    release, running, most = threading.Event(), [0], [0]
    lock = threading.Lock()

    def slow_build(*_args, **_kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(120)
        with lock:
            running[0] -= 1
        return "built"

    monkeypatch.setattr(binder_build, "build_course", slow_build)
    course = Course(name="binder-x", repo="https://public.test/x")

    async def main() -> tuple[int, list]:
        builds = [
            asyncio.ensure_future(binder_build._build_streaming(course, Settings(), None, None, ()))
            for _ in range(12)
        ]
        await asyncio.sleep(0)
        try:  # a login's argon2 check, a useradd: asyncio's default pool must still serve them
            answer = await asyncio.wait_for(asyncio.to_thread(lambda: 42), 60)
        finally:
            release.set()
        return answer, await asyncio.gather(*builds)

    answer, results = asyncio.run(main())
    assert answer == 42 and results == ["built"] * 12
    assert most[0] <= binder_build.MAX_PARALLEL_BUILDS


def test_the_fetch_sees_nothing_of_the_hubs_environment(build_root, monkeypatch):
    from coursehub.courses import content
    from coursehub.settings import Course

    repo = course_repo(build_root, "fetched", {"notes.md": "hi\n"})
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    commit = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]
    subprocess.run(commit, check=True)
    trace = build_root / "outside" / "git-trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))  # a git that inherits the hub's environment writes here
    staging = content.fetch(Course(name="fetched", repo=str(repo)), build_root / "state" / "courses")
    assert (staging / "notes.md").read_text() == "hi\n"
    assert staging.stat().st_uid == 0 and (staging / "notes.md").stat().st_uid == 0
    assert not trace.exists(), "the fetch ran with the hub's environment"


# --- the build's network: course code reaches the package index, nothing on this machine ---

PROBE_SETUP_PY = """
import os, socket
from setuptools import setup
from urllib.parse import urlsplit

here = os.path.dirname(os.path.abspath(__file__))
proxy = urlsplit(os.environ.get("HTTPS_PROXY", "http://127.0.0.1:9"))
# Every listener directly, and the one bound to every address at the host end of the build's link.
targets = [*{targets!r}, (proxy.hostname, {any_port!r})]
outcome = {{}}
for host, port in targets:
    try:
        with socket.create_connection((host, port), timeout=5) as conn:
            conn.sendall(b"probe")
        outcome[f"{{host}}:{{port}}"] = "connected"
    except OSError as exc:
        outcome[f"{{host}}:{{port}}"] = "unreachable: " + type(exc).__name__
    if "HTTPS_PROXY" in os.environ:  # and through the build's own way out
        try:
            with socket.create_connection((proxy.hostname, proxy.port), timeout=5) as conn:
                crlf = chr(13) + chr(10)
                conn.sendall(f"CONNECT {{host}}:{{port}} HTTP/1.1{{crlf}}{{crlf}}".encode())
                answer = (conn.recv(200).decode(errors="replace").splitlines() or ["closed"])[0]
        except OSError as exc:
            answer = type(exc).__name__
        outcome[f"proxy {{host}}:{{port}}"] = "connected" if " 200 " in answer else "unreachable: " + answer
with open(os.path.join(here, "netmark.py"), "w") as f:
    f.write(f"OUTCOME = {{outcome!r}}\\n")
setup(name="netmark", version="1.0", py_modules=["netmark"])
"""


@pytest.fixture
def host_listeners():
    """TCP listeners on 127.0.0.1 and on an address of this host's own (added to lo for the test)."""
    import socket
    import threading

    from conftest import hub_subnet

    # A /24 no test hub uses (conftest's shared counter); its first address, as a hub's gateway would be.
    address = str(next(ipaddress.IPv4Network(hub_subnet()).hosts()))
    add = ["ip", "addr", "add", f"{address}/32", "dev", "lo", "label", "lo:chtprobe"]
    subprocess.run(add, check=True, timeout=30)
    accepted: list[str] = []
    listeners = []
    for host in ("127.0.0.1", address, "0.0.0.0"):
        sock = socket.socket()
        sock.bind((host, 0))
        sock.listen(8)
        listeners.append(sock)

        def serve(sock=sock, host=host):
            while True:
                try:
                    conn, _ = sock.accept()
                except OSError:
                    return
                accepted.append(host)
                conn.close()

        threading.Thread(target=serve, daemon=True).start()
    try:
        yield [sock.getsockname() for sock in listeners], accepted
    finally:
        for sock in listeners:
            sock.close()
        subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"], timeout=30)


def test_a_build_step_reaches_nothing_on_this_machine_and_still_installs_from_the_index(
    build_root, host_listeners
):
    (loopback, own, anywhere), accepted = host_listeners
    setup_py = PROBE_SETUP_PY.format(targets=[loopback, own], any_port=anywhere[1])
    # setuptools itself comes from the package index, into the step's build isolation: the index is reached.
    record = build(build_root, "netprobe", {"setup.py": setup_py})
    outcome = (site_packages(Path(record.environment)) / "netmark.py").read_text()
    assert "'connected'" not in outcome and outcome.count("'unreachable") == 6, outcome
    assert outcome.count("502 Bad Gateway") == 3, outcome  # the build's proxy refused each of them
    assert accepted == [], f"a build step connected to {accepted}"


def test_an_unregistered_repository_is_refused_before_its_fetch_when_builds_cannot_be_filtered(build_root):
    from coursehub.courses.build import build_course
    from coursehub.errors import EnvironmentBuildError
    from coursehub.paths import StatePaths
    from coursehub.settings import Settings

    repo = course_repo(build_root, "anyrepo", {"notes.md": "hi\n"})
    settings = Settings.model_validate(
        {"network": {"isolate": False}, "courses": [{"name": "anyrepo", "repo": str(repo)}]}
    )
    paths = StatePaths(build_root / "state")
    with pytest.raises(EnvironmentBuildError, match="register the repository as a course"):
        build_course(settings.courses[0], settings, paths, untrusted=True)
    assert not paths.courses.exists() or not any(paths.courses.iterdir()), "it was fetched"


def test_an_admins_course_builds_on_the_hosts_network_with_a_warning_when_isolation_is_off(
    build_root, host_listeners
):
    from coursehub.courses.build import build_course
    from coursehub.paths import StatePaths
    from coursehub.settings import Settings

    (loopback, own, anywhere), accepted = host_listeners
    setup_py = PROBE_SETUP_PY.format(targets=[loopback], any_port=anywhere[1])
    repo = course_repo(build_root, "offnet", {"setup.py": setup_py})
    settings = Settings.model_validate(
        {
            "hub": {"state_dir": str(build_root / "state")},
            "network": {"isolate": False},
            "courses": [{"name": "offnet", "repo": str(repo)}],
        }
    )
    lines: list[str] = []
    record = build_course(settings.courses[0], settings, StatePaths(build_root / "state"), lines.append)
    # What the admin chose, said in the build's log: its steps shared this machine's network.
    warned = [line for line in lines if "build steps share this machine's network" in line]
    assert warned and all(line.endswith("(network.isolate is false)") for line in warned), lines[:5]
    outcome = (site_packages(Path(record.environment)) / "netmark.py").read_text()
    assert f"'127.0.0.1:{loopback[1]}': 'connected'" in outcome, outcome
    assert "127.0.0.1" in accepted
