"""Ending a hub user's access at once: their servers stop, their tokens go, their login cookies die."""

from __future__ import annotations

import asyncio
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.orm import new_token
from jupyterhub.scopes import needs_scope

from coursehub.names import REVOKE_PATH


class RevokeHandler(APIHandler):
    """POST /hub/api/coursehub/revoke/<user>: what `accounts delete|disable|reset` needs of the hub.

    JupyterHub's REST API deletes tokens and stops servers but cannot end browser sessions short of
    deleting the user; the login cookie names the user's `cookie_id`, so a new one ends them all.
    """

    @needs_scope("admin:users")
    async def post(self, user_name: str) -> None:
        user = self.find_user(user_name)
        if user is None:
            self.set_status(204)  # never logged in: nothing to end
            return
        for name, spawner in list(user.spawners.items()):
            if spawner.pending == "spawn" and spawner._spawn_future is not None:
                # A start under way would finish after us: let it, then stop it.
                await asyncio.gather(spawner._spawn_future, return_exceptions=True)
            if spawner.active and not spawner.pending:
                await self.stop_single_user(user, name)
                if spawner._stop_future is not None:
                    await spawner._stop_future
        orm_user: Any = user.orm_user
        tokens = list(orm_user.api_tokens)  # API tokens and the OAuth tokens of its servers' cookies
        for token in tokens:
            self.db.delete(token)
        orm_user.cookie_id = new_token()
        self.db.commit()
        self.log.info("revoked %d token(s) and the sessions of %s, servers stopped", len(tokens), user_name)
        self.set_status(204)


def revoke_handlers() -> list[tuple[str, type]]:
    """Routes under /hub/ (authenticator handlers are mounted there)."""
    return [(rf"/api/{REVOKE_PATH}/([^/]+)", RevokeHandler)]
