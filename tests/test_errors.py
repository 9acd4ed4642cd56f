"""One exception tree: every exception class coursehub defines lives in errors.py and is a CoursehubError."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from coursehub import errors

PACKAGE = Path(errors.__file__).parent


def exception_classes_outside_errors() -> list[str]:
    """'module:Class' for each class whose bases name an Exception or Error, outside errors.py."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(base) for base in node.bases]
                if any(b.endswith(("Error", "Exception", "Refused")) for b in bases):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    return found


def test_exceptions_are_defined_only_in_errors_py():
    assert exception_classes_outside_errors() == []


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("coursehub.host.backup", "BackupError"),
        ("coursehub.launch.links", "LinkError"),
        ("coursehub.launch.binder.launch", "LaunchRefused"),
        ("coursehub.launch.binder.spec", "BinderSpecError"),
        ("coursehub.tools.loadtest.failures", "PhaseError"),
        ("coursehub.auth.ags", "GradesError"),
        ("coursehub.clients.ags", "PlatformError"),
    ],
)
def test_moved_exceptions_keep_their_import_names_and_join_the_tree(module, name):
    cls = getattr(importlib.import_module(module), name)
    assert cls is getattr(errors, name) and issubclass(cls, errors.CoursehubError)
