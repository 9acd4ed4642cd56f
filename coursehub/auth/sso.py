"""Small pieces on top of maintained authenticators: a GitHub groups hook, temporary users."""

from __future__ import annotations

import secrets
from typing import Any

from jupyterhub.utils import url_path_join
from tmpauthenticator import TmpAuthenticateHandler, TmpAuthenticator
from traitlets import default

from coursehub.names import TEMPORARY_GROUP


def github_team_groups(auth_state: dict[str, Any]) -> list[str]:
    """'org:team' names of the user's GitHub teams (oauthenticator's populate_teams_in_auth_state)."""
    names = set()
    for team in auth_state.get("teams") or []:
        org = (team.get("organization") or {}).get("login")
        if org and team.get("slug"):
            names.add(f"{org}:{team['slug']}")
    return sorted(names)


class TemporaryUsersAuthenticator(TmpAuthenticator):
    """tmpauthenticator's new-user-per-visitor login, as coursehub temporary users: short names that fit
    Unix accounts, in the temporary group (so they are culled and deleted when idle), and served at
    /hub/tmp-login so that coursehub's /hub/tmplogin?course= links keep working."""

    @default("manage_groups")
    def _manage_groups_default(self) -> bool:
        return True

    async def authenticate(self, handler: Any, data: Any = None) -> dict[str, Any]:
        return {"name": f"tmp-{secrets.token_hex(6)}", "groups": [TEMPORARY_GROUP]}

    def get_handlers(self, app: Any) -> list:
        return [("/tmp-login", TmpAuthenticateHandler)]

    def login_url(self, base_url: str) -> str:
        return url_path_join(base_url, "tmp-login")
