"""The shim JupyterHub loads: coursehub.yaml -> traitlets config, then jupyterhub_config.d/."""
# ruff: noqa: F821  (get_config and load_subconfig are provided by traitlets when this file loads)

import os
from pathlib import Path

from coursehub.host.runtime import runtime_for
from coursehub.hub.extensions import apply_hub_extensions
from coursehub.hub.sqlite import use_write_ahead_log
from coursehub.hubconfig import build
from coursehub.paths import StatePaths
from coursehub.settings import Settings
from coursehub.settings.yamlfile import load_settings

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
apply_hub_extensions(c)

# The escape hatch: plain JupyterHub config files, applied last, in name order.
for _extra in sorted(_paths.config_d.glob("*.py")):
    load_subconfig(str(_extra))
