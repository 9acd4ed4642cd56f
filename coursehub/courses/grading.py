"""nbgrader for a course with `grading: nbgrader`, described as data: the exchange's layout and modes, the
staff-only course folder, the generated nbgrader config and which extensions each role gets. Pure."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Role = Literal["off", "student", "staff"]

# Where the sandbox shows them (under /run/coursehub, the sandbox's own tmpfs: see spawner/view.py).
EXCHANGE_MOUNT = Path("/run/coursehub/exchange")  # nbgrader's Exchange.root
GRADING_MOUNT = Path(
    "/run/coursehub/grading"
)  # staff only: the course's nbgrader folder (CourseDirectory.root)
CONFIG_MOUNT = Path("/run/coursehub/nbgrader")  # JUPYTER_CONFIG_PATH: nbgrader_config.py, labconfig
# In the home, a link to GRADING_MOUNT (made by the sync at each start): formgrader needs its course folder
# inside the server's root folder.
GRADING_LINK = "grading"

SERVER_EXTENSIONS = {
    "formgrader": ("staff",),
    "assignment_list": ("student", "staff"),
    "course_list": ("staff",),
    "validate_assignment": ("student", "staff"),
}
LAB_PLUGINS = {
    "formgrader": ("staff",),
    "create-assignment": ("staff",),
    "course-list": ("staff",),
    "assignment-list": ("student", "staff"),
    "validate-assignment": ("student", "staff"),
}
LAB_EXTENSION = "@jupyter/nbgrader"

# The exchange, as nbgrader's groupshared layout, with the course's staff group as the group. Students are
# "others": they read released assignments, add entries to inbound without listing it, and open feedback
# only by its name (a hash of their submission's 128-hex-digit secret). Sticky bits: nobody renames or
# removes an entry of someone else (nbgrader's own root must show 0777, or its release tries to chmod it).
EXCHANGE_DIRS = (
    ("", 0o1777),
    ("{course}", 0o2775),
    ("{course}/outbound", 0o2775),
    ("{course}/inbound", 0o3773),
    ("{course}/feedback", 0o2771),
)
SOURCE_MODE = 0o2770  # the staff's course folder: the staff group only


@dataclass(frozen=True)
class GradingPaths:
    """A course's grading folders on the host, under the hub's state folder."""

    state: Path
    course: str

    @property
    def root(self) -> Path:
        return self.state / "grading" / self.course

    @property
    def exchange(self) -> Path:
        """nbgrader's exchange root for this course alone."""
        return self.root / "exchange"

    @property
    def source(self) -> Path:
        """The staff's nbgrader course folder: source, release, submitted, autograded, feedback, gradebook."""
        return self.root / "course"

    @property
    def gradebook(self) -> Path:
        return self.source / "gradebook.db"

    def config(self, role: Role) -> Path:
        """The generated Jupyter config folder a server of this role gets."""
        return self.state / "grading" / "_config" / (self.course if role != "off" else "_off") / role


def staff_group(course: str, prefix: str = "ch-") -> str:
    """The Unix group of a course's staff (per hub: its account prefix); users' Unix names have no '_'."""
    name = f"{prefix}staff_{course}"
    if len(name) <= 32:
        return name
    return f"{prefix[:8]}staff_{hashlib.sha256((prefix + course).encode()).hexdigest()[:16]}"


def exchange_dirs(course: str) -> list[tuple[str, int]]:
    """(path relative to the exchange root, mode) of every folder the hub makes, parents first."""
    return [(path.format(course=course), mode) for path, mode in EXCHANGE_DIRS]


def server_extension_args(role: Role) -> list[str]:
    """Command-line switches for nbgrader's server extensions (installed in every environment)."""
    return [
        f"--ServerApp.jpserver_extensions=nbgrader.server_extensions.{name}={role in roles}"
        for name, roles in SERVER_EXTENSIONS.items()
    ]


def page_config(role: Role) -> dict:
    """JupyterLab's labconfig/page_config.json: nbgrader's lab plugins this role does not get, disabled."""
    if role == "off":
        return {"disabledExtensions": {LAB_EXTENSION: True}}
    return {
        "disabledExtensions": {
            f"{LAB_EXTENSION}:{plugin}": True for plugin, roles in LAB_PLUGINS.items() if role not in roles
        }
    }


