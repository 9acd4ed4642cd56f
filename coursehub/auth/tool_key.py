"""The LTI tool's own RSA key: kept 0600 in the state folder, its public half published as a JWKS, and
used to sign the client assertions (RFC 7523) of LTI Advantage token requests."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def ensure_tool_key(path: Path) -> rsa.RSAPrivateKey:
    """The key at `path`, made on first use (0600, created atomically: the hub and the CLI may race)."""
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        try:
            os.link(tmp, path)  # fails if another process made one meanwhile: theirs wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA private key: delete it and a new one is made")
    return loaded


def key_id(key: rsa.RSAPrivateKey) -> str:
    """A stable id of the key (its public numbers' digest), named in JWT headers and the JWKS."""
    numbers = key.public_key().public_numbers()
    return hashlib.sha256(f"{numbers.n}:{numbers.e}".encode()).hexdigest()[:16]


def public_jwks(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """The JWKS the platform fetches to check the tool's signatures."""
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {"keys": [{**jwk, "kid": key_id(key), "alg": "RS256", "use": "sig"}]}


def client_assertion(key: rsa.RSAPrivateKey, client_id: str, audience: str, lifetime: int = 300) -> str:
    """A signed JWT that authenticates the tool to the platform's token endpoint (RFC 7523)."""
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime,
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": key_id(key)})
