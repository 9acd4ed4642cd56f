"""Building blocks of the settings model: the strict base class and sizes."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

COURSE_NAME = r"^[a-z][a-z0-9-]{0,29}$"  # also a valid JupyterHub named-server name
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(value: Any) -> int:
    """Turn '512M', '1.5G' or a byte count into bytes; reject negatives and junk."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512M or 2G")
    if isinstance(value, int | float):
        number, unit = float(value), ""
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a size: use a number with K, M, G or T, e.g. 2G")
        number, unit = float(match.group(1)), match.group(2).upper()
    if number <= 0:
        raise ValueError(f"{value!r} must be positive")
    return int(number * _UNITS[unit])


def format_size(size: int) -> str:
    """Render bytes the way a user would write them in coursehub.yaml."""
    for unit in ("T", "G", "M", "K"):
        if size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)


# Every memory setting: read as '512M', '1.5G' or bytes, written back the way users write it.
Size = Annotated[int, BeforeValidator(parse_size), PlainSerializer(format_size, when_used="json")]


class Model(BaseModel):
    """Base of every section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
