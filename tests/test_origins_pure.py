"""Origins as data: the hub's origin, subdomain_host, chart values, the loopback resolver, cookies."""

from __future__ import annotations

import http.cookiejar
import socket

import pytest
from traitlets.config import Config

from coursehub.clients.loopback import is_localhost_name, resolve_localhost_names, share_localhost_cookies
from coursehub.errors import ConfigError, CoursehubError
from coursehub.hubconfig.origins import hub_origin, shared_origin_warning, subdomain_host
from coursehub.hubconfig.security import apply_origins
from coursehub.kubernetes.values import build_values, render_notices
from coursehub.settings import Settings


def settings(**hub) -> Settings:
    return Settings.model_validate({"hub": hub})


def test_default_hub_shares_one_origin_and_up_warns():
    s = settings()
    assert subdomain_host(s) == "" and hub_origin(s) == "http://127.0.0.1:8000"
    assert "hub.subdomains is off" in shared_origin_warning(s)
    c = Config()
    apply_origins(s, c)
    assert "subdomain_host" not in c.JupyterHub


def test_subdomains_on_this_machine_use_localhost():
    s = settings(subdomains=True, port=8123)
    assert hub_origin(s) == subdomain_host(s) == "http://localhost:8123"
    assert shared_origin_warning(s) == ""
    c = Config()
    apply_origins(s, c)
    assert c.JupyterHub.subdomain_host == "http://localhost:8123"
    assert c.JupyterHub.public_url == "http://localhost:8123/"
    assert "cookie_host_prefix_enabled" not in c.JupyterHub  # __Host- cookies need HTTPS


def test_subdomains_on_a_domain_over_https_use_host_prefixed_cookies():
    s = settings(subdomains=True, ip="0.0.0.0", public_url="https://hub.example.org/")
    assert subdomain_host(s) == "https://hub.example.org"
    c = Config()
    apply_origins(s, c)
    assert c.JupyterHub.cookie_host_prefix_enabled is True


@pytest.mark.parametrize(
    "hub",
    [
        {"subdomains": True, "ip": "10.1.2.3"},  # reached by a network address: no name to hang users on
        {"subdomains": True, "public_url": "http://10.1.2.3:8000/"},
        {"subdomains": True, "public_url": "https://[2001:db8::1]/"},
    ],
)
def test_subdomains_refuse_ip_addresses(hub):
    with pytest.raises(CoursehubError, match="subdomains"):
        subdomain_host(settings(**hub))


def test_oauth_callback_is_on_the_hubs_origin_with_subdomains():
    from coursehub.hubconfig.auth import hub_url

    assert hub_url(settings(subdomains=True, port=9000), "oauth_callback") == (
        "http://localhost:9000/hub/oauth_callback"
    )


def kube_settings(**extra) -> Settings:
    return Settings.model_validate(
        {
            "courses": [
                {"name": "bio", "repo": "https://example.org/bio.git", "kubernetes": {"image": "x/y:1"}}
            ],
            **extra,
        }
    )


def test_chart_values_with_subdomains_and_an_ingress():
    s = kube_settings(
        hub={"subdomains": True},
        kubernetes={"ingress": {"host": "hub.example.org", "tls_secret": "hub-tls"}},
    )
    values = build_values(s)
    assert values["hub"]["config"]["JupyterHub"]["subdomain_host"] == "https://hub.example.org"
    assert values["hub"]["config"]["JupyterHub"]["cookie_host_prefix_enabled"] is True
    assert values["ingress"]["hosts"] == ["hub.example.org", "*.hub.example.org"]
    assert values["ingress"]["tls"][0]["hosts"] == ["hub.example.org", "*.hub.example.org"]
    assert any("wildcard DNS" in notice for notice in render_notices(s))


def test_chart_values_without_subdomains_are_unchanged_and_need_a_name_with_them():
    assert "subdomain_host" not in build_values(kube_settings())["hub"]["config"]["JupyterHub"]
    with pytest.raises(ConfigError, match="public_url or kubernetes.ingress.host"):
        build_values(kube_settings(hub={"subdomains": True}))


def test_localhost_names_resolve_to_loopback():
    assert is_localhost_name("alice.localhost") and is_localhost_name(b"x.LOCALHOST.")
    assert not is_localhost_name("localhost.example.org") and not is_localhost_name("evil-localhost")
    resolve_localhost_names()
    resolve_localhost_names()  # idempotent
    addresses = {info[4][0] for info in socket.getaddrinfo("alice.localhost", 80)}
    assert addresses and addresses <= {"127.0.0.1", "::1"}


def test_cookies_for_domain_localhost_return_to_localhost():
    jar = http.cookiejar.CookieJar()
    cookie = http.cookiejar.Cookie(
        0, "jupyterhub-session-id", "abc", None, False, ".localhost", True, True, "/", True,
        False, None, False, None, None, {},
    )  # fmt: skip
    jar.set_cookie(cookie)
    share_localhost_cookies(jar)
    domains = {c.domain for c in jar}
    assert domains == {".localhost", "localhost.local"}
    import urllib.request

    request = urllib.request.Request("http://localhost:8000/hub/api/user")
    jar.add_cookie_header(request)
    assert "jupyterhub-session-id=abc" in request.get_header("Cookie")


def test_hub_pages_let_the_login_form_land_on_users_hosts_with_subdomains():
    from coursehub.hubconfig.security import apply_security

    c = Config()
    apply_security(settings(subdomains=True, port=8123), None, c)
    policy = c.JupyterHub.tornado_settings["headers"]["Content-Security-Policy"]
    assert "form-action 'self' http://*.localhost:8123;" in policy
    c = Config()
    apply_security(settings(), None, c)
    assert "form-action 'self';" in c.JupyterHub.tornado_settings["headers"]["Content-Security-Policy"]
