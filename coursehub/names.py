"""Names shared by the hub config, the hub's handlers and the CLI: groups, services and their scopes."""

from __future__ import annotations

# The hub's API route that ends a user's sessions, tokens and servers (hub/revoke.py), under /hub/api/;
# here so that the CLI names it without importing JupyterHub (0.7 CPU-s of every `coursehub up`).
REVOKE_PATH = "coursehub/revoke"

# A course's staff get the JupyterHub role <prefix><course> (hubconfig/staff.py).
STAFF_ROLE_PREFIX = "course-staff-"

# Temporary users (tmplogin guests) belong here; only they are culled with their files.
TEMPORARY_GROUP = "coursehub-temporary"
TEMP_CULLER = "coursehub-temporary-culler"
# Anonymous Binder users (also temporary: their files go with them).
BINDER_GROUP = "coursehub-binder"
BINDER_CULLER = "coursehub-binder-culler"
# One machine's cullers share a process (hub/cullers.py): its loops, as JSON, in this variable; the
# cullers that may lend their service's token to it.
CULLERS_ENV = "COURSEHUB_CULLERS"
SHARED_CULLER_NAMES = (TEMP_CULLER, BINDER_CULLER)

# What jupyterhub-idle-culler needs to stop idle servers (and, with admin:users, to delete users).
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
# The `coursehub` CLI's own service token (status, down, accounts).
CLI_SCOPES = [
    "list:users",
    "read:users",
    "read:servers",
    "delete:servers",
    "admin:users",
    "read:metrics",
]

# The grade CSV: `coursehub course grades --csv` writes it, `coursehub course lti-grades --csv` reads it.
GRADES_CSV_COLUMNS = ("username", "assignment", "score", "max_score")
