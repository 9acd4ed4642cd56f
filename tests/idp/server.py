"""Serve a WSGI app on 127.0.0.1 in a thread, for as long as a test module needs it."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import certifi
from werkzeug.serving import make_server


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, written into `folder`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "coursehub test provider")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    os.chmod(key_path, 0o600)
    return cert_path, key_path


@contextmanager
def trusting(cert: Path) -> Iterator[None]:
    """Processes started meanwhile (a hub) trust `cert` besides the usual roots (SSL_CERT_FILE)."""
    bundle = cert.parent / "bundle.pem"
    old = os.environ.get("SSL_CERT_FILE")
    bundle.write_text(Path(old or certifi.where()).read_text() + "\n" + cert.read_text())
    os.environ["SSL_CERT_FILE"] = str(bundle)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = old


@contextmanager
def serving(app, tls: bool = False) -> Iterator[str]:
    """Run `app` on a free port (over https with a fresh self-signed certificate when `tls`); yield its
    base URL (no trailing slash). With `tls`, the certificate is at `<folder>/cert.pem`, see `cert_of`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = None
    folder = Path(tempfile.mkdtemp(prefix="coursehub-idp-"))
    if tls:
        cert, key = self_signed(folder)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        CERTS[f"https://127.0.0.1:{port}"] = cert
    server = make_server("127.0.0.1", port, app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(10)


# base URL -> the self-signed certificate it serves
CERTS: dict[str, Path] = {}
