"""Binder request parsing, limits, settings and hub config: pure, no hub."""

from __future__ import annotations

import os
import posixpath
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from traitlets.config import Config

from coursehub.hubconfig.binder import apply_binder
from coursehub.hubconfig.runtime import Runtime
from coursehub.hubconfig.services import Backend, hub_services
from coursehub.launch.binder.limits import (
    RateLimiter,
    origin_allowed,
    quota_refusal,
    server_cors_args,
)
from coursehub.launch.binder.spec import (
    BinderSpecError,
    course_repo_url,
    parse_build_path,
    parse_urlpath,
)
from coursehub.names import BINDER_CULLER, BINDER_GROUP
from coursehub.paths import StatePaths
from coursehub.settings import Settings


@pytest.mark.parametrize(
    ("provider", "spec", "repo", "ref"),
    [
        ("gh", "Jupyter/Notebook/main", "https://github.com/jupyter/notebook", "main"),
        ("gh", "org/repo.git/v1.0", "https://github.com/org/repo", "v1.0"),
        ("gl", "group%2Fsub%2Fproject/HEAD", "https://gitlab.com/group/sub/project", "HEAD"),
        (
            "git",
            quote("https://git.example.org/a/b.git", safe="") + "/abc1234",
            "https://git.example.org/a/b",
            "abc1234",
        ),  # noqa: E501
        (
            "git",
            quote("git://127.0.0.1:9418/bio101", safe="") + "/HEAD",
            "git://127.0.0.1:9418/bio101",
            "HEAD",
        ),  # noqa: E501
        ("git", quote("https://h.org/a/b", safe="") + "/feature%2Fx", "https://h.org/a/b", "feature/x"),
    ],
)
def test_specs_as_thebe_and_jupyter_book_send_them(provider, spec, repo, ref):
    parsed = parse_build_path(provider, spec)
    assert (parsed.repo_url, parsed.ref) == (repo, ref)
    assert parsed.request == f"v2/{provider}/{spec}"


@pytest.mark.parametrize(
    ("provider", "spec", "text"),
    [
        ("gist", "a/b/HEAD", "unknown provider"),
        ("gh", "onlyrepo", "needs a repository and a ref"),
        ("gh", "a/b/c/HEAD", "<owner>/<repo>/<ref>"),
        ("gh", "../b/HEAD", "<owner>/<repo>/<ref>"),
        ("gh", "a/b/-upload-pack", "not a valid git ref"),
        ("gh", "a/b/x..y", "not a valid git ref"),
        ("gl", "nogroup/HEAD", "gl spec"),
        ("git", quote("file:///etc/passwd", safe="") + "/HEAD", "must be a"),
        ("git", quote("ext::sh -c touch% /tmp/x", safe="") + "/HEAD", "spaces"),
        ("git", quote("https://user:pw@h.org/a", safe="") + "/HEAD", "credentials"),
        ("git", quote("https://h.org/a/../../b", safe="") + "/HEAD", "plain path"),
        ("git", "%00/HEAD", "control characters"),
        ("gh", "a/b/" + "x" * 1200, "too long"),
    ],
)
def test_malformed_specs_get_a_clear_error(provider, spec, text):
    with pytest.raises(BinderSpecError, match=text):
        parse_build_path(provider, spec)


def test_course_repos_match_specs_however_they_are_written():
    spec = parse_build_path("gh", "Org/Bio101/HEAD")
    assert course_repo_url("https://github.com/org/bio101.git/") == spec.repo_url
    assert course_repo_url("/srv/local/folder") is None


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ({"urlpath": "lab/tree/week1/intro.ipynb"}, "lab/tree/week1/intro.ipynb"),
        ({"urlpath": "/lab/tree/a b.ipynb"}, "lab/tree/a%20b.ipynb"),
        ({"labpath": "week1/intro.ipynb"}, "lab/tree/week1/intro.ipynb"),
        ({"filepath": "data/values.csv"}, "tree/data/values.csv"),
        ({}, ""),
    ],
)
def test_urlpath_and_legacy_labpath_filepath(query, path):
    assert parse_urlpath(query) == path


@pytest.mark.parametrize(
    "urlpath", ["../../hub/admin", "lab/../../x", "https://evil.example/", "lab?next=x", "a\\b", "a\x00"]
)
def test_urlpaths_that_could_leave_the_server_are_refused(urlpath):
    with pytest.raises(BinderSpecError):
        parse_urlpath({"urlpath": urlpath})


