"""nbgrader on Kubernetes (untested here): an exchange service, ngshare, instead of a shared volume. Pure.

On one machine the exchange is a folder whose Unix modes keep students apart, because each student is their
own Unix account. Pods all run as the same uid (1000), so on a shared volume every student could read and
replace every other student's submissions and feedback: the problem Zero to JupyterHub has had open for years.
ngshare is nbgrader's exchange as a JupyterHub service: it knows who calls from the caller's hub token, so a
student submits only as themselves and fetches only their own feedback, whatever the pods' uids.
"""

from __future__ import annotations

import json
from typing import Any

from coursehub.courses.grading import Role, page_config, server_extension_args
from coursehub.settings import Settings

# The Service ngshare's own Helm chart creates, in the hub's namespace.
NGSHARE_URL = "http://ngshare:8080/services/ngshare"
POD_CONFIG_DIR = "/etc/coursehub/nbgrader"  # singleuser.extraFiles: nbgrader_config.py, per-role labconfig

# One file for every pod: the course and whether it grades come from the profile's environment.
POD_NBGRADER_CONFIG = f"""# Written by `coursehub render kubernetes`: nbgrader through ngshare.
import os
c = get_config()  # noqa: F821
if os.environ.get("COURSEHUB_GRADING") == "nbgrader":
    from ngshare_exchange import configureExchange

    configureExchange(c, {NGSHARE_URL!r})
    course = os.environ["COURSEHUB_COURSE"]
    c.CourseDirectory.course_id = course
    c.CourseDirectory.root = os.path.join(os.environ["HOME"], course, "grading")
"""


def graders(settings: Settings) -> dict[str, tuple[str, ...]]:
    """Courses with grading: nbgrader -> their staff's usernames."""
    return {c.name: tuple(c.staff) for c in settings.courses if c.grading == "nbgrader"}


def role_override(course: str, role: Role) -> dict[str, Any]:
    """A grading course's profile for one user: nbgrader's extensions and lab plugins for their role."""
    return {
        "args": server_extension_args(role),
        "environment": {"COURSEHUB_GRADING": "nbgrader", "JUPYTER_CONFIG_PATH": f"{POD_CONFIG_DIR}/{role}"},
    }


def extra_files() -> dict[str, dict[str, str]]:
    """singleuser.extraFiles: the pods' nbgrader config and each role's JupyterLab page config."""
    files = {
        f"nbgrader-config-{role}": {
            "mountPath": f"{POD_CONFIG_DIR}/{role}/nbgrader_config.py",
            "stringData": POD_NBGRADER_CONFIG,
        }
        for role in ("student", "staff")
    }
    for role in ("student", "staff"):
        files[f"nbgrader-labconfig-{role}"] = {
            "mountPath": f"{POD_CONFIG_DIR}/{role}/labconfig/page_config.json",
            "stringData": json.dumps(page_config(role), indent=1) + "\n",
        }
    return files


def hub_service() -> dict[str, Any]:
    """hub.services.ngshare: the hub routes /services/ngshare to ngshare's Service (its token: yours)."""
    return {"ngshare": {"url": NGSHARE_URL, "oauth_no_confirm": True}}


def notice(settings: Settings) -> str | None:
    """What the operator must add for grading courses on Kubernetes."""
    names = sorted(graders(settings))
    if not names:
        return None
    return (
        f"grading: nbgrader ({', '.join(names)}) uses the ngshare exchange service on Kubernetes (untested "
        "here): install ngshare's Helm chart in the hub's namespace, set hub.services.ngshare.apiToken "
        "to the token it prints, and put nbgrader, ngshare_exchange in each grading course's image; "
        "each staff member's course folder is ~/<course>/grading in their own home"
    )
