"""The package layout: imports point one way, no module cycles, payloads alone, README names the tree."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "coursehub"

# Each unit's rank: a module may import units of its own rank or lower, never higher.
# Leaves (rank 0) import only other leaves; payloads import nothing of coursehub at all.
RANKS = {
    "coursehub": 0,  # the package's own __init__ (version)
    "errors": 0,
    "names": 0,
    "paths": 0,
    "metrics": 0,
    "clientaddr": 0,
    "tcppeer": 0,
    "stats": 0,
    "payloads": 0,
    "settings": 1,
    "clients": 2,
    "auth": 2,
    "courses": 2,
    "spawner": 2,
    "launch": 2,
    "hubconfig": 3,
    "kubernetes": 3,
    "hub": 4,
    "host": 4,
    "tools": 5,
    "cli": 6,
    "__main__": 7,
}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts).removesuffix(".__init__")
        found[name] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The coursehub modules `name` imports anywhere in its body (lazy and TYPE_CHECKING imports count)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for candidate in candidates:
            if candidate != "coursehub" and not candidate.startswith("coursehub."):
                continue
            while candidate not in known and "." in candidate:
                candidate = candidate.rpartition(".")[0]
            # A package's own __init__ runs before its modules anyway: not an edge.
            if candidate != name and not name.startswith(candidate + "."):
                targets.add(candidate)
    return targets


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "coursehub"


def test_every_unit_has_a_rank():
    assert {unit(m) for m in modules()} <= set(RANKS), "a new top-level unit needs a rank in RANKS"


def test_imports_point_one_way():
    wrong = sorted(
        f"{a} -> {b}" for a, targets in graph().items() for b in targets if RANKS[unit(b)] > RANKS[unit(a)]
    )
    assert wrong == [], "imports against the layering:\n" + "\n".join(wrong)


def test_leaves_import_only_leaves_and_payloads_nothing():
    wrong = []
    for a, targets in graph().items():
        for b in targets:
            if unit(a) == "payloads" or (RANKS[unit(a)] == 0 and RANKS[unit(b)] != 0):
                wrong.append(f"{a} -> {b}")
    assert wrong == []


def test_no_module_import_cycles():
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    assert cycles == []


def test_few_modules_sit_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 10, top


def test_the_readme_architecture_names_every_unit():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    units = [u for u in RANKS if u not in ("coursehub", "__main__")]
    missing = sorted(u for u in units if f"`{u}" not in section and f"{u}/" not in section)
    assert missing == [], f"README's architecture section does not name: {missing}"


def test_the_checker_sees_a_violation(tmp_path):
    """The rules can fail: a leaf importing the settings is caught by the same resolution."""
    leaf = tmp_path / "leaf.py"
    leaf.write_text("from .settings import Settings\n")
    known = {"coursehub.settings": PACKAGE / "settings" / "__init__.py", "coursehub.leaf": leaf}
    assert imported("coursehub.leaf", leaf, known) == {"coursehub.settings"}
