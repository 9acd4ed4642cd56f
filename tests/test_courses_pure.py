"""Pure parts of courses: link parsing, access rules, repo2docker files, the content merge rules."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from coursehub.courses.access import may_open
from coursehub.courses.content import suggested_name
from coursehub.courses.spec import read_spec
from coursehub.errors import EnvironmentBuildError
from coursehub.launch.links import LinkError, lab_path, launch_link, locate, parse_path, tmplogin_link
from coursehub.payloads.sync import sync


@pytest.mark.parametrize("raw", ["../x", "a/../../b", "/etc/passwd", "a\x00b", "C:/x", "a\\b", "x\n"])
def test_paths_that_could_escape_are_rejected(raw):
    with pytest.raises(LinkError) as error:
        parse_path(raw)
    assert error.value.status == 400


@pytest.mark.parametrize(("raw", "clean"), [("", ""), ("a//b/./c.ipynb", "a/b/c.ipynb"), ("/", "")])
def test_paths_are_normalised(raw, clean):
    assert parse_path(raw) == clean


def test_symlink_out_of_course_is_rejected(tmp_path):
    (tmp_path / "course").mkdir()
    (tmp_path / "course" / "out").symlink_to("/etc")
    with pytest.raises(LinkError):
        locate(tmp_path / "course", "out/passwd")
    assert locate(tmp_path / "course", "missing.ipynb") == (False, False)


def test_links():
    assert launch_link("http://h/", "bio", "w1/a b.ipynb") == "http://h/hub/launch/bio?path=w1%2Fa+b.ipynb"
    assert tmplogin_link("http://h", "bio", "x.ipynb") == "http://h/hub/tmplogin?course=bio&notebook=x.ipynb"
    assert lab_path("ann", "bio", "w1/a b.ipynb") == "/user/ann/bio/lab/tree/bio/w1/a%20b.ipynb"


def user(name, groups=()):
    return SimpleNamespace(name=name, groups=[SimpleNamespace(name=g) for g in groups])


def test_access_rules():
    tmp = user("tmp-1", ["coursehub-temporary"])
    assert may_open("open", tmp) and may_open("open", user("ann"))
    assert may_open("accounts", user("ann")) and not may_open("accounts", tmp)
    roster = ["ann", "group:bio"]
    assert may_open(roster, user("ann")) and may_open(roster, user("bob", ["bio"]))
    assert not may_open(roster, user("eve")) and not may_open(roster, tmp)


def test_repo2docker_files_are_read(tmp_path):
    (tmp_path / "requirements.txt").write_text("tabulate==0.9.0\n# comment\n")
    (tmp_path / "environment.yml").write_text(
        "dependencies:\n  - python=3.11\n  - numpy\n  - pip\n  - pip:\n    - pyjokes\n"
    )
    (tmp_path / "apt.txt").write_text("cowsay\n")
    (tmp_path / "postBuild").write_text("echo hi\n")
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    spec = read_spec(tmp_path)
    assert spec.requirements == ("tabulate==0.9.0", "pyjokes")
    assert spec.python_version == (3, 11)
    assert spec.apt_packages == ("cowsay",) and spec.post_build and spec.install_self
    assert any("numpy" in note and "conda-only" in note for note in spec.notes)


def test_bad_repo2docker_files_say_what_is_wrong(tmp_path):
    (tmp_path / "runtime.txt").write_text("r-4.1-2022-01-01")
    with pytest.raises(EnvironmentBuildError, match="runtime.txt"):
        read_spec(tmp_path)
    (tmp_path / "runtime.txt").unlink()
    (tmp_path / "requirements.txt").write_text("-r other.txt\n")
    with pytest.raises(EnvironmentBuildError, match="option lines"):
        read_spec(tmp_path)


def test_course_names_from_repos():
    assert suggested_name("https://github.com/org/Bio-101.git") == "bio-101"
    assert suggested_name("/srv/2024_stats/") == "c-2024-stats"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_merge_follows_nbgitpuller_rules(tmp_path):
    up, home = tmp_path / "up", tmp_path / "home"
    write(up / "a.ipynb", "a1")
    write(up / "w1/b.ipynb", "b1")
    write(up / "gone.txt", "g1")
    sync(up, home)
    assert (home / "w1/b.ipynb").read_text() == "b1"
    write(home / "a.ipynb", "student's a")  # the student edits a
    write(up / "a.ipynb", "a2")  # upstream changes a and b, adds c, deletes gone.txt
    write(up / "w1/b.ipynb", "b2")
    write(up / "c.ipynb", "c1")
    (up / "gone.txt").unlink()
    sync(up, home)
    assert (home / "a.ipynb").read_text() == "student's a"  # never overwritten
    assert (home / "w1/b.ipynb").read_text() == "b2"  # untouched by the student: updated
    assert (home / "c.ipynb").read_text() == "c1"  # new upstream: appears
    assert (home / "gone.txt").read_text() == "g1"  # deleted upstream: kept


def test_merge_never_writes_through_a_symlink(tmp_path):
    up, home, outside = tmp_path / "up", tmp_path / "home", tmp_path / "outside"
    outside.mkdir()
    write(up / "w1/b.ipynb", "b1")
    home.mkdir()
    os.symlink(outside, home / "w1")
    counts = sync(up, home)
    assert counts.get("skip-symlink") == 1
    assert not (outside / "b.ipynb").exists()


def test_a_course_gets_the_stack_environments_versions_and_one_that_adds_nothing_is_the_stack(tmp_path):
    from coursehub.courses.build import environment_spec
    from coursehub.courses.environments import stack_spec
    from coursehub.settings import Settings

    settings = Settings()
    versions = "idna==3.20\ntornado==6.6.1\n"
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "README.md").write_text("notes only\n")
    spec = environment_spec(read_spec(bare), bare, settings, versions)
    assert spec.digest == stack_spec(spec.python).digest  # served by the stack environment itself
    with_packages = tmp_path / "with"
    with_packages.mkdir()
    (with_packages / "requirements.txt").write_text("tabulate==0.9.0\n")
    spec = environment_spec(read_spec(with_packages), with_packages, settings, versions)
    assert spec.constraints == versions
    other = environment_spec(read_spec(with_packages), with_packages, settings, "idna==3.19\n")
    assert other.digest != spec.digest  # another stack, another environment


def test_the_lock_leaves_out_what_the_stack_overrides_name():
    from coursehub.courses.stacklock import LOCK, OVERRIDES, lock_pins

    lines = [line for line in OVERRIDES.read_text().splitlines() if line and not line.startswith("#")]
    left_out = [line.split(";")[0].strip() for line in lines]
    assert left_out == ["rfc3987-syntax"]
    assert not set(left_out) & set(lock_pins(LOCK.read_text()))  # refreshed with the overrides
    assert "lark" not in lock_pins(LOCK.read_text())  # only rfc3987-syntax needed it


def test_a_build_step_sees_coursehubs_own_uv_under_tmp_and_nothing_else_of_tmp_or_hidden_state():
    from coursehub.courses.buildbox import sandbox_argv

    def binds(command: str, hidden: tuple[Path, ...] = ()) -> list[tuple[str, str]]:
        argv = sandbox_argv("bwrap", [], hidden, Path("/w"), [command, "pip", "install"], root=root)
        return [
            (argv[i + 1], argv[i + 2])
            for i, a in enumerate(argv)
            if a == "--ro-bind" and argv[i + 1] not in ("/usr", "/opt")
        ]

    root = (("opt", None), ("run", None), ("tmp", None), ("usr", None))
    argv = sandbox_argv("bwrap", [], (), Path("/w"), ["uv"], root=root)
    # The root's entries one by one but never /tmp or /run (namespaces come and go there: run 48),
    # and read-only once built.
    assert argv[1:7] == ["--ro-bind", "/opt", "/opt", "--ro-bind", "/usr", "/usr"]
    assert "/run" not in argv[: argv.index("--tmpfs")]
    assert argv[argv.index("--") - 2 : argv.index("--")] == ["--remount-ro", "/"]

    # A clone in /tmp: its venv's uv is behind the sandbox's private /tmp unless bound back.
    assert binds("/tmp/cirun/.venv/bin/uv") == [("/tmp/cirun/.venv/bin/uv", "/tmp/cirun/.venv/bin/uv")]
    assert binds("/opt/coursehub/.venv/bin/uv") == []  # visible through the read-only root already
    assert binds("uv") == []
    # Never a file of the hidden state folder, even under /tmp.
    assert binds("/tmp/state/envs/x/bin/python", (Path("/tmp/state"),)) == []
