"""Write new credentials as a CSV file and a printable HTML sheet of login cards."""

from __future__ import annotations

import csv
import html
import io
import logging
import os
from pathlib import Path

from coursehub.auth.accounts import Credential
from coursehub.errors import AccountError

log = logging.getLogger(__name__)

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Workshop accounts for {hub_url}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1cm; }}
.cards {{ display: grid; grid-template-columns: repeat(3, 1fr); gap: 0.5cm; }}
.card {{ border: 1px dashed #555; padding: 0.4cm; break-inside: avoid; page-break-inside: avoid; }}
.url {{ font-size: 0.85em; overflow-wrap: anywhere; margin-bottom: 0.3cm; }}
.label {{ font-size: 0.75em; color: #555; }}
.value {{ font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 1.25em; }}
@media print {{
  body {{ margin: 0; }}
  .card {{ border-color: #000; }}
}}
</style>
</head>
<body>
<div class="cards">
{cards}
</div>
</body>
</html>
"""

CARD = """<div class="card">
<div class="url">{hub_url}</div>
<div class="label">Username</div><div class="value">{username}</div>
<div class="label">Password</div><div class="value">{password}</div>
</div>"""


def render_csv(creds: list[Credential], hub_url: str) -> str:
    """Return the CSV text: header username,password,hub_url then one row per account."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["username", "password", "hub_url"])
    writer.writerows([c.username, c.password, hub_url] for c in creds)
    return buf.getvalue()


def render_html(creds: list[Credential], hub_url: str) -> str:
    """Return a printable HTML page with one card per account, every value escaped."""
    url = html.escape(hub_url)
    cards = "\n".join(
        CARD.format(hub_url=url, username=html.escape(c.username), password=html.escape(c.password))
        for c in creds
    )
    return PAGE.format(hub_url=url, cards=cards)


def _exists_error(path: Path) -> AccountError:
    return AccountError(f"{path} already exists: move it away or write elsewhere with --out")


def _write_private(path: Path, text: str) -> None:
    # O_EXCL: never overwrite earlier cards; 0600: the file holds plaintext passwords.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise _exists_error(path) from None
    with open(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def write_credentials(creds: list[Credential], hub_url: str, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write `<stem>.csv` and `<stem>.html` (mode 0600) into out_dir; return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, html_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.html"
    # Check both first so a refusal leaves nothing half-written.
    for path in (csv_path, html_path):
        if path.exists():
            raise _exists_error(path)
    _write_private(csv_path, render_csv(creds, hub_url))
    _write_private(html_path, render_html(creds, hub_url))
    log.info("wrote %d credentials to %s and %s", len(creds), csv_path, html_path)
    return csv_path, html_path
