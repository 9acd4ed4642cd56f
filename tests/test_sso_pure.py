"""auth settings -> traitlets config, secrets, LTI mapping and CAS answers, without a hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from traitlets.config import Config

from coursehub.auth.cas import parse_service_response
from coursehub.auth.lti_mapping import map_launch, role_names
from coursehub.auth.sso import github_team_groups
from coursehub.errors import ConfigError
from coursehub.hubconfig import build
from coursehub.hubconfig.auth import apply_auth
from coursehub.hubconfig.runtime import Runtime
from coursehub.paths import StatePaths
from coursehub.settings import Settings
from coursehub.settings.auth import resolve_secret
from coursehub.settings.yamlfile import dump_settings

OAUTH = {"client_id": "hub", "client_secret": "env:SECRET"}
RUNTIME = Runtime(paths=StatePaths(Path("/srv/ch")), proxy_command="chp", python="py", user_env=Path("/e"))


def configured(auth: dict, **hub) -> Config:
    """The Config for this auth section, with secrets 'resolved' to a visible stand-in."""
    settings = Settings.model_validate({"auth": auth, "hub": {"admin_users": ["root"], **hub}})
    c = Config()
    apply_auth(settings, RUNTIME, c, secrets=lambda ref, where: f"<{ref}>")
    return c


def test_default_and_legacy_type_still_work():
    assert Settings().auth.type == "workshop"
    c = configured({"type": "dummy"})
    assert c.JupyterHub.authenticator_class == "dummy" and c.Authenticator.allow_all is True
    c = configured({"type": "some.module.Authenticator"})
    assert c.JupyterHub.authenticator_class == "some.module.Authenticator"


def test_the_one_section_given_chooses_the_provider():
    assert Settings.model_validate({"auth": {"tmp": {}}}).auth.type == "tmp"
    with pytest.raises(ValidationError, match="no auth.cas section"):
        Settings.model_validate({"auth": {"type": "cas"}})
    # Before the sub-sections: oauthenticator's entry point, its traits in `jupyterhub:`.
    c = configured({"type": "github"})
    assert c.JupyterHub.authenticator_class == "github" and "GitHubOAuthenticator" not in c
    with pytest.raises(ValidationError, match="choose one with auth.type"):
        Settings.model_validate({"auth": {"tmp": {}, "github": OAUTH}})


@pytest.mark.parametrize("value", ["hunter2", "env:", "env:1X", "file:relative", "file:/"])
def test_secrets_in_plain_text_are_refused(value):
    with pytest.raises(ValidationError, match="never written in coursehub.yaml"):
        Settings.model_validate({"auth": {"github": {**OAUTH, "client_secret": value}}})


def test_secret_files_must_be_0600(tmp_path, monkeypatch):
    path = tmp_path / "s"
    path.write_text("value\n")
    os.chmod(path, 0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        resolve_secret(f"file:{path}")
    os.chmod(path, 0o600)
    assert resolve_secret(f"file:{path}") == "value"
    monkeypatch.setenv("HUB_SECRET", "from-env")
    assert resolve_secret("env:HUB_SECRET") == "from-env"
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE is not set"):
        resolve_secret("env:NOT_SET_ANYWHERE")


def test_github_orgs_teams_and_enterprise_url():
    c = configured(
        {
            "github": {
                **OAUTH,
                "url": "https://github.uni.example/",
                "allowed_organizations": ["physics", "physics:tas"],
                "teams_as_groups": True,
                "admin_teams": ["physics:staff"],
                "admin_users": ["prof"],
            }
        },
        public_url="https://hub.uni.example",
    )
    gh = c.GitHubOAuthenticator
    assert c.JupyterHub.authenticator_class == "oauthenticator.github.GitHubOAuthenticator"
    assert gh.client_secret == "<env:SECRET>"
    assert gh.oauth_callback_url == "https://hub.uni.example/hub/oauth_callback"
    assert gh.github_url == "https://github.uni.example"
    assert gh.allowed_organizations == {"physics", "physics:tas"}
    assert gh.manage_groups is True and gh.admin_groups == {"physics:staff"}
    assert gh.admin_users == {"root", "prof"}
    assert "read:org" in gh.scope
    teams = [{"slug": "tas", "organization": {"login": "physics"}}, {"slug": "x"}]
    assert (
        gh.auth_state_groups_key({"teams": teams}) == ["physics:tas"] == github_team_groups({"teams": teams})
    )


def test_google_domains_and_cilogon_idps():
    g = configured({"google": {**OAUTH, "hosted_domains": ["uni.example"]}}).GoogleOAuthenticator
    assert g.hosted_domain == ["uni.example"] and g.strip_domain is True and g.allow_all is True
    only = configured({"google": {**OAUTH, "hosted_domains": ["u.example"], "allowed_users": ["ann"]}})
    assert only.GoogleOAuthenticator.allow_all is False
    idp = "https://idp.uni.example/shibboleth"
    ci = configured(
        {"cilogon": {**OAUTH, "idps": {idp: {"username_claim": "eppn", "strip_domain": "uni.example"}}}}
    ).CILogonOAuthenticator
    assert ci.allowed_idps == {
        idp: {
            "username_derivation": {
                "username_claim": "eppn",
                "action": "strip_idp_domain",
                "domain": "uni.example",
            },
            "allow_all": False,
        }
    }


def test_the_default_admin_name_is_not_an_admin_under_a_provider():
    settings = Settings.model_validate(
        {"auth": {"lti13": {"issuer": "i", "client_ids": ["c"], "authorize_url": "a", "jwks_url": "j"}}}
    )
    c = Config()
    apply_auth(settings, RUNTIME, c)
    assert c.Authenticator.admin_users == set()
    c = configured({"oidc": {**OAUTH, "authorize_url": "a", "token_url": "t", "userdata_url": "u"}})
    assert c.GenericOAuthenticator.admin_users == {"root"}  # hub.admin_users given by name: kept


def test_groups_need_a_claim():
    with pytest.raises(ValidationError, match="need groups_claim"):
        Settings.model_validate({"auth": {"cas": {"server_url": "https://cas", "allowed_groups": ["x"]}}})


def test_the_configured_classes_import():
    from coursehub.hub.authenticator import resolve_authenticator, with_coursehub
    from coursehub.hubconfig.auth import CLASSES

    for name, path in CLASSES.items():
        if name != "dummy":
            cls = with_coursehub(resolve_authenticator(path))
            assert callable(cls.get_handlers), name


def test_config_show_masks_passthrough_secrets():
    settings = Settings.model_validate(
        {
            "auth": {"github": OAUTH},
            "jupyterhub": {"GitHubOAuthenticator": {"client_secret": "hunter2", "scope": ["x"]}},
        }
    )
    shown = dump_settings(settings)
    assert "hunter2" not in shown and "********" in shown and "env:SECRET" in shown
    assert "lti13" not in shown  # unused provider sections are not shown


def test_lti_mapping():
    contexts = {"ctx-1": "bio101", "BIO": "bio102"}
    target = map_launch(contexts, "ctx-1", "", {"notebook": "w1/a.ipynb"}, ["x#Learner"])
    assert (target.course, target.notebook, target.instructor) == ("bio101", "w1/a.ipynb", False)
    assert target.url("/hub/") == "/hub/launch/bio101?path=w1%2Fa.ipynb"
    assert (
        map_launch(contexts, "?", "?", {"course": "Bad Name"}, [], param_courses=["Bad Name"]).course is None
    )
    assert map_launch({}, "", "", {}, []).url("/hub/") == "/hub/home"
    teacher = map_launch(
        contexts, "ctx-1", "", {}, ["urn:lti:role:ims/lis/Instructor"], instructor_roles=["Instructor"]
    )
    assert teacher.groups() == ["lti-bio101", "instructors", "lti-bio101-instructors", "lti-bio101-staff"]
    # A TA is the course's staff (its staff role), not an instructor (never admin).
    ta = map_launch(contexts, "ctx-1", "", {}, [MEMBERSHIP.rstrip("#") + "/Instructor#TeachingAssistant"])
    assert (ta.instructor, ta.staff) == (False, True)
    assert ta.groups() == ["lti-bio101", "lti-bio101-staff"]
    assert "TeachingAssistant" in role_names(
        ["http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant"]
    )


INSTITUTION = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#"
SYSTEM = "http://purl.imsglobal.org/vocab/lis/v2/system/person#"
MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership#"


@pytest.mark.parametrize(
    "role",
    [
        INSTITUTION + "Instructor",
        SYSTEM + "Administrator",
        INSTITUTION + "Administrator",
        "urn:lti:instrole:ims/lis/Instructor",
        "urn:lti:sysrole:ims/lis/Administrator",
        "https://lms.example/roles#Instructor",
    ],
)
def test_only_context_membership_roles_make_an_instructor(role):
    roles = ["Instructor", "Administrator", "TeachingAssistant"]
    target = map_launch({"c": "bio101"}, "c", "", {}, [role, MEMBERSHIP + "Learner"], instructor_roles=roles)
    assert not target.instructor and not target.staff
    for context_role in [MEMBERSHIP + "Instructor", "urn:lti:role:ims/lis/Instructor", "Instructor"]:
        assert map_launch({"c": "bio101"}, "c", "", {}, [context_role], instructor_roles=roles).instructor


def test_courses_come_from_the_context_id_unless_allowed_otherwise():
    contexts = {"ctx-1": "bio101"}
    # A context label or a custom parameter is set by whoever runs a course in the LMS: never trusted alone.
    assert map_launch(contexts, "ctx-9", "ctx-1", {}, []).course is None
    assert map_launch(contexts, "ctx-9", "", {"course": "bio101"}, []).course is None
    assert map_launch(contexts, "ctx-9", "BIO", {}, [], label_contexts={"BIO": "bio102"}).course == "bio102"
    picked = map_launch(contexts, "ctx-9", "", {"course": "demo"}, [], param_courses=["demo"])
    assert picked.course == "demo"
    assert map_launch(contexts, "ctx-9", "", {"course": "bio101"}, [], param_courses=["demo"]).course is None
    # The context id wins over everything else.
    assert (
        map_launch(contexts, "ctx-1", "", {"course": "demo"}, [], param_courses=["demo"]).course == "bio101"
    )


def test_cas_answers():
    ns = 'xmlns:cas="http://www.yale.edu/tp/cas"'
    ok = (
        f"<cas:serviceResponse {ns}><cas:authenticationSuccess><cas:user>ann</cas:user><cas:attributes>"
        "<cas:memberOf>a</cas:memberOf><cas:memberOf>b</cas:memberOf></cas:attributes>"
        "</cas:authenticationSuccess></cas:serviceResponse>"
    )
    assert parse_service_response(ok) == ("ann", {"memberOf": ["a", "b"]})
    bad = (
        f'<cas:serviceResponse {ns}><cas:authenticationFailure code="INVALID_TICKET"/></cas:serviceResponse>'
    )
    assert parse_service_response(bad) is None
    assert parse_service_response("<html>not CAS") is None


def test_kubernetes_render_says_what_the_hub_pod_needs():
    from coursehub.kubernetes.values import render_notices

    settings = Settings.model_validate({"auth": {"lti11": {"consumers": {"k": "file:/etc/lti.secret"}}}})
    (notice,) = [n for n in render_notices(settings) if n.startswith("auth.lti11")]
    assert "coursehub[sso]" in notice and "file:/etc/lti.secret" in notice
    assert not [n for n in render_notices(Settings()) if n.startswith("auth.")]


@pytest.mark.parametrize(
    "auth",
    [{"type": "github"}, {"type": "dummy"}, {"type": "nativeauthenticator.NativeAuthenticator"}, {"tmp": {}}],
)
def test_nobody_is_admin_by_default_under_any_authenticator_but_workshop(auth):
    # Under these, anyone can become the user called 'admin' (sign up, pick the name, own the account).
    c = build(Settings.model_validate({"auth": auth}), RUNTIME)
    assert not c.Authenticator.admin_users
    assert build(Settings(), RUNTIME).Authenticator.admin_users == {"admin"}  # the workshop admin account
    explicit = Settings.model_validate({"auth": auth, "hub": {"admin_users": ["prof"]}})
    assert build(explicit, RUNTIME).Authenticator.admin_users == {"prof"}


@pytest.mark.parametrize("url", ["http://cas.uni.example/cas", "ftp://cas", "cas.uni.example/cas"])
def test_a_cas_server_without_https_is_refused(url):
    with pytest.raises(ValidationError, match="https"):
        Settings.model_validate({"auth": {"cas": {"server_url": url}}, "hub": {"public_url": "https://h"}})


def test_cas_needs_the_public_url_and_builds_its_service_from_it():
    with pytest.raises(ValidationError, match="hub.public_url"):
        Settings.model_validate({"auth": {"cas": {"server_url": "https://cas.uni.example/cas"}}})
    c = configured(
        {"cas": {"server_url": "https://cas.uni.example/cas"}}, public_url="https://hub.uni.example/"
    )
    assert c.CASAuthenticator.cas_service_url == "https://hub.uni.example/hub/cas/login"
