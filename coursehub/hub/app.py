"""The hub's process: JupyterHub itself, without importing every installed plugin only to list it.

Run as `python -m coursehub.hub.app -f <config>` where `python -m jupyterhub` would be.
"""

from __future__ import annotations

import sys

# Mako (alembic's templates, which JupyterHub's ORM imports) highlights its HTML error pages with
# Pygments when it can: 43 of Pygments' modules, 4.5 MiB of the hub's memory (RSS 102 -> 97.5 MiB
# after import), for pages a hub never renders. None in sys.modules makes that one import fail, and
# mako falls back to plain escaping (mako/exceptions.py, _install_highlighting); Pygments itself stays
# importable. Upstreamable to mako: import the plugin when a page is rendered.
sys.modules.setdefault("mako.ext.pygmentplugin", None)  # type: ignore[arg-type]

from jupyterhub.app import JupyterHub as _JupyterHub  # noqa: E402
from jupyterhub.auth import Authenticator  # noqa: E402
from jupyterhub.crypto import CryptKeeper  # noqa: E402
from jupyterhub.spawner import Spawner  # noqa: E402
from traitlets import default  # noqa: E402


class JupyterHub(_JupyterHub):
    """JupyterHub whose list of configurable classes is the base classes only.

    JupyterHub's own default imports every authenticator and spawner installed (their entry points)
    so that --help-all and --generate-config can list their options. A running hub needs only the
    ones its config selects, which it imports when it makes them. The rest (oauthenticator's
    authenticators and the temporary one, with requests, cryptography and jwt) took the hub's PSS
    at start from 99 to 107 MiB (with hubconfig/passthrough.py's check, which loaded them too), for
    options nobody lists there (coursehub's command line and `coursehub config check` do).
    The name stays JupyterHub: config sections and the log's name are the same. Upstreamable:
    load the entry points only for help and config generation.
    """

    @default("classes")
    def _load_classes(self) -> list[type]:
        return [Spawner, Authenticator, CryptKeeper]


main = JupyterHub.launch_instance

if __name__ == "__main__":
    main()