SERVER = "/user/bnd-1/book/"
PIECES = st.sampled_from(
    ["gh", "gl", "git", "a", "..", ".", "/", "%2F", "%2E%2E", "%00", "-", "HEAD", "main", ".git", "@{", "~",
     "https:", "//", "git:", "file:", "h.org", ":22", "?", "#", "%", "\\", " ", "ext::", "user@", "x" * 50]
)  # fmt: skip
WORDS = st.lists(PIECES, min_size=1, max_size=3).map("".join)
SPECS = st.one_of(
    st.text(max_size=120),
    st.lists(PIECES, max_size=12).map("".join),
    st.lists(WORDS, min_size=2, max_size=5).map("/".join),  # gh/gl-shaped
    st.builds(lambda url, ref: f"{quote(url, safe='')}/{ref}", WORDS.map("https://h.org/{}".format), WORDS),
)


EXAMPLES = int(os.environ.get("COURSEHUB_FUZZ_EXAMPLES", "500"))  # 10,000 under ./run reliability


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(provider=st.one_of(st.sampled_from(["gh", "gl", "git"]), st.text(max_size=8)), spec=SPECS, path=SPECS)
def test_fuzz_specs_and_urlpaths_fail_only_with_our_error_and_never_escape(provider, spec, path):
    try:
        parsed = parse_build_path(provider, spec)
    except BinderSpecError:
        pass
    else:
        event("spec parsed")
        # A parsed repository is always a remote URL with a plain path, and the ref no option.
        assert parsed.repo_url.split("://")[0] in ("https", "http", "git")
        assert ".." not in parsed.repo_url.split("/") and not parsed.ref.startswith("-")
        assert not any(ord(ch) < 32 for ch in parsed.repo_url + parsed.ref)
    try:
        urlpath = parse_urlpath({"urlpath": path})
    except BinderSpecError:
        return
    event("urlpath parsed")
    # The target stays inside the server's URL space, however the path was written.
    target = posixpath.normpath(unquote(SERVER + urlpath))
    assert (target + "/").startswith(SERVER), target


def test_rate_limiter_counts_per_client_in_a_sliding_minute():
    limiter = RateLimiter(2)
    assert limiter.allow("a", 0) and limiter.allow("a", 1) and not limiter.allow("a", 2)
    assert limiter.allow("b", 2)  # another client
    assert limiter.allow("a", 61)  # the first has left the window


def test_quotas_per_repository_and_in_total():
    assert quota_refusal({}, "book", 2, 3) == ""
    assert "maximum of 2" in quota_refusal({"book": 2}, "book", 2, 3)
    assert quota_refusal({"book": 2}, "other", 2, 3) == ""
    assert "maximum of 3 anonymous servers" in quota_refusal({"book": 1, "other": 2}, "x", 5, 3)


def test_cors_is_closed_by_default_and_exact_when_configured():
    assert not origin_allowed("https://book.example.org", [])
    assert server_cors_args([]) == []
    assert origin_allowed("https://book.example.org", ["https://book.example.org"])
    assert not origin_allowed("https://book.example.org.evil.com", ["https://book.example.org"])
    (arg,) = server_cors_args(["https://book.example.org", "http://127.0.0.1:8080"])
    assert arg == r"--ServerApp.allow_origin_pat=^(https://book\.example\.org|http://127\.0\.0\.1:8080)$"
    assert server_cors_args(["*"]) == ["--ServerApp.allow_origin=*"]


def test_binder_settings_reject_paths_in_origins_and_parse_sizes():
    assert Settings(binder={"memory": "256M"}).binder.memory == 256 * 1024**2
    with pytest.raises(ValidationError, match="is not an origin"):
        Settings(binder={"allowed_origins": ["https://book.example.org/path"]})
    assert Settings().binder.idle_timeout == 600 and Settings().binder.allowed_origins == []


def runtime(tmp_path) -> Runtime:
    return Runtime(paths=StatePaths(tmp_path), proxy_command="chp", python="/py", user_env=tmp_path / "env")


def test_apply_binder_hands_settings_to_the_handlers_and_its_culler_sees_only_its_group(tmp_path):
    settings = Settings(binder={"idle_timeout": 300, "max_age": 900})
    c = Config()
    apply_binder(settings, runtime(tmp_path), c)
    assert c.Authenticator.binder["idle_timeout"] == 300
    assert c.Authenticator.binder["state_dir"] == str(tmp_path)
    services, roles = hub_services(settings, Backend(python="/py"))
    (culler,) = [s for s in services if s["name"] == BINDER_CULLER]
    assert "--timeout=300" in culler["command"] and "--max-age=900" in culler["command"]
    (role,) = [r for r in roles if r["name"] == BINDER_CULLER]
    assert role["scopes"] and all(scope.endswith(f"!group={BINDER_GROUP}") for scope in role["scopes"])


def test_disabled_binder_registers_nothing(tmp_path):
    settings = Settings(binder={"enabled": False})
    c = Config()
    apply_binder(settings, runtime(tmp_path), c)
    assert c.Authenticator.binder == {} and "services" not in c.JupyterHub
    services, _ = hub_services(settings, Backend(python="/py"))
    assert BINDER_CULLER not in {s["name"] for s in services}
