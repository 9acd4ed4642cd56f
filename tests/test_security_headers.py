"""Headers, cookies, XSRF and lockout on a real hub, and in Chromium with the policy on."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from coursehub.hubconfig import Runtime, build
from coursehub.paths import StatePaths
from coursehub.settings.yamlfile import parse_settings

RUNTIME = Runtime(StatePaths(Path("/s")), "/bin/chp", "/bin/python", Path("/e"))


def test_https_public_url_makes_cookies_secure():
    c = build(parse_settings("hub: {public_url: 'https://class.example.org'}"), RUNTIME)
    assert c.JupyterHub.tornado_settings["cookie_options"] == {"samesite": "Lax", "secure": True}
    assert "cookie_options" not in c.Spawner  # not a config option: JupyterHub passes tornado_settings'
    assert c.JupyterHub.public_url == "https://class.example.org/"
    plain = build(parse_settings(""), RUNTIME)
    assert plain.JupyterHub.tornado_settings["cookie_options"] == {"samesite": "Lax"}
    assert plain.JupyterHub.public_url == "http://localhost:8000/"  # the hub's host under users' hosts
    shared = build(parse_settings("hub: {subdomains: false}"), RUNTIME)
    assert "public_url" not in shared.JupyterHub


@pytest.fixture(scope="module")
def hub(edge_hub):
    return edge_hub


def set_cookies(response: requests.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name, attributes lower-cased."""
    raw = response.raw.headers.getlist("Set-Cookie")
    return {line.split("=", 1)[0]: line.lower() for line in raw}


@pytest.mark.hub
def test_hub_pages_carry_the_policy_and_cookies_their_flags(hub):
    page = requests.get(hub.url + "hub/login", timeout=30)
    policy = page.headers["Content-Security-Policy"]
    for directive in ("frame-ancestors 'none'", "object-src 'none'", "form-action 'self'", "base-uri 'self'"):
        assert directive in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert "samesite=lax" in set_cookies(page)["_xsrf"]

    (name,) = hub.create_accounts("hdr", 1)
    session = requests.Session()
    session.get(hub.url + "hub/login", timeout=30)
    login = session.post(
        hub.url + "hub/login",
        data={"username": name, "password": hub.passwords[name], "_xsrf": session.cookies.get("_xsrf")},
        allow_redirects=False,
        timeout=60,
    )
    assert login.status_code == 302
    cookies = set_cookies(login)
    assert "jupyterhub-hub-login" in cookies
    for name_, line in cookies.items():
        # _xsrf is a double-submit token, not a credential: tornado leaves it readable to scripts.
        assert "samesite=lax" in line and ("httponly" in line or name_ == "_xsrf")
        assert "secure" not in line  # plain http here: a Secure cookie would never come back


@pytest.mark.hub
def test_state_changing_requests_need_the_xsrf_token(hub):
    (name,) = hub.create_accounts("xsrf", 1)
    session = hub.login(name)
    # The same session, without the token: refused.
    no_token = session.post(hub.url + "hub/login", data={"username": name, "password": "x"}, timeout=30)
    assert no_token.status_code == 403
    spawn = session.post(hub.url + f"hub/spawn/{name}", data={}, allow_redirects=False, timeout=30)
    assert spawn.status_code == 403
    api = session.post(hub.url + f"hub/api/users/{name}/tokens", json={}, timeout=30)
    assert api.status_code == 403
    assert not hub.api().json("GET", f"users/{name}")["servers"]  # nothing was started
    logout = session.post(hub.url + "hub/logout", allow_redirects=False, timeout=30)
    assert logout.status_code == 403


@pytest.mark.hub
def test_a_guest_link_never_replaces_a_logged_in_users_session(hub):
    (name,) = hub.create_accounts("guest", 1)
    session = hub.login(name)
    response = session.get(hub.url + "hub/tmplogin?course=open1", allow_redirects=False, timeout=60)
    assert response.status_code == 302 and "/hub/launch/open1" in response.headers["Location"]
    assert "jupyterhub-hub-login" not in set_cookies(response)
    assert session.get(hub.url + "hub/api/user", timeout=30).json()["name"] == name


@pytest.mark.hub
@pytest.mark.browser
def test_login_works_in_chromium_with_the_policy(hub, browser, output_dir):
    (name,) = hub.create_accounts("csp", 1)
    page = browser.new_page()
    page.set_default_timeout(120_000)
    violations: list[str] = []
    page.on(
        "console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None
    )
    page.goto(hub.url + "hub/login?next=/hub/home")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", hub.passwords[name])
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url("**/hub/home")
    page.wait_for_selector("#courses .ch-course")  # the course home lists the student's course
    # ...and its script ran under the policy: it loads JupyterHub's API module through require.
    page.wait_for_function("() => window.require && window.require.defined('jhapi')")
    page.screenshot(path=str(output_dir / "security-csp-home.png"))
    page.close()
    assert violations == []


@pytest.mark.hub
def test_lockout_survives_a_hub_restart(hub):
    (name,) = hub.create_accounts("rest", 1)
    codes = [hub.try_login(name, f"wrong-{i}")[1].status_code for i in range(4)]
    assert codes[-1] == 429, codes  # max_failures is 3 on test hubs: the 4th attempt is refused
    hub.stop()
    hub.start()
    _, response = hub.try_login(name, hub.passwords[name])
    assert response.status_code == 429 and "try again" in response.text


def cookie_value(response: requests.Response, name: str) -> str:
    """The value exactly as set (set_cookies lower-cases whole lines)."""
    for line in response.raw.headers.getlist("Set-Cookie"):
        if line.startswith(name + "="):
            return line.split("=", 1)[1].split(";", 1)[0]
    raise AssertionError(f"no {name} cookie set")


@pytest.mark.hub
def test_behind_https_every_cookie_is_secure(make_hub):
    # hub.public_url says users come through a TLS proxy; the test talks plain HTTP behind it.
    hub = make_hub(hub={"public_url": "https://class.example.org/"}, sandbox={"spawn_mode": "exec"})
    try:
        (name,) = hub.create_accounts("tls", 1)
        page = requests.get(hub.url + "hub/login", timeout=30)
        assert "; secure" in set_cookies(page)["_xsrf"]
        # A browser sends Secure cookies back over HTTPS only; requests, over HTTP, never: send them by hand.
        xsrf = cookie_value(page, "_xsrf")
        jar = "; ".join(f"{n}={cookie_value(page, n)}" for n in set_cookies(page))  # xsrf + session id
        login = requests.post(
            hub.url + "hub/login",
            data={"username": name, "password": hub.passwords[name], "_xsrf": xsrf},
            headers={"Cookie": jar},
            allow_redirects=False,
            timeout=60,
        )
        assert login.status_code == 302
        cookies = set_cookies(login)
        # With hub.subdomains over HTTPS the hub's cookies are __Host- prefixed.
        assert cookies.keys() & {"jupyterhub-hub-login", "__Host-jupyterhub-hub-login"}, cookies.keys()
        for line in cookies.values():
            assert "; secure" in line and "samesite=lax" in line
    finally:
        # `coursehub down` talks to the hub at its public URL, which only exists in this test's story;
        # `coursehub up` itself waits (up to 120 s, deaf to SIGTERM) for that URL to answer: stop it.
        (hub.state_dir / "hub.url").write_text(hub.url)
        hub.cli("down")
        if hub.proc is not None:
            hub.proc.kill()
            hub.proc.wait(30)
