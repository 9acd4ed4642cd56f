"""nbgrader for a course with `grading: nbgrader`, described as data: the exchange's layout and modes, the
staff-only course folder, the generated nbgrader config and which extensions each role gets. Pure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..auth.lti_mapping import LaunchTarget

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
# "others": they read released assignments and open feedback only by its name (a hash of their submission's
# 128-hex-digit secret). The root is writable by no one but root: nbgrader wants it 0777 only for its own
# check of students' commands (staff's groupshared ones never check), which the students' config replaces.
# inbound here is only where the students' inbound folders are bound (see INBOUND_DIRS).
EXCHANGE_DIRS = (
    ("", 0o755),
    ("{course}", 0o2775),
    ("{course}/outbound", 0o2775),
    ("{course}/inbound", 0o2751),
    ("{course}/feedback", 0o2771),
)
SOURCE_MODE = 0o2770  # the staff's course folder: the staff group only
OWN_INBOUND_MODE = 0o2770  # inbound/<student>: its student (the owner) and the staff group
# The students' inbound folders live on the homes' file system, under the homes' folder (hidden in every
# sandbox), each in its student's disk-quota project: what a student submits counts against the quota of
# their home, and fills neither the state folder's file system nor anyone else's quota. One folder per
# student, made by the hub, which only that student's sandbox shows (as inbound itself) and only the student
# and staff may enter; only root adds to inbound, staff list it (bound over the exchange's inbound).
INBOUND_FOLDER = ".coursehub-grading"  # in the homes' folder: no account name starts with a dot
INBOUND_DIRS = (("", 0o711), ("{course}", 0o711), ("{course}/inbound", 0o2751))


@dataclass(frozen=True)
class GradingPaths:
    """A course's grading folders on the host, under the hub's state folder."""

    state: Path
    course: str
    homes: Path | None = None  # the homes' folder (sandbox.home_root): where the inbound folders are

    @property
    def inbound(self) -> Path:
        """The course's inbound: one folder per student, on the homes' file system when it is known."""
        if self.homes is None:
            return self.exchange / self.course / "inbound"
        return self.homes / INBOUND_FOLDER / self.course / "inbound"

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

    def own_inbound(self, account: str) -> Path:
        """A student's inbound folder: where their submissions go, and only theirs."""
        return self.inbound / account

    @property
    def gradebook(self) -> Path:
        return self.source / "gradebook.db"

    def config(self, role: Role) -> Path:
        """The generated Jupyter config folder a server of this role gets."""
        return self.state / "grading" / "_config" / (self.course if role != "off" else "_off") / role


def grading_binds(paths: GradingPaths, role: Role, account: str) -> list[tuple[Path, Path, bool]]:
    """(host folder, its place in the sandbox, read-only) for a `role` server run as Unix user `account`."""
    binds = [(paths.config(role), CONFIG_MOUNT, True)]
    if role == "off":
        return binds
    binds.append((paths.exchange, EXCHANGE_MOUNT, False))
    inbound = EXCHANGE_MOUNT / paths.course / "inbound"
    if role == "student":  # their own folder in place of inbound: no one else's submissions in view
        binds.append((paths.own_inbound(account), inbound, False))
    else:
        binds.append((paths.inbound, inbound, False))
        binds.append((paths.source, GRADING_MOUNT, False))
    return binds


def role_of(user: Any, course: str, staff: Iterable[str]) -> Role:
    """A user's part in a grading course: its staff (named, or an LTI Instructor or TA), else a student."""
    groups = {getattr(group, "name", str(group)) for group in getattr(user, "groups", [])}
    return "staff" if user.name in staff or LaunchTarget.staff_group(course) in groups else "student"


def staff_group(course: str, prefix: str = "ch-") -> str:
    """The Unix group of a course's staff (per hub: its account prefix); users' Unix names have no '_'."""
    name = f"{prefix}staff_{course}"
    if len(name) <= 32:
        return name
    return f"{prefix[:8]}staff_{hashlib.sha256((prefix + course).encode()).hexdigest()[:16]}"


def exchange_dirs(course: str) -> list[tuple[str, int]]:
    """(path relative to the exchange root, mode) of every folder the hub makes, parents first."""
    return [(path.format(course=course), mode) for path, mode in EXCHANGE_DIRS]


