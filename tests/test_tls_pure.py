"""HTTPS built in (issue 16, item 2), as data: the tls settings, the Caddyfile, the hub's ask answer."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from coursehub.host.caddyfile import FrontEnd, ask_url, certificate_warning, render
from coursehub.hub.tlsask import asked_user
from coursehub.hubconfig.auth import trusted_proxies
from coursehub.settings import Settings
from coursehub.settings.tls import LETS_ENCRYPT, LETS_ENCRYPT_STAGING

FRONT = FrontEnd(storage=Path("/var/lib/coursehub/caddy/data"), api_host="127.0.0.1", ask_key="k3y")


def settings(tls: dict, **hub) -> Settings:
    return Settings(hub={"public_url": "https://hub.example.org/", **hub}, tls=tls)


def error_of(**values) -> str:
    with pytest.raises(ValidationError) as info:
        Settings(**values)
    return str(info.value)


def test_off_by_default_and_the_local_default_needs_nothing():
    assert Settings().tls.mode == "off"
    assert trusted_proxies(Settings()) == []


@pytest.mark.parametrize(
    "values, says",
    [
        ({"tls": {"mode": "acme"}, "hub": {}}, "needs hub.public_url: https://<host name>/"),
        ({"tls": {"mode": "acme"}, "hub": {"public_url": "http://hub.example.org/"}}, "https://<host name>"),
        ({"tls": {"mode": "acme"}, "hub": {"public_url": "https://203.0.113.7/"}}, "IP address 203.0.113.7"),
        (
            {"tls": {"mode": "acme"}, "hub": {"public_url": "https://hub.example.org/", "ip": "0.0.0.0"}},
            "keep hub.ip: 127.0.0.1",
        ),
        (
            {"tls": {"mode": "acme"}, "hub": {"public_url": "https://hub.example.org:8000/"}},
            "port 8000 is also hub.port",
        ),
        ({"tls": {"mode": "files"}}, "needs tls.cert_file and tls.key_file"),
        ({"tls": {"mode": "acme", "email": "admin"}}, "not an e-mail address"),
        ({"tls": {"mode": "acme", "acme_directory": "http://acme.test/dir"}}, "not an https:// URL"),
        (
            {"tls": {"mode": "acme", "staging": True, "acme_directory": "https://a.test/d"}},
            "remove tls.staging",
        ),
        ({"tls": {"mode": "acme", "acme_ca_root": "/etc/ca.pem"}}, "set tls.acme_directory"),
        ({"tls": {"mode": "acme", "cert_file": "/etc/c.pem"}}, "tls.cert_file is for tls.mode files"),
        (
            {"tls": {"mode": "files", "cert_file": "/c.pem", "key_file": "/k.pem", "email": "a@b.org"}},
            "tls.email is for tls.mode acme",
        ),
        ({"tls": {"email": "a@b.org"}}, "tls.email is set but tls.mode is off"),
        ({"tls": {"mode": "files", "cert_file": "c.pem", "key_file": "/k.pem"}}, "must be an absolute path"),
        (
            {"tls": {"mode": "files", "cert_file": "/my certs/c.pem", "key_file": "/k.pem"}},
            "contains a space",
        ),
        ({"tls": {"mode": "acme", "email": "a{$HOME}@b.org"}}, "brace"),
    ],
)
def test_settings_refuse_what_cannot_work_and_say_what_to_change(values, says):
    hub = {"public_url": "https://hub.example.org/"} if "hub" not in values else {}
    values = {"hub": hub, **values}
    assert says in error_of(**values)


def test_acme_directories():
    assert settings({"mode": "acme"}).tls.directory() == LETS_ENCRYPT
    assert settings({"mode": "acme", "staging": True}).tls.directory() == LETS_ENCRYPT_STAGING
    own = settings({"mode": "acme", "acme_directory": "https://acme.test:14000/dir"})
    assert own.tls.directory() == "https://acme.test:14000/dir"


def test_the_front_end_is_a_trusted_proxy_when_tls_is_on():
    assert trusted_proxies(settings({"mode": "acme"})) == ["127.0.0.1/32"]
    both = settings({"mode": "acme"}, trusted_proxies=["10.0.0.0/8", "127.0.0.1"])
    assert trusted_proxies(both) == ["10.0.0.0/8", "127.0.0.1/32"]


def test_caddyfile_acme_with_subdomains_asks_the_hub_for_users_hosts():
    s = settings(
        {
            "mode": "acme",
            "email": "admin@example.org",
            "acme_directory": "https://127.0.0.1:14000/dir",
            "acme_ca_root": "/srv/pebble/ca.pem",
        },
        subdomains=True,
    )
    text = render(s, FRONT)
    assert "\tadmin off\n" in text  # no admin API on localhost:2019 for students' kernels to use
    assert "\tstorage file_system /var/lib/coursehub/caddy/data\n" in text
    assert "\thttp_port 80\n\thttps_port 443\n" in text
    assert "ask http://127.0.0.1:8081/hub/coursehub/tls-ask?key=k3y" in text
    hub_site = text.split("https://hub.example.org:443 {")[1].split("\n}")[0]
    users_site = text.split("https://*.hub.example.org:443 {")[1].split("\n}")[0]
    assert "on_demand" not in hub_site and "\t\ton_demand\n" in users_site
    for block in (hub_site, users_site):
        assert "dir https://127.0.0.1:14000/dir" in block
        assert "trusted_roots /srv/pebble/ca.pem" in block
        assert "email admin@example.org" in block
        assert 'Strict-Transport-Security "max-age=31536000; includeSubDomains"' in block
        assert "reverse_proxy 127.0.0.1:8000 {" in block
        assert 'header_down Set-Cookie "^(.*?)(; *[Ss]ecure)?$" "$1; Secure"' in block
    assert (
        "http://hub.example.org:80, http://*.hub.example.org:80 {\n\tredir https://{host}{uri} 308\n}" in text
    )


def test_caddyfile_without_subdomains_has_one_site_and_no_on_demand():
    text = render(settings({"mode": "acme", "staging": True, "hsts_max_age": 0}, subdomains=False), FRONT)
    assert "on_demand" not in text and "*." not in text
    assert f"dir {LETS_ENCRYPT_STAGING}" in text
    assert "Strict-Transport-Security" not in text
    assert "trusted_roots" not in text and "email" not in text


def test_caddyfile_files_mode_serves_the_admins_wildcard_certificate():
    s = settings(
        {"mode": "files", "cert_file": "/etc/ssl/hub.pem", "key_file": "/etc/ssl/hub.key", "http_port": 8080},
        public_url="https://hub.example.org:8443/",
        subdomains=True,
    )
    text = render(s, FRONT)
    assert text.count("\ttls /etc/ssl/hub.pem /etc/ssl/hub.key\n") == 2
    assert "on_demand" not in text and "acme" not in text
    assert "https://hub.example.org:8443 {" in text and "https://*.hub.example.org:8443 {" in text
    assert "redir https://{host}:8443{uri} 308" in text
    assert "http://hub.example.org:8080, http://*.hub.example.org:8080 {" in text


def test_ask_url_follows_the_hubs_api_address():
    s = settings({"mode": "acme"}, api_port=9081, subdomains=True)
    gateway = FrontEnd(storage=FRONT.storage, api_host="10.217.0.1", ask_key="x")
    assert ask_url(s, gateway) == "http://10.217.0.1:9081/hub/coursehub/tls-ask?key=x"


@pytest.mark.parametrize(
    "domain, expected",
    [
        ("hub.example.org", ""),
        ("HUB.example.org.", ""),
        ("alice.hub.example.org", "alice"),
        ("a.b.hub.example.org", None),  # users' hosts are one label deep
        (".hub.example.org", None),
        ("hub.example.org.evil.test", None),
        ("alicehub.example.org", None),
        ("example.org", None),
        ("", None),
    ],
)
def test_the_ask_answers_only_the_hub_and_one_label_under_it(domain, expected):
    assert asked_user(domain, "hub.example.org") == expected


def test_caddy_reads_the_rendered_caddyfile(tmp_path):
    """Debian's caddy 2.6 adapts every shape we render (syntax, directives, global options)."""
    caddy = shutil.which("caddy") or "/usr/bin/caddy"
    if not Path(caddy).exists():
        pytest.fail("Debian's caddy is missing: the test command installs it (apt-get install caddy)")
    shapes = [
        settings({"mode": "acme", "email": "a@b.org"}, subdomains=True),
        settings({"mode": "acme", "acme_directory": "https://127.0.0.1:1/dir", "acme_ca_root": "/ca.pem"}),
        settings({"mode": "files", "cert_file": "/c.pem", "key_file": "/k.pem"}, subdomains=True),
    ]
    for shape in shapes:
        path = tmp_path / "Caddyfile"
        path.write_text(render(shape, FRONT))
        result = subprocess.run(
            [caddy, "adapt", "--config", str(path), "--adapter", "caddyfile"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        config = json.loads(result.stdout)
        assert config["admin"] == {"disabled": True}
        servers = config["apps"]["http"]["servers"].values()
        assert sorted(tuple(server["listen"]) for server in servers) == [(":443",), (":80",)]


def test_up_warns_when_lets_encrypt_cannot_cover_the_users_hosts():
    per_user = settings({"mode": "acme"}, subdomains=True)
    assert "50 per registered domain per week" in certificate_warning(per_user)
    assert "guest" not in certificate_warning(per_user).split(";")[0]
    with_guests = Settings.model_validate(
        {**per_user.model_dump(), "courses": [{"name": "intro", "repo": "/srv/c", "access": "open"}]}
    )
    assert "every guest of the open course(s) intro" in certificate_warning(with_guests)
    assert certificate_warning(settings({"mode": "acme"})) == certificate_warning(per_user)  # the default
    one = settings({"mode": "acme"}, subdomains=False)
    assert certificate_warning(one) == ""  # one certificate, whatever the class
    wildcard = settings({"mode": "files", "cert_file": "/c.pem", "key_file": "/k.pem"}, subdomains=True)
    assert certificate_warning(wildcard) == ""
    own_ca = settings({"mode": "acme", "acme_directory": "https://ca.example.edu/dir"}, subdomains=True)
    assert certificate_warning(own_ca) == ""
