"""Origins as data: the hub's origin, subdomain_host, chart values, the loopback resolver, cookies."""

from __future__ import annotations

import http.cookiejar
import socket

import pytest
from traitlets.config import Config

from coursehub.clients.loopback import BrowserCookieJar, is_localhost_name, resolve_localhost_names
from coursehub.errors import ConfigError, CoursehubError
from coursehub.hubconfig.origins import hub_origin, shared_origin_warning, subdomain_host
from coursehub.hubconfig.security import apply_origins
from coursehub.kubernetes.values import build_values, render_notices
from coursehub.settings import Settings


def settings(**hub) -> Settings:
    return Settings.model_validate({"hub": hub})


def test_default_hub_has_an_origin_per_user_on_localhost():
    for s in (settings(), settings(port=8123, subdomains=True)):
        port = s.hub.port
        assert hub_origin(s) == subdomain_host(s) == f"http://localhost:{port}"
        assert shared_origin_warning(s) == ""
        c = Config()
        apply_origins(s, c)
        assert c.JupyterHub.subdomain_host == f"http://localhost:{port}"
        assert c.JupyterHub.public_url == f"http://localhost:{port}/"
        assert "cookie_host_prefix_enabled" not in c.JupyterHub  # __Host- cookies need HTTPS


def test_subdomains_off_share_one_origin_and_up_warns():
    for s in (settings(subdomains=False), settings(subdomains=False, ip="10.1.2.3")):
        assert subdomain_host(s) == ""
        assert hub_origin(s) == f"http://{'127.0.0.1' if s.hub.ip == '127.0.0.1' else '10.1.2.3'}:8000"
        assert "hub.subdomains is off" in shared_origin_warning(s)
        c = Config()
        apply_origins(s, c)
        assert "subdomain_host" not in c.JupyterHub


def test_subdomains_on_a_domain_over_https_use_host_prefixed_cookies():
    s = settings(subdomains=True, ip="0.0.0.0", public_url="https://hub.example.org/")
    assert subdomain_host(s) == "https://hub.example.org"
    c = Config()
    apply_origins(s, c)
    assert c.JupyterHub.cookie_host_prefix_enabled is True


ADDRESSES = [
    {"ip": "10.1.2.3"},  # reached by a network address: no name to hang users on
    {"ip": "0.0.0.0"},  # every interface: users on the network come by an address
    {"ip": "::"},
    {"ip": "0.0.0.0", "public_url": "http://10.1.2.3:8000/"},
    {"public_url": "https://[2001:db8::1]/"},
]


@pytest.mark.parametrize("explicit", [False, True], ids=["default", "subdomains-true"])
@pytest.mark.parametrize("hub", ADDRESSES)
def test_subdomains_refuse_ip_addresses_and_say_what_to_set(hub, explicit):
    s = settings(**hub, **({"subdomains": True} if explicit else {}))
    with pytest.raises(CoursehubError) as info:
        subdomain_host(s)
    message = str(info.value)
    assert "hub.public_url" in message and "wildcard DNS" in message and "hub.subdomains: false" in message
    with pytest.raises(CoursehubError, match="hub.subdomains: false"):
        preflight_origins(s)
    # Said explicitly, the shared origin is the admin's choice: `up` starts with its warning.
    off = settings(**hub, subdomains=False)
    assert subdomain_host(off) == "" and "hub.subdomains is off" in shared_origin_warning(off)


def preflight_origins(s: Settings) -> None:
    """`config check` builds the hub's config as `up` does: the same refusal."""
    from coursehub.hubconfig.pipeline import check

    check(s)


def test_config_check_refuses_a_network_address_without_a_host_name(tmp_path):
    from click.testing import CliRunner

    from coursehub.cli import main

    path = tmp_path / "coursehub.yaml"
    path.write_text(f"hub: {{ip: 0.0.0.0, state_dir: {tmp_path}}}\n")
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code != 0
    assert "hub.public_url" in result.output and "hub.subdomains: false" in result.output
    path.write_text(f"hub: {{ip: 0.0.0.0, subdomains: false, state_dir: {tmp_path}}}\n")
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output