def inbound_dirs(course: str) -> list[tuple[str, int]]:
    """(path relative to the homes' INBOUND_FOLDER, mode) of the inbound folders' parents, parents first."""
    return [(path.format(course=course), mode) for path, mode in INBOUND_DIRS]


def server_extension_args(role: Role) -> list[str]:
    """Command-line switches for nbgrader's server extensions (installed in every environment)."""
    return [
        f"--ServerApp.jpserver_extensions=nbgrader.server_extensions.{name}={role in roles}"
        for name, roles in SERVER_EXTENSIONS.items()
    ]


# JupyterHub's single-user servers send `frame-ancestors 'none'`, and JupyterLab shows the formgrader in an
# iframe of the server's own /formgrader: refused ("refused to connect", nbgrader issue 1870). With an origin
# per user (hub.subdomains) 'self' is that user's own servers only, whose scripts can already read and drive
# these pages, so staff servers let their own origin frame them. On one shared origin 'self' would be every
# user's server and the hub: there the policy stays, and staff open the formgrader in a tab of its own.
FRAME_SELF = {"headers": {"Content-Security-Policy": "frame-ancestors 'self'"}}


def frame_args(role: Role, own_origin: bool) -> list[str]:
    """Switches that let a staff server's own origin frame its pages (the formgrader panel)."""
    if role != "staff" or not own_origin:
        return []
    return [f"--ServerApp.tornado_settings={json.dumps(FRAME_SELF)}"]


def page_config(role: Role) -> dict:
    """JupyterLab's labconfig/page_config.json: nbgrader's lab plugins this role does not get, disabled."""
    if role == "off":
        return {"disabledExtensions": {LAB_EXTENSION: True}}
    return {
        "disabledExtensions": {
            f"{LAB_EXTENSION}:{plugin}": True for plugin, roles in LAB_PLUGINS.items() if role not in roles
        }
    }


# Staff's collect, over the per-student inbound folders: a submission counts only in the folder of the student
# it is named for (nbgrader's own trusts the name: a student could hand in a newer one named after another),
# and is copied without following a symlink (one in a submission would copy the staff's files, say the
# assignment's solutions, into a feedback the student then fetches).
LOCATED_COLLECT = '''
import glob as _glob
import shutil as _shutil
import stat as _stat
from nbgrader.api import Gradebook as _Gradebook, MissingEntry as _MissingEntry
from nbgrader.exchange.default.collect import ExchangeCollect as _Collect


def _copy_no_links(src, dest, ignore, log):
    """src's files and folders into dest, never through a symlink (those are left out and logged)."""
    os.makedirs(dest, exist_ok=True)
    for folder, folders, files in os.walk(src):
        target = os.path.join(dest, os.path.relpath(folder, src))
        skip = ignore(folder, [*folders, *files])
        for name in [*folders, *files]:
            if os.path.islink(os.path.join(folder, name)):
                log.warning("coursehub: left out the symlink %s", os.path.join(folder, name))
                skip.add(name)
        folders[:] = [d for d in folders if d not in skip]
        files = [f for f in files if f not in skip]
        for name in folders:
            os.makedirs(os.path.join(target, name), exist_ok=True)
        for name in files:
            try:
                fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError as exc:
                log.warning("coursehub: left out %s: %s", os.path.join(folder, name), exc)
                continue
            with os.fdopen(fd, "rb") as source, open(os.path.join(target, name), "wb") as copy:
                if _stat.S_ISREG(os.fstat(source.fileno()).st_mode):
                    _shutil.copyfileobj(source, copy)


class LocatedCollect(_Collect):
    """nbgrader's collect over inbound/<student>/: only a student's own folder speaks for them."""

    def init_src(self):
        if self.coursedir.course_id == "":
            self.fail("No course id specified. Re-run with --course flag.")
        self.course_path = os.path.join(self.root, self.coursedir.course_id)
        self.inbound_path = os.path.join(self.course_path, "inbound")
        if not os.access(self.inbound_path, os.R_OK | os.X_OK):
            self.fail("You don't have read permissions for the directory: {}".format(self.inbound_path))
        student = self.coursedir.student_id or "*"
        wanted = "{}+{}+*".format(student, self.coursedir.assignment_id)
        pattern = os.path.join(self.inbound_path, "*", wanted)
        groups = {}
        for path in _glob.glob(pattern):
            owner, name = os.path.split(os.path.relpath(path, self.inbound_path))
            record = self._path_to_record(name)
            if record["username"] != owner or os.path.islink(path):
                self.log.warning("coursehub: skipped %s in %s's folder", name, owner)
                continue
            if not os.path.isfile(os.path.join(path, "timestamp.txt")):  # a submit that did not finish
                self.log.warning("coursehub: skipped the incomplete %s in %s's folder", name, owner)
                continue
            record["filename"] = os.path.join(owner, name)
            groups.setdefault(owner, []).append(record)
        with _Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
            try:
                self.duedate = gb.find_assignment(self.coursedir.assignment_id).duedate
            except _MissingEntry:
                self.duedate = None
        self.src_records = []
        for records in groups.values():
            records = self._sort_by_timestamp(records)
            on_time = [r for r in records if self.duedate is None or r["timestamp"] <= self.duedate]
            self.src_records.append(on_time[0] if self.before_duedate and on_time else records[0])

    def do_copy(self, src, dest, log=None):
        _copy_no_links(src, dest, _shutil.ignore_patterns(*self.coursedir.ignore), log or self.log)


c.ExchangeFactory.collect = LocatedCollect
c.ExchangeCollect.check_owner = False  # the folder says who; owners are not visible in every spawn mode
'''


