"""What went wrong in a phase, as a short kind that groups alike failures (pure)."""

from __future__ import annotations

import re

import requests

from coursehub.errors import HubNotRunning, PhaseError

MESSAGE_CHARS = 60
_URL = re.compile(r"https?://\S+")
_HEX_ID = re.compile(r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b")
_SPACES = re.compile(r"\s+")


def normalize_message(message: str, user: str = "") -> str:
    """A message without what differs between students (name, URLs, ids), cut short."""
    text = _URL.sub("<url>", message)
    if user:
        text = text.replace(user, "<user>")
    text = _HEX_ID.sub("<id>", text)
    return _SPACES.sub(" ", text).strip()[:MESSAGE_CHARS]


def http_kind(status: int) -> str:
    """The kind of an unexpected HTTP answer."""
    return f"http-{status}"


def spawn_failed_kind(message: str, user: str = "") -> str:
    """The kind of a spawn the hub reported as failed."""
    return f"spawn-failed: {normalize_message(message, user)}"


def error_kind(exc: BaseException, user: str = "") -> str:
    """The kind of any exception raised inside a phase."""
    if isinstance(exc, PhaseError):
        return exc.kind
    if isinstance(exc, requests.Timeout | TimeoutError):
        return "timeout"
    if isinstance(exc, requests.ConnectionError | HubNotRunning | ConnectionError):
        return "connection-error"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):  # websockets' InvalidStatus: the handshake got an HTTP error
        return f"ws-{http_kind(status)}"
    name = type(exc).__name__
    message = normalize_message(str(exc), user)
    return f"{name}: {message}" if message else name