# Staff's collect takes only submissions whose folder belongs to the student it is named for: nbgrader
# itself only warns, and a student could name a newer folder after someone else to replace their work.
OWNER_CHECKED_COLLECT = '''
import pwd as _pwd
from nbgrader.exchange.default.collect import ExchangeCollect as _Collect


def _genuine(record, inbound):
    try:
        owner = _pwd.getpwuid(os.lstat(os.path.join(inbound, record["filename"])).st_uid).pw_name
    except (KeyError, OSError):
        return False
    return owner == record["username"]


class OwnerCheckedCollect(_Collect):
    """nbgrader's collect, skipping submissions not owned by the student they are named for."""

    def _sort_by_timestamp(self, records):
        # The newest genuine submission first: a forged one is never picked over it.
        for record in records:
            if not _genuine(record, self.inbound_path):
                skipped = (record["filename"], record["username"])
                self.log.warning("coursehub: skipped %s: not owned by %s", *skipped)
        return sorted(records, key=lambda r: (_genuine(r, self.inbound_path), r["timestamp"]), reverse=True)

    def copy_files(self):
        self.src_records = [r for r in self.src_records if _genuine(r, self.inbound_path)]
        super().copy_files()


c.ExchangeFactory.collect = OwnerCheckedCollect
'''


# A submission readable by its student and the course's staff group only: nbgrader leaves it world-readable
# (0777, 0644), hidden only by its random name. The student owns it, so may give the staff group (of which
# they are not a member) read access through a POSIX ACL (linux/posix_acl_xattr.h's binary form).
PRIVATE_SUBMIT = '''
import struct as _struct
from nbgrader.exchange.default.submit import ExchangeSubmit as _Submit

_NONE = 0xFFFFFFFF


def _private(path, staff_gid, folder):
    own, staff = (7, 5) if folder else (6, 4)
    # user::own, group::---, group:<staff>:r(x), mask::r(x), other::---
    entries = [(1, own, _NONE), (4, 0, _NONE), (8, staff, staff_gid), (0x10, staff, _NONE), (0x20, 0, _NONE)]
    acl = _struct.pack("<I", 2) + b"".join(_struct.pack("<HHI", *entry) for entry in entries)
    os.setxattr(path, "system.posix_acl_access", acl, follow_symlinks=False)


class PrivateSubmit(_Submit):
    """nbgrader's submit, then the submission made readable by its owner and the staff group only."""

    def copy_files(self):
        super().copy_files()
        staff_gid = os.stat(self.inbound_path).st_gid
        try:
            for folder, _, files in os.walk(os.path.join(self.inbound_path, self.assignment_filename), False):
                for name in files:
                    _private(os.path.join(folder, name), staff_gid, False)
                _private(folder, staff_gid, True)
        except OSError as exc:
            self.log.warning("coursehub: this submission stays readable by its name only: %s", exc)


c.ExchangeFactory.submit = PrivateSubmit
'''


def nbgrader_config(course: str, role: Role) -> str:
    """The nbgrader_config.py a server of `course` gets (root's, read-only in the sandbox)."""
    if role == "off":
        return "# coursehub: this course does not use nbgrader.\n"
    lines = [
        f"# Written by coursehub for course {course!r} ({role}); regenerated at each server start.",
        "import os",
        "c = get_config()  # noqa: F821",
        f"c.CourseDirectory.course_id = {course!r}",
        f"c.Exchange.root = {str(EXCHANGE_MOUNT)!r}",
    ]
    if role == "staff":
        lines += [
            # Inside the home (a link to the staff-only folder): formgrader needs it under the server's root.
            f"c.CourseDirectory.root = os.path.join(os.environ['HOME'], {course!r}, {GRADING_LINK!r})",
            "c.CourseDirectory.groupshared = True",
        ]
        return "\n".join(lines) + "\n" + PRIVATE_SUBMIT + OWNER_CHECKED_COLLECT
    return "\n".join(lines) + "\n" + PRIVATE_SUBMIT


def config_files(course: str, role: Role) -> dict[str, str]:
    """Relative path -> text of the generated config folder."""
    return {
        "nbgrader_config.py": nbgrader_config(course, role),
        "labconfig/page_config.json": json.dumps(page_config(role), indent=1) + "\n",
    }