# Students' fetch, list and submit: nbgrader checks that the exchange root is writable by them (it wants it
# 0777); here it is not, so that nobody can store anything there, and the check is only that it exists. A
# submit that cannot be written (the student's disk quota is full, or the homes' file system) leaves nothing
# half-written in inbound nor in the student's submission cache, and says what to do.
STUDENT_EXCHANGE = '''
import shutil as _shutil
from nbgrader.exchange.default import (
    ExchangeFetchAssignment as _FetchAssignment,
    ExchangeFetchFeedback as _FetchFeedback,
    ExchangeList as _List,
    ExchangeSubmit as _Submit,
)


class _HubMadeRoot:
    def ensure_root(self):
        """The hub made the exchange root, writable by root alone: it need only exist."""
        if not os.path.isdir(self.root):
            self.fail("The course's exchange is missing ({}): please tell your instructor.".format(self.root))


class FetchAssignment(_HubMadeRoot, _FetchAssignment):
    pass


class FetchFeedback(_HubMadeRoot, _FetchFeedback):
    pass


class List(_HubMadeRoot, _List):
    pass


class Submit(_HubMadeRoot, _Submit):
    def copy_files(self):
        try:
            super().copy_files()
        except OSError as exc:  # shutil.Error (copytree's) too: EDQUOT, ENOSPC
            partial = [os.path.join(self.inbound_path, self.assignment_filename)]
            cached = self.assignment_filename.rsplit("+", 1)[0] if self.add_random_string else None
            partial.append(os.path.join(self.cache_path, cached or self.assignment_filename))
            for path in partial:
                _shutil.rmtree(path, ignore_errors=True)
            errors = exc.args[0] if isinstance(exc, _shutil.Error) and exc.args and exc.args[0] else None
            why = str(errors[0][2]) if isinstance(errors, list) else (exc.strerror or str(exc))
            self.fail(
                "Your submission could not be written ({}), so nothing was submitted; your files are "
                "unchanged. If your disk quota is full, make room in your home (submissions count "
                "against it too) and submit again.".format(why)
            )


c.ExchangeFactory.fetch_assignment = FetchAssignment
c.ExchangeFactory.fetch_feedback = FetchFeedback
c.ExchangeFactory.list = List
c.ExchangeFactory.submit = Submit
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
        return "\n".join(lines) + "\n" + LOCATED_COLLECT
    return "\n".join(lines) + "\n" + STUDENT_EXCHANGE


def config_files(course: str, role: Role) -> dict[str, str]:
    """Relative path -> text of the generated config folder."""
    return {
        "nbgrader_config.py": nbgrader_config(course, role),
        "labconfig/page_config.json": json.dumps(page_config(role), indent=1) + "\n",
    }
