"""The config reference in the README, generated from the settings model so the two cannot drift."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from coursehub.settings import Settings

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def render_reference(model: type[BaseModel] = Settings) -> str:
    """Markdown: one table per section of coursehub.yaml."""
    defaults = model().model_dump(mode="json")
    top_rows, sections = [], []
    for name, field in model.model_fields.items():
        sub = _submodel(field)
        if sub is not None and not _is_list(field):
            sections.append(_section(name, sub, field, defaults[name]))
        elif sub is not None:
            top_rows.append(_row(name, field, defaults.get(name)))
            sections.append(_section(f"{name}[]", sub, field, _item_defaults(sub)))
        else:
            top_rows.append(_row(name, field, defaults.get(name)))
    header = "| key | default | meaning |\n|---|---|---|\n"
    out = ["### Top level\n\n" + header + "\n".join(top_rows) + "\n"]
    out += sections
    return "\n".join(out)


def _section(name: str, sub: type[BaseModel], field: FieldInfo, defaults: dict) -> str:
    """A section's table, nested sections flattened with dotted keys."""
    rows = _rows(name, sub, defaults)
    doc = (sub.__doc__ or "").strip().splitlines()[0]
    return f"### `{name}`: {doc}\n\n| key | default | meaning |\n|---|---|---|\n" + "\n".join(rows) + "\n"


def _rows(prefix: str, model: type[BaseModel], defaults: dict) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}"
        sub = _submodel(field)
        if sub is not None and not _is_list(field) and isinstance(defaults.get(name), dict):
            rows += _rows(key, sub, defaults[name])
        elif sub is not None and not _is_list(field) and defaults.get(name) is None:
            # An optional section (auth.github...): its own keys, under a row saying what it is.
            doc = (sub.__doc__ or "").strip().splitlines()[0]
            rows.append(f"| `{key}` | `null` | Optional section: {doc} |")
            rows += _rows(key, sub, _item_defaults(sub))
        else:
            rows.append(_row(key, field, defaults.get(name)))
    return rows


def _item_defaults(model: type[BaseModel]) -> dict:
    """Defaults of a list item's fields; required ones show as 'required'."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if field.is_required():
            out[name] = "(required)"
        elif field.default_factory is not None:
            out[name] = field.default_factory().model_dump(mode="json")  # type: ignore[call-arg]
        else:
            out[name] = field.default
    return out


def _row(key: str, field: FieldInfo, default: Any) -> str:
    """One table row: key, default as YAML would show it, description."""
    shown = json.dumps(default) if not isinstance(default, str) else default
    if isinstance(default, list) and default and isinstance(default[0], dict):
        shown = "(see below)" if key == "courses" else f"{len(default)} item(s)"
    description = (field.description or "").replace("|", "\\|")
    return f"| `{key}` | `{shown}` | {description} |"


def _submodel(field: FieldInfo) -> type[BaseModel] | None:
    from coursehub.settings.yamlfile import _model_in

    return _model_in(field.annotation)


def _is_list(field: FieldInfo) -> bool:
    return "list[" in str(field.annotation)


def replace_reference(text: str) -> str:
    """`text` (the README) with its reference section regenerated."""
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"README has no {START} … {END} section")
    return pattern.sub(lambda _: f"{START}\n{render_reference()}\n{END}", text)
