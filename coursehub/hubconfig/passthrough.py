"""The `jupyterhub:` section over coursehub's config: scalars win, containers are added to, names checked."""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from traitlets.config import Config

from ..errors import ConfigError

# Replacing part of a command leaves no command; these are replaced whole or not at all.
WHOLE = {"command", "cmd"}
# Lists whose first entries win (templates): the admin's go first, coursehub's stay found after them.
ADMIN_FIRST = {("JupyterHub", "template_paths")}
# Configured by import path, not entry points; known by name (importing kubespawner here would load
# the kube config of whoever runs `coursehub config check`).
OPTIONAL = {"KubeSpawner"}
ELSEWHERE = (
    "to replace it, set it in a Python file in <state>/jupyterhub_config.d/ "
    "(on Kubernetes: hub.extraConfig), which is applied after coursehub's config"
)


def apply_passthrough(passthrough: dict[str, dict[str, Any]], c: Config) -> None:
    """Lay the `jupyterhub:` section over `c`: unknown classes and removals of coursehub's own are refused."""
    hub = passthrough.get("JupyterHub", {})
    known: set[str] | None = None
    for class_name, traits in passthrough.items():
        # A class coursehub configures is known; any other loads every authenticator and spawner
        # installed to look for it (8 MiB of the hub's memory: hub/app.py), so only when one is named.
        if class_name not in c:
            if known is None:
                known = configurable_names(c, [hub.get("authenticator_class"), hub.get("spawner_class")])
            if class_name not in known:
                raise ConfigError(unknown_class(class_name, known))
        for trait, value in traits.items():
            key = f"jupyterhub.{class_name}.{trait}"
            ours = c[class_name][trait] if trait in c.get(class_name, {}) else None
            c[class_name][trait] = merge_trait(key, (class_name, trait), ours, value)


def merge_trait(key: str, where: tuple[str, str], ours: Any, theirs: Any) -> Any:
    """The admin's value for a trait coursehub set to `ours` (None: not set)."""
    if ours is None or not isinstance(ours, list | dict | set | frozenset | tuple):
        return theirs  # scalars: the admin's word is last, as documented
    if where[1] in WHOLE:
        raise ConfigError(f"{key}: coursehub sets this command itself; {ELSEWHERE}")
    merged = add_to(key, ours, theirs)
    if where in ADMIN_FIRST and isinstance(merged, list):
        extra = merged[len(ours) :]
        return [*extra, *ours]
    return merged


def add_to(key: str, ours: Any, theirs: Any) -> Any:
    """`theirs` added to `ours`; changing or removing what coursehub set is a ConfigError."""
    if ours == theirs:
        return ours
    if isinstance(ours, dict):
        if not isinstance(theirs, dict):
            raise ConfigError(f"{key}: expected a mapping (coursehub's own entries are kept and added to)")
        return {
            **ours,
            **{k: add_to(f"{key}.{k}", ours[k], v) if k in ours else v for k, v in theirs.items()},
        }
    if isinstance(ours, set | frozenset | list | tuple) and not isinstance(
        theirs, list | set | tuple | frozenset
    ):
        raise ConfigError(f"{key}: expected a list (coursehub's own entries are kept and added to)")
    if isinstance(ours, set | frozenset):
        return set(ours) | set(theirs)
    if isinstance(ours, list | tuple):
        if ours and all(isinstance(item, dict) and "name" in item for item in ours):
            return add_named(key, list(ours), list(theirs))
        return [*ours, *(item for item in theirs if item not in ours)]
    raise ConfigError(f"{key}: coursehub sets '{ours}' here; {ELSEWHERE}")


def add_named(key: str, ours: list[dict], theirs: list) -> list[dict]:
    """Services, roles and the like: the admin's entries added by name, coursehub's left as they are."""
    mine = {item["name"]: item for item in ours}
    out = list(ours)
    for item in theirs:
        if not (isinstance(item, dict) and "name" in item):
            raise ConfigError(f"{key}: every entry needs a 'name'")
        if item["name"] in mine:
            if mine[item["name"]] != item:
                raise ConfigError(
                    f"{key}: '{item['name']}' is coursehub's own and cannot be redefined; {ELSEWHERE}"
                )
            continue
        out.append(item)
    return out


def unknown_class(name: str, known: set[str]) -> str:
    """The message for a class name JupyterHub would silently ignore."""
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name, sorted(known), n=3) or [
        lowered[k] for k in difflib.get_close_matches(name.lower(), sorted(lowered), n=3)
    ]
    suggestion = f"; did you mean {', '.join(close)}?" if close else ""
    return (
        f"jupyterhub.{name}: JupyterHub loads no configurable class of that name, so these traits "
        f"would be ignored (class names are case-sensitive){suggestion}"
    )


def configurable_names(c: Config, also: list[Any] | None = None) -> set[str]:
    """Names of the classes JupyterHub loads (entry points, as its _load_classes does) and their bases."""
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import Authenticator
    from jupyterhub.crypto import CryptKeeper
    from jupyterhub.spawner import Spawner
    from jupyterhub.traitlets import EntryPointType
    from traitlets.config import Configurable

    classes: set[type] = {JupyterHub, Spawner, Authenticator, CryptKeeper}
    names = set(c.keys())  # sections coursehub itself configures
    for trait in JupyterHub.class_traits(config=True).values():
        if isinstance(trait, EntryPointType):
            for entry_point in trait.load_entry_points().values():
                try:
                    classes.add(entry_point.load())
                except Exception:  # noqa: BLE001 - a broken plugin is JupyterHub's to report, as it does
                    continue
    section = c.get("JupyterHub", {})
    names |= OPTIONAL
    for target in (section.get("authenticator_class"), section.get("spawner_class"), *(also or [])):
        if isinstance(target, type):
            classes.add(target)
        elif isinstance(target, str) and "." in target:
            module, _, attr = target.rpartition(".")
            try:
                classes.add(getattr(importlib.import_module(module), attr))
            except (ImportError, AttributeError):
                names.add(attr)
    for cls in classes:
        names.update(
            base.__name__ for base in cls.__mro__ if isinstance(base, type) and issubclass(base, Configurable)
        )
    return names
