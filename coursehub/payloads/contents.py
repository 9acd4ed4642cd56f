"""coursehub_contents: installed into every course environment as a top-level module (jupyter_server only).

A folder's listing that meets a file renamed or deleted while it is listed answers 404 for the
whole folder in jupyter_server 2.21 (`_dir_model` stats each entry, then `get`s it, and the `get`
raises when the entry has gone in between). JupyterLab's file browser refreshes its folder every
few seconds, so a student who renames a notebook (JupyterLab's first save asks for a name) could
meet a modal "Directory not found" dialog for a folder that is there. The listing is taken again
instead, a few times, while the folder itself still exists.
"""

from __future__ import annotations

import os

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from tornado import web

LISTING_ATTEMPTS = 5


class SteadyListingContentsManager(AsyncLargeFileManager):  # type: ignore[misc]
    """jupyter_server's default contents manager, whose folder listings survive concurrent renames."""

    async def _dir_model(self, path: str, content: bool = True) -> dict:
        for _ in range(LISTING_ATTEMPTS - 1):
            try:
                return await super()._dir_model(path, content=content)
            except web.HTTPError as error:
                entry_vanished = error.status_code == 404 and content
                if not entry_vanished or not os.path.isdir(self._get_os_path(path)):
                    raise
                self.log.info("an entry of %r changed while it was listed; listing it again", path)
        return await super()._dir_model(path, content=content)  # the last attempt: what it raises, goes
