"""HTTPS built in (issue 16, item 2), for real: Pebble as the ACME server, Caddy in front, Chromium.

Pebble (Debian's ACME test server, run with PEBBLE_VA_ALWAYS_VALID=1 on loopback ports) issues the
certificates: the hub's at Caddy's start, each user's host on demand once the hub's ask endpoint
confirms the name. Chromium trusts Pebble's issuing root, imported into the NSS database of a
throw-away HOME: the browser still verifies the whole chain and the names, as it would for Let's
Encrypt (an --ignore-certificate-errors-spki-list flag would only skip errors for a pinned key).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import requests
from conftest import CHROMIUM_ARGS, chromium_executable, free_port, run_first_cell, wait_for

pytestmark = [pytest.mark.hub, pytest.mark.browser]


def make_ca_and_server_cert(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate for 127.0.0.1 signed by it: Pebble's own HTTPS listener."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "coursehub test ACME API CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "api-ca.pem", folder / "api-cert.pem", folder / "api-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


class Pebble:
    """Debian's pebble on loopback ports, with its API's CA and its issuing root."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.api_ca, cert, key = make_ca_and_server_cert(folder)
        self.port, self.management = free_port(), free_port()
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": free_port(),
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        (folder / "pebble.json").write_text(json.dumps(config))
        env = {
            **os.environ,
            "PEBBLE_VA_ALWAYS_VALID": "1",  # no challenge traffic: nothing leaves loopback
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
        }
        self.log = (folder / "pebble.log").open("ab")
        self.proc = subprocess.Popen(
            ["pebble", "-config", str(folder / "pebble.json")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.directory = f"https://127.0.0.1:{self.port}/dir"
        wait_for(self._answers, timeout=30, what="pebble")
        # A fresh issuing root on every start: fetched, never committed.
        self.root = folder / "issuing-root.pem"
        self.root.write_text(self.get("roots/0"))

    def get(self, path: str) -> str:
        response = requests.get(
            f"https://127.0.0.1:{self.management}/{path}", verify=str(self.api_ca), timeout=10
        )
        response.raise_for_status()
        return response.text

    def _answers(self) -> bool:
        assert self.proc.poll() is None, "pebble exited"
        try:
            self.get("roots/0")
            return True
        except requests.RequestException:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


@pytest.fixture(scope="module")
def pebble(tmp_path_factory):
    server = Pebble(tmp_path_factory.mktemp("pebble"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_hub(make_hub_module, pebble):
    https_port, http_port = free_port(), free_port()
    hub = make_hub_module(
        hub={"subdomains": True, "public_url": f"https://hub.localhost:{https_port}/"},
        tls={
            "mode": "acme",
            "email": "admin@example.org",
            "acme_directory": pebble.directory,
            "acme_ca_root": str(pebble.api_ca),
            "http_port": http_port,
        },
    )
    hub.https = f"https://hub.localhost:{https_port}/"
    hub.https_port, hub.http_port = https_port, http_port
    return hub


def tls_handshake(host: str, port: int, root: Path) -> ssl.SSLSocket:
    """A TLS connection to 127.0.0.1:port for `host` (SNI), verified against `root`."""
    context = ssl.create_default_context(cafile=str(root))
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    return context.wrap_socket(raw, server_hostname=host)


def chromium_trusting(root: Path, home: Path, playwright):
    """Chromium whose NSS database (in a throw-away HOME) trusts `root` to issue server certificates."""
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True, exist_ok=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True, timeout=60)
    subprocess.run(
        ["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "pebble-root", "-i", str(root)],
        check=True,
        timeout=60,
    )
    return playwright.chromium.launch(
        executable_path=chromium_executable(), args=CHROMIUM_ARGS, env={**os.environ, "HOME": str(home)}
    )


def test_a_student_logs_in_over_https_and_runs_a_cell_on_their_own_host(
    tls_hub, pebble, tmp_path, output_dir
):
    from playwright.sync_api import sync_playwright

    (name,) = tls_hub.create_accounts("tls", 1)
    with sync_playwright() as p:
        browser = chromium_trusting(pebble.root, tmp_path / "home", p)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(120_000)
        problems: list[str] = []
        page.on("requestfailed", lambda r: problems.append(f"failed {r.url}: {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and problems.append(f"{r.status} {r.url}"))
        page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
        page.goto(tls_hub.https + "hub/login")
        page.fill("input[name=username]", name)
        page.fill("input[name=password]", tls_hub.passwords[name])
        page.click("input[type=submit], button[type=submit]")
        # The hub starts the student's first course and sends the browser on to it, on the user's own host:
        # Caddy got that host's certificate on demand after the hub confirmed the name.
        user_host = f"https://{name}.hub.localhost:{tls_hub.https_port}/"
        page.wait_for_url(f"{user_host}user/{name}/demo/lab**", timeout=180_000)
        try:
            page.goto(f"{user_host}user/{name}/demo/lab/tree/demo/welcome.ipynb")
            # JupyterLab's first load is slow on a busy two-core machine.
            code = "print(6 * 7, 'over https')"
            text = run_first_cell(
                page, output_dir, "tls-jupyterlab-cell.png", code=code, expect="42", load_timeout=240_000
            )
        except Exception as exc:
            raise AssertionError("JupyterLab over https:\n" + "\n".join(problems[-30:])) from exc
        assert "42 over https" in text
        cookies = context.cookies()
        browser.close()
    assert cookies, "the browser holds no cookies after logging in"
    insecure = [c["name"] for c in cookies if not c["secure"]]
    assert not insecure, f"cookies without Secure: {insecure}"
    # The user's host has a certificate of its own from Pebble, for exactly that name.
    with tls_handshake(f"{name}.hub.localhost", tls_hub.https_port, pebble.root) as conn:
        names = [value for kind, value in conn.getpeercert()["subjectAltName"] if kind == "DNS"]
    assert names == [f"{name}.hub.localhost"]


def test_http_redirects_to_https_and_https_sends_hsts(tls_hub, pebble):
    http = f"http://hub.localhost:{tls_hub.http_port}/hub/login?next=%2Fhub%2Fhome"
    response = requests.get(http, allow_redirects=False, timeout=30)
    assert response.status_code == 308
    assert response.headers["Location"] == tls_hub.https + "hub/login?next=%2Fhub%2Fhome"
    page = requests.get(tls_hub.https + "hub/login", verify=str(pebble.root), timeout=60)
    assert page.status_code == 200
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    set_cookie = page.headers.get("Set-Cookie", "")
    assert "_xsrf=" in set_cookie and "Secure" in set_cookie


def test_no_certificate_for_a_name_the_hub_does_not_confirm(tls_hub, pebble):
    with pytest.raises(ssl.SSLError):
        tls_handshake("nobody-here.hub.localhost", tls_hub.https_port, pebble.root).close()
    with pytest.raises(ssl.SSLError):
        tls_handshake("evil.example.org", tls_hub.https_port, pebble.root).close()


def test_the_ask_endpoint_answers_only_caddy_and_only_for_hub_names(tls_hub):
    (name,) = tls_hub.create_accounts("ask", 1)
    tls_hub.login(name)  # a hub user exists once it has logged in
    from coursehub.hubconfig.pipeline import hub_api_ip
    from coursehub.settings.yamlfile import load_settings

    settings = load_settings(tls_hub.config)
    # Where the hub's API listens: loopback, or with network.isolate (the default) the gateway of the
    # servers' namespaces, which Caddy on this machine reaches too.
    ask = f"http://{hub_api_ip(settings, tls_hub.state_dir)}:{settings.hub.api_port}/hub/coursehub/tls-ask"
    key = (tls_hub.state_dir / "tls-ask-key").read_text().strip()
    assert oct((tls_hub.state_dir / "tls-ask-key").stat().st_mode & 0o777) == "0o600"

    def status(domain: str, key: str = key, via: str = ask, **kw) -> int:
        return requests.get(via, params={"domain": domain, "key": key}, timeout=30, **kw).status_code

    assert status("hub.localhost") == 200
    assert status(f"{name}.hub.localhost") == 200
    assert status("nobody-here.hub.localhost") == 404
    assert status("evil.example.org") == 404
    assert status(f"x.{name}.hub.localhost") == 404
    # Without Caddy's key (a student's kernel on the hub's port): nothing, not even whether a user exists.
    assert status(f"{name}.hub.localhost", key="") == 403
    assert status(f"{name}.hub.localhost", key="wrong") == 403
    # Through the public proxy, even with the key.
    assert status(f"{name}.hub.localhost", via=tls_hub.url + "hub/coursehub/tls-ask") == 403


def make_wildcard_files(folder: Path, host: str) -> tuple[Path, Path, Path]:
    """A CA and a certificate for `host` and `*.host` signed by it: what an admin gives in mode files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "coursehub test campus CA")])

    def build(subject, public_key, extensions):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(ca_key, hashes.SHA256())

    ca = build(ca_name, ca_key.public_key(), [(x509.BasicConstraints(ca=True, path_length=0), True)])
    names = x509.SubjectAlternativeName([x509.DNSName(host), x509.DNSName(f"*.{host}")])
    cert = build(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]), key.public_key(), [(names, False)]
    )
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "fullchain.pem", folder / "privkey.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_path, cert_path, key_path


def test_caddy_serves_the_admins_wildcard_certificate_for_every_users_host(tmp_path):
    """Mode files, with Debian's caddy and the rendered Caddyfile (no hub needed: nothing is asked)."""
    from coursehub.host.caddyfile import FrontEnd, render
    from coursehub.settings import Settings

    ca, cert, key = make_wildcard_files(tmp_path, "hub.localhost")
    https_port, http_port, proxy_port = free_port(), free_port(), free_port()
    settings = Settings(
        hub={"public_url": f"https://hub.localhost:{https_port}/", "subdomains": True, "port": proxy_port},
        tls={"mode": "files", "cert_file": str(cert), "key_file": str(key), "http_port": http_port},
    )
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(
        render(settings, FrontEnd(storage=tmp_path / "data", api_host="127.0.0.1", ask_key="-"))
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    with (tmp_path / "caddy.log").open("ab") as log:
        caddy = subprocess.Popen(
            ["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:

        def handshake_names(host: str):
            try:
                with tls_handshake(host, https_port, ca) as conn:
                    return [value for kind, value in conn.getpeercert()["subjectAltName"]]
            except OSError:
                assert caddy.poll() is None, (tmp_path / "caddy.log").read_text()[-2000:]
                return None

        for host in ("hub.localhost", "alice.hub.localhost", "bob.hub.localhost"):
            names = wait_for(lambda host=host: handshake_names(host), timeout=30, what=f"TLS for {host}")
            assert names == ["hub.localhost", "*.hub.localhost"]
        redirect = requests.get(
            f"http://bob.hub.localhost:{http_port}/x?y=1", allow_redirects=False, timeout=30
        )
        assert redirect.status_code == 308
        assert redirect.headers["Location"] == f"https://bob.hub.localhost:{https_port}/x?y=1"
    finally:
        caddy.terminate()
        caddy.wait(30)
