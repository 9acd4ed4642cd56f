"""Small pieces the maintained OAuth authenticators take as hooks."""

from __future__ import annotations

from typing import Any


def github_team_groups(auth_state: dict[str, Any]) -> list[str]:
    """'org:team' names of the user's GitHub teams (oauthenticator's populate_teams_in_auth_state)."""
    names = set()
    for team in auth_state.get("teams") or []:
        org = (team.get("organization") or {}).get("login")
        if org and team.get("slug"):
            names.add(f"{org}:{team['slug']}")
    return sorted(names)
