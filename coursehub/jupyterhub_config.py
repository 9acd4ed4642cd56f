"""The shim JupyterHub loads: coursehub.yaml -> traitlets config, then jupyterhub_config.d/."""
# ruff: noqa: F821  (get_config and load_subconfig are provided by traitlets when this file loads)

import os
from pathlib import Path

from coursehub.auth.hooks import resolve_authenticator, with_coursehub
from coursehub.configfile import load_settings
from coursehub.hubconfig import build
from coursehub.hubdb import use_write_ahead_log
from coursehub.paths import StatePaths
from coursehub.runtime import runtime_for
from coursehub.settings import Settings

c = get_config()
_effective = os.environ.get("COURSEHUB_SETTINGS_JSON")
_file = os.environ.get("COURSEHUB_CONFIG")
_settings = (
    Settings.model_validate_json(_effective) if _effective else load_settings(Path(_file) if _file else None)
)
_paths = StatePaths(Path(os.environ["COURSEHUB_STATE_DIR"]))
_runtime = runtime_for(_paths, Path(os.environ["COURSEHUB_USER_ENV"]), _settings)
c.merge(build(_settings, _runtime))
use_write_ahead_log()
# Whatever authenticator is configured also serves coursehub's launch links.
c.JupyterHub.authenticator_class = with_coursehub(
    resolve_authenticator(str(c.JupyterHub.authenticator_class))
)

# The escape hatch: plain JupyterHub config files, applied last, in name order.
for _extra in sorted(_paths.config_d.glob("*.py")):
    load_subconfig(str(_extra))
