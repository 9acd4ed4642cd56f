"""Every culler of a one-machine hub in one process: jupyterhub-idle-culler's loop, once per service.

The hub runs it as the first culler's managed service (`python -m coursehub.hub.cullers`); the loops
come from hubconfig/services.py's one_culler_process in $COURSEHUB_CULLERS, each naming the variable
that holds its own service's token. What a loop does is the library's: its command-line parser
(IdleCuller) reads the loop's arguments, its cull_idle culls, on the schedule its start() sets.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from functools import partial

from jupyterhub_idle_culler import IdleCuller, cull_idle
from tornado.ioloop import IOLoop, PeriodicCallback

from coursehub.names import CULLERS_ENV


def culls(environ: Mapping[str, str]) -> list[tuple[str, float, Callable]]:
    """(service name, seconds between runs, the cull) for each loop named in `environ`."""
    found = []
    for loop in json.loads(environ[CULLERS_ENV]):
        options = IdleCuller()  # its own parser: the same arguments mean the same here
        options.initialize(loop["args"])
        cull = partial(
            cull_idle,
            url=options.url or environ["JUPYTERHUB_API_URL"],
            api_token=environ[loop["token_env"]],
            inactive_limit=options.timeout,
            logger=logging.getLogger(f"coursehub.cullers.{loop['name']}"),
            cull_users=options.cull_users,
            remove_named_servers=options.remove_named_servers,
            max_age=options.max_age,
            concurrency=options.concurrency,
            ssl_enabled=options.ssl_enabled,
            internal_certs_location=options.internal_certs_location,
            cull_admin_users=options.cull_admin_users,
            api_page_size=options.api_page_size,
            cull_default_servers=options.cull_default_servers,
            cull_named_servers=options.cull_named_servers,
            cull_arbiter=options.cull_arbiter_hook,
        )
        found.append((loop["name"], float(options.cull_every), cull))
    return found


def main() -> None:
    """Cull now, then every loop on its own period, until the hub stops the service."""
    logging.basicConfig(level=logging.INFO, format="[%(levelname).1s %(asctime)s %(name)s] %(message)s")
    loop = IOLoop.current()
    for name, every, cull in culls(os.environ):
        logging.getLogger("coursehub.cullers").info("%s: every %.0f s", name, every)
        loop.add_callback(cull)  # as the library does: PeriodicCallback's first run is after a period
        PeriodicCallback(cull, 1e3 * every).start()
    try:
        loop.start()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
