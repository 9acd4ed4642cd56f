"""systemd units for coursehub as a service: settings and paths in, unit files out (pure, tested as data)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from coursehub.settings import Settings

HUB_UNIT = "coursehub.service"
TLS_UNIT = "coursehub-tls.service"
UNIT_DIR = Path("etc/systemd/system")  # under the install root
DELEGATE_ENV = "COURSEHUB_CGROUP_DELEGATE"  # read by `up` (host/hubprocess.py)
# Characters that need no quoting in an Exec line; anything else is double-quoted.
PLAIN = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


@dataclass(frozen=True)
class Install:
    """What the units run, found by the caller: the interpreter with coursehub, the config, PATH."""

    python: str
    config: Path
    path: str  # PATH for the hub: configurable-http-proxy and node must be on it
    docs: Path  # docs/production.md, for Documentation=


def quote(word: str) -> str:
    """One word of an Exec line: systemd expands % specifiers and $ variables, so both are doubled."""
    escaped = word.replace("%", "%%").replace("$", "$$")
    if PLAIN.match(escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_line(argv: list[str]) -> str:
    """An Exec= value for `argv`, words quoted for systemd."""
    return " ".join(quote(word) for word in argv)


def coursehub_argv(inst: Install, *args: str) -> list[str]:
    """`python -m coursehub --config FILE ARGS…`: every unit names its config, so no folder matters."""
    return [inst.python, "-m", "coursehub", "--config", str(inst.config), *args]


def environment_line(key: str, value: str) -> str:
    """An Environment= line; the value quoted whole, % doubled."""
    value = value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')
    return f'Environment="{key}={value}"'


def hub_unit(settings: Settings, inst: Install) -> str:
    """coursehub.service: `coursehub up` as root with a delegated cgroup subtree for the servers."""
    tls = settings.tls.mode != "off"
    up = ["up", "--no-front-end"] if tls else ["up"]
    return "\n".join(
        [
            "# Written by `coursehub install`; `coursehub uninstall` removes it.",
            "[Unit]",
            "Description=coursehub: Jupyter for classes (JupyterHub, proxy, sandboxed servers)",
            f"Documentation=file://{inst.docs}",
            "Wants=network-online.target" + (f" {TLS_UNIT}" if tls else ""),
            "After=network-online.target",
            "",
            "[Service]",
            "Type=simple",
            environment_line("PATH", inst.path),
            # `up` moves itself to <service>/hub and puts servers' groups in <service>/servers.
            environment_line(DELEGATE_ENV, "1"),
            "Delegate=yes",
            f"ExecStart={exec_line(coursehub_argv(inst, *up))}",
            # Restarts only the hub process; users' servers and kernels keep running.
            f"ExecReload={exec_line(coursehub_argv(inst, 'reload'))}",
            # Stops users' servers through the hub first, so that its database agrees.
            f"ExecStop={exec_line(coursehub_argv(inst, 'down'))}",
            # Whatever `down` left in the service's cgroup (servers included) is killed after it.
            "KillMode=mixed",
            "Restart=on-failure",
            "RestartSec=5s",
            # The first start builds the users' environment and every course's.
            "TimeoutStartSec=30min",
            "TimeoutStopSec=5min",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
    )


def tls_unit(settings: Settings, inst: Install) -> str:
    """coursehub-tls.service: Caddy in front of the proxy, started and stopped with the hub."""
    return "\n".join(
        [
            "# Written by `coursehub install`; `coursehub uninstall` removes it.",
            "[Unit]",
            "Description=coursehub's TLS front end (Caddy, certificates from tls: in coursehub.yaml)",
            f"Documentation=file://{inst.docs}",
            # Stopped and restarted with the hub; it may start first (until the hub answers it says 502).
            f"PartOf={HUB_UNIT}",
            "Wants=network-online.target",
            "After=network-online.target",
            "",
            "[Service]",
            "Type=simple",
            environment_line("PATH", inst.path),
            # Writes the Caddyfile from the config, then becomes caddy.
            f"ExecStart={exec_line(coursehub_argv(inst, 'front-end'))}",
            "Restart=on-failure",
            "RestartSec=5s",
            "",
            "[Install]",
            f"WantedBy={HUB_UNIT}",
            "",
        ]
    )


def units(settings: Settings, inst: Install) -> dict[str, str]:
    """Every unit file name with its text: the hub's, and the TLS front end's when tls: is on."""
    rendered = {HUB_UNIT: hub_unit(settings, inst)}
    if settings.tls.mode != "off":
        rendered[TLS_UNIT] = tls_unit(settings, inst)
    return rendered


def exec_argv(line: str) -> list[str]:
    """The argv of an Exec= value written by exec_line (for tests and `install --print`)."""
    import shlex

    return [word.replace("%%", "%").replace("$$", "$") for word in shlex.split(line)]
