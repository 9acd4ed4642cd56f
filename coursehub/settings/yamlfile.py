"""Reading coursehub.yaml: YAML in, Settings out, or errors naming key, line and what is allowed."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from coursehub.errors import ConfigError
from coursehub.settings import Settings

DEFAULT_NAME = "coursehub.yaml"
# The installed hub's config: a command run from any folder acts on that hub (never on ./coursehub.yaml).
CONFIG_HOME = Path("/etc/coursehub") / DEFAULT_NAME
Loc = tuple[str | int, ...]


def config_path(explicit: Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """Where the config lives (maybe not yet): the one given, else $COURSEHUB_CONFIG, else CONFIG_HOME."""
    env = os.environ if environ is None else environ
    if explicit is not None:
        return explicit
    if env.get("COURSEHUB_CONFIG"):
        return Path(env["COURSEHUB_CONFIG"])
    return CONFIG_HOME


def find_config(explicit: Path | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The config file to read: one named (--config, $COURSEHUB_CONFIG) even if missing, so that reading it
    fails loudly; else CONFIG_HOME when it exists; else None (the built-in default)."""
    env = os.environ if environ is None else environ
    path = config_path(explicit, env)
    named = explicit is not None or bool(env.get("COURSEHUB_CONFIG"))
    return path if named or path.exists() else None


def stray_config_note(cwd: Path, in_use: Path | None) -> str | None:
    """A note when ./coursehub.yaml exists but another config (or the default) is in use."""
    local = cwd / DEFAULT_NAME
    if not local.is_file() or (in_use is not None and local.resolve() == in_use.resolve()):
        return None
    used = str(in_use) if in_use is not None else f"the built-in default ({CONFIG_HOME} does not exist)"
    return f"note: {local} is not read; coursehub uses {used}. Pass --config {local} to use it."


def load_settings(path: Path | None) -> Settings:
    """Settings from `path`, or the embedded default when `path` is None."""
    if path is None:
        return Settings()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    return parse_settings(text, str(path))


def parse_settings(text: str, source: str = DEFAULT_NAME) -> Settings:
    """Settings from YAML text; errors cite `source` and the line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = _line_index(node)
        messages = [_describe(err, lines, source) for err in exc.errors()]
        raise ConfigError("\n".join(messages)) from None


def _describe(err: Any, lines: dict[Loc, int], source: str) -> str:
    """One readable line for one pydantic error."""
    loc = _yaml_loc(tuple(err["loc"]))
    key = ".".join(str(part) for part in loc) or "(top level)"
    line = _nearest_line(loc, lines)
    where = f"{source}:{line}" if line else source
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(loc[:-1])) or "nothing"
        return f"{where}: unknown key '{key}'; allowed here: {allowed}"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {key}: {message}"


def _yaml_loc(loc: Loc) -> Loc:
    """Drop pydantic's union-branch labels (e.g. 'literal[...]') that are not YAML keys."""
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function"))))


def _nearest_line(loc: Loc, lines: dict[Loc, int]) -> int | None:
    """The line of `loc`, or of its closest ancestor present in the file."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _line_index(node: yaml.Node | None, prefix: Loc = ()) -> dict[Loc, int]:
    """Map every key path in the YAML document to its 1-based line."""
    index: dict[Loc, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            loc = (*prefix, key_node.value)
            index[loc] = key_node.start_mark.line + 1
            index.update(_line_index(value_node, loc))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index[(*prefix, i)] = item.start_mark.line + 1
            index.update(_line_index(item, (*prefix, i)))
    return index


def _allowed_keys(loc: Loc) -> list[str]:
    """Field names of the settings model found at `loc`."""
    model: Any = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        model = _model_in(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    """The BaseModel inside an annotation such as `list[Course]` or `X | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None or get_args(annotation):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


SECRET_TRAIT = re.compile(
    r"secret|passw|(^|_)(api_|access_)?token$|private_key|signing_key|consumers", re.IGNORECASE
)


def dump_settings(settings: Settings) -> str:
    """The effective settings as YAML, sizes written the way users write them, secrets masked."""
    data = settings.model_dump(mode="json")
    data["auth"] = {key: value for key, value in data["auth"].items() if value is not None}
    # auth.* holds only 'env:'/'file:' references; the pass-through section may hold real secrets.
    for traits in data.get("jupyterhub", {}).values():
        for trait in traits:
            if SECRET_TRAIT.search(trait):
                traits[trait] = "********"
    return yaml.safe_dump(data, sort_keys=False)