def test_up_on_a_network_address_refuses_to_start_and_says_what_to_set(tmp_path):
    from click.testing import CliRunner

    from coursehub.cli import main

    path = tmp_path / "coursehub.yaml"
    path.write_text(f"hub: {{state_dir: {tmp_path / 'state'}}}\n")
    # The refusal comes from up's preflight, before anything starts.
    result = CliRunner().invoke(main, ["--config", str(path), "up", "--ip", "0.0.0.0"])
    assert result.exit_code != 0
    assert "cannot start the hub" in result.output and "hub.ip is 0.0.0.0" in result.output
    assert "hub.public_url" in result.output and "hub.subdomains: false" in result.output
    assert not (tmp_path / "state" / "hub.pid").exists()


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


def test_chart_values_without_a_host_name_share_one_origin_with_a_notice():
    """A chart behind a load balancer's address has no name for users' hosts: the default renders without."""
    default = kube_settings()
    assert "subdomain_host" not in build_values(default)["hub"]["config"]["JupyterHub"]
    (notice,) = [n for n in render_notices(default) if "hub.subdomains" in n]
    assert "is off" in notice and "hub.public_url or kubernetes.ingress.host" in notice
    off = kube_settings(hub={"subdomains": False})
    assert "subdomain_host" not in build_values(off)["hub"]["config"]["JupyterHub"]
    assert not [n for n in render_notices(off) if "hub.subdomains" in n]
    # Asked for explicitly, subdomains without a name are an error that says what to set.
    with pytest.raises(ConfigError, match="public_url or kubernetes.ingress.host"):
        build_values(kube_settings(hub={"subdomains": True}))
    with pytest.raises(ConfigError, match="hub.subdomains: false"):
        build_values(kube_settings(hub={"public_url": "http://203.0.113.7/"}))


def test_chart_values_with_a_host_name_have_subdomains_by_default():
    values = build_values(kube_settings(hub={"public_url": "https://hub.example.org/"}))
    assert values["hub"]["config"]["JupyterHub"]["subdomain_host"] == "https://hub.example.org"


def test_localhost_names_resolve_to_loopback():
    assert is_localhost_name("alice.localhost") and is_localhost_name(b"x.LOCALHOST.")
    assert not is_localhost_name("localhost.example.org") and not is_localhost_name("evil-localhost")
    resolve_localhost_names()
    resolve_localhost_names()  # idempotent
    addresses = {info[4][0] for info in socket.getaddrinfo("alice.localhost", 80)}
    assert addresses and addresses <= {"127.0.0.1", "::1"}


def test_cookies_for_domain_localhost_return_to_localhost():
    jar = BrowserCookieJar()
    cookie = http.cookiejar.Cookie(
        0, "jupyterhub-session-id", "abc", None, False, ".localhost", True, True, "/", True,
        False, None, False, None, None, {},
    )  # fmt: skip
    jar.set_cookie(cookie)
    domains = {c.domain for c in jar}
    assert domains == {".localhost", "localhost.local"}
    import urllib.request

    request = urllib.request.Request("http://localhost:8000/hub/api/user")
    jar.add_cookie_header(request)
    assert "jupyterhub-session-id=abc" in request.get_header("Cookie")
    jar.clear(".localhost", "/", "jupyterhub-session-id")  # a cookie the hub deletes goes entirely
    assert list(jar) == []


def test_hub_pages_let_the_login_form_land_on_users_hosts_with_subdomains():
    from coursehub.hubconfig.security import apply_security

    c = Config()
    apply_security(settings(subdomains=True, port=8123), None, c)
    policy = c.JupyterHub.tornado_settings["headers"]["Content-Security-Policy"]
    assert "form-action 'self' http://*.localhost:8123;" in policy
    c = Config()
    apply_security(settings(subdomains=False), None, c)
    assert "form-action 'self';" in c.JupyterHub.tornado_settings["headers"]["Content-Security-Policy"]


def test_secure_cookies_of_localhost_go_back_over_http_as_in_browsers():
    def cookie(domain: str) -> http.cookiejar.Cookie:
        return http.cookiejar.Cookie(
            0, "lti13-state", "s", None, False, domain, False, False, "/", True,
            True, None, False, None, None, {},
        )  # fmt: skip

    jar = BrowserCookieJar()
    for domain in ("localhost.local", "alice.localhost", "hub.example.org"):
        jar.set_cookie(cookie(domain))
    assert {c.domain: c.secure for c in jar} == {
        "localhost.local": False,
        "alice.localhost": False,
        "hub.example.org": True,  # elsewhere Secure still means https only
    }
