"""Hostile input at the edges, generated: 10,000 inputs per parser, only coursehub's own errors escape.

Pure functions, no hub: launch-link parsing, hub usernames -> Unix names, course repository
files, and coursehub.yaml (text, bytes and structured YAML). Each property also checks that
nothing produced points outside the folder it must stay in.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coursehub.courses.spec import read_spec
from coursehub.errors import ConfigError, CoursehubError, EnvironmentBuildError
from coursehub.launch.links import LinkError, lab_path, launch_link, locate, parse_course_name, parse_path
from coursehub.settings import COURSE_NAME, Settings
from coursehub.settings.yamlfile import load_settings, parse_settings
from coursehub.spawner.accounts import MAX_UNIX_NAME, owner_marker, unix_name

# `./run reliability` runs the full 10,000 examples per property (COURSEHUB_FUZZ_EXAMPLES); the everyday
# suite runs 500, which keeps it under its time budget and still finds the shallow cases.
EXAMPLES = int(os.environ.get("COURSEHUB_FUZZ_EXAMPLES", "500"))
MANY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

# Pieces attackers combine: traversal, separators, encodings, drive letters, NULs, unicode look-alikes.
HOSTILE = st.sampled_from(
    ["..", ".", "/", "//", "\\", "%2e%2e", "%2f", "~", "C:", "\x00", "\n", "\t", " ", "a", "b.ipynb",
     "\u2025", "\uff0e\uff0e", "\u202e", "ä", "𝓪", "?", "#", "&", "=", ":", "@", "*", "$HOME", "..."]
)  # fmt: skip
HOSTILE_TEXT = st.one_of(st.text(), st.lists(HOSTILE, max_size=12).map("".join))


@MANY
@given(HOSTILE_TEXT)
def test_course_names_from_urls(raw):
    try:
        name = parse_course_name(raw)
    except LinkError as exc:
        assert exc.status == 404
        return
    assert re.fullmatch(COURSE_NAME[1:-1], name)
    assert (Path("/courses") / name).parent == Path("/courses")


@MANY
@given(HOSTILE_TEXT)
def test_paths_in_links_stay_inside_the_course(raw):
    try:
        path = parse_path(raw)
    except LinkError as exc:
        assert exc.status == 400
        return
    joined = posixpath.normpath(posixpath.join("/course", path))
    assert joined == "/course" or joined.startswith("/course/")
    assert ".." not in path.split("/") and "\\" not in path and "\x00" not in path
    # The URLs built from it lead into the user's own course tree and round-trip the path.
    url = lab_path("ann", "bio", path)
    assert url.startswith("/user/ann/bio/lab/tree/bio")
    assert ".." not in unquote(url).split("/")
    query = parse_qs(urlsplit(launch_link("http://hub/", "bio", path)).query)
    assert query.get("path", [""]) == [path]


@pytest.fixture(scope="module")
def course_tree():
    """A checkout with a symlink out of it and one inside it, beside a secret it must not reach."""
    root = Path(tempfile.mkdtemp())
    (root / "course" / "week1").mkdir(parents=True)
    (root / "course" / "week1" / "a.ipynb").write_text("{}")
    (root / "secret").write_text("x")
    (root / "course" / "out").symlink_to(root)
    (root / "course" / "in").symlink_to(root / "course" / "week1")
    yield root / "course"
    shutil.rmtree(root)


@MANY
@given(st.one_of(HOSTILE_TEXT, st.lists(st.sampled_from(["out", "in", "week1", "a.ipynb", "..", "secret"]),
                                        max_size=5).map("/".join)))  # fmt: skip
def test_located_paths_never_leave_the_checkout(course_tree, raw):
    try:
        path = parse_path(raw)
        exists, _ = locate(course_tree, path)
    except LinkError:
        return
    target = (course_tree / path).resolve()
    assert target == course_tree.resolve() or course_tree.resolve() in target.parents
    assert not (exists and target.name == "secret")


@MANY
@given(st.text(max_size=300), st.sampled_from(["ch-", "t1a2-", "x-"]))
def test_any_hub_username_maps_to_a_valid_unix_name(hub_name, prefix):
    name = unix_name(hub_name, prefix)
    assert re.fullmatch(r"[a-z][a-z0-9-]*", name) and len(name) <= MAX_UNIX_NAME
    assert name.startswith(prefix)
    assert (Path("/home/coursehub") / name).parent == Path("/home/coursehub")
    assert unix_name(hub_name, prefix) == name  # stable across restarts
    assert re.fullmatch(r"coursehub [0-9a-f]{40}", owner_marker(hub_name))  # no ':' or newline in GECOS


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_different_hub_users_never_share_a_unix_account(a, b):
    if a != b:
        assert unix_name(a) != unix_name(b)


SPEC_FILES = ["requirements.txt", "environment.yml", "runtime.txt", "apt.txt", "binder/requirements.txt"]
YAMLISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(["dependencies", "pip", "python", "name", "channels"]), inner, max_size=4
        ),
    ),
    max_leaves=12,
)
FILE_BODY = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    YAMLISH.map(lambda d: yaml.safe_dump(d).encode()),
    st.sampled_from([b"python-3.11", b"-r ../../etc/passwd", b"--index-url http://evil", b"r-4.1"]),
)


@pytest.fixture(scope="module")
def course_dir():
    folder = Path(tempfile.mkdtemp())
    yield folder
    shutil.rmtree(folder)


@MANY
@given(st.dictionaries(st.sampled_from(SPEC_FILES), FILE_BODY, max_size=4))
def test_course_repository_files_give_a_spec_or_a_clear_error(course_dir, files):
    # One folder for all inputs (a fresh one each time is most of the cost): clear it first.
    for name in SPEC_FILES:
        (course_dir / name).unlink(missing_ok=True)
    for name, body in files.items():
        (course_dir / name).parent.mkdir(exist_ok=True)
        (course_dir / name).write_bytes(body)
    try:
        spec = read_spec(course_dir)
    except EnvironmentBuildError:
        return
    assert all(isinstance(line, str) and not line.startswith("-") for line in spec.requirements)
    assert spec.python_version is None or all(isinstance(n, int) for n in spec.python_version)


SECTION_KEYS = {name: list(field.annotation.model_fields) for name, field in Settings.model_fields.items()
                if hasattr(field.annotation, "model_fields")}  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
    st.sampled_from(["512M", "-1G", "/etc", "../x", "open", "fork", "postgresql://u:p@h/d", "1e999"]),
)  # fmt: skip
SECTIONS = st.dictionaries(
    st.sampled_from(list(SECTION_KEYS)),
    st.one_of(SCALARS, st.lists(SCALARS, max_size=2)).flatmap(
        lambda junk: st.one_of(
            st.just(junk),
            st.dictionaries(st.sampled_from(sum(SECTION_KEYS.values(), ["bogus"])), SCALARS, max_size=4),
        )
    ),
    max_size=4,
)
COURSES = st.lists(
    st.dictionaries(st.sampled_from(["name", "repo", "access", "limits", "title", "x"]), SCALARS, max_size=4),
    max_size=2,
)


def check_settings(result: Settings) -> None:
    """Whatever a config says, course names stay single path components and homes absolute."""
    for course in result.courses:
        assert (Path("/state/courses") / course.name).parent == Path("/state/courses")
    assert result.sandbox.home_root.is_absolute()
    assert (
        result.database.url is None
        or "@" not in result.database.url.split("//", 1)[-1].split("@")[0]
        or (":" not in result.database.url.split("//", 1)[-1].split("@")[0])
    )


@MANY
@given(st.one_of(st.text(max_size=300), SECTIONS.map(yaml.safe_dump),
                 st.fixed_dictionaries({"courses": COURSES}).map(yaml.safe_dump)))  # fmt: skip
def test_config_text_gives_settings_or_a_config_error(text):
    try:
        result = parse_settings(text)
    except ConfigError as exc:
        assert str(exc)
        return
    check_settings(result)


@MANY
@given(st.binary(max_size=300))
def test_config_files_of_any_bytes_give_settings_or_a_config_error(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzz.yaml"
    path.write_bytes(data)
    try:
        result = load_settings(path)
    except ConfigError:
        return
    check_settings(result)


def spec_from(files: dict[str, bytes]) -> object:
    """read_spec on a fresh folder holding `files`."""
    folder = Path(tempfile.mkdtemp())
    try:
        for name, body in files.items():
            (folder / name).write_bytes(body)
        return read_spec(folder)
    finally:
        shutil.rmtree(folder)


def settings_file(data: bytes) -> Settings:
    """load_settings on a file holding `data`."""
    with tempfile.NamedTemporaryFile(suffix=".yaml") as file:
        file.write(data)
        file.flush()
        return load_settings(Path(file.name))


@pytest.mark.parametrize(
    ("parse", "raw", "error", "words"),
    [
        (parse_course_name, "demo\n", LinkError, "not a course name"),
        (parse_course_name, "../etc", LinkError, "not a course name"),
        (parse_path, "a/../../x", LinkError, ".."),
        (parse_path, "a\x00b", LinkError, "control characters"),
        (parse_settings, "hub: [1", ConfigError, "not valid YAML"),
        (parse_settings, "courses: 3", ConfigError, "courses"),
        (settings_file, b"\xff", ConfigError, "not UTF-8"),
        (spec_from, {"environment.yml": b"- a list"}, EnvironmentBuildError, "mapping"),
        (spec_from, {"environment.yml": b"\xff\xfe"}, EnvironmentBuildError, "environment.yml"),
    ],
)
def test_the_errors_the_properties_allow_are_the_ones_hostile_input_gets(parse, raw, error, words):
    """The properties above let exactly these errors through: each parser must raise them, with a message."""
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the type is the assertion below
        parse(raw)
    assert type(caught.value) is error and isinstance(caught.value, CoursehubError), repr(caught.value)
    assert words in str(caught.value)
