"""Imports run one way: every module of ``jaxrl`` imports only modules of its
own layer or of layers below it (DESIGN.md's layer list)::

    cli, export -> distributed -> run -> feedback -> agents
        -> config, networks, replay, envs, mesh, compilation, cpu -> ops

The imports are read from the source with ``ast`` (those inside functions
too, which a lazy import hides from a run-time check), so a new upward
import fails here before anyone trips over a cycle. The few upward imports
that remain are listed in ``EXCEPTIONS`` with their reason; one that
disappears must be removed from the list as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "jaxrl"

# Top first. Modules at the top of the package (cli.py, config.py, ...) and
# subpackages (run/, agents/, ...) are named by their first component.
LAYERS = (
    ("__init__", "__main__", "cli", "export"),
    ("distributed",),
    ("run",),
    ("feedback",),
    ("agents",),
    ("config", "networks", "replay", "envs", "mesh", "compilation", "cpu"),
    ("ops",),
)

# (importing module, imported module) -> why the upward import stays.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("jaxrl.agents.label_store", "jaxrl.feedback.label_store"): (
        "a deprecated alias of the label store, which moved to feedback/; it only "
        "forwards old imports and goes when the alias does"
    ),
}


def layer_of(module: str) -> int:
    """Index in LAYERS of ``jaxrl.<first>...``."""
    first = module.split(".")[1] if "." in module else "__init__"
    for index, names in enumerate(LAYERS):
        if first in names:
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    root = PACKAGE.parent
    return (root / relative).with_suffix(".py").is_file() or (root / relative / "__init__.py").is_file()


def jaxrl_imports(path: Path) -> set[str]:
    """The ``jaxrl`` modules ``path`` imports anywhere in its body;
    ``from jaxrl.x import y`` counts as ``jaxrl.x.y`` when that is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "jaxrl")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "jaxrl":
                continue
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if is_module(candidate) else node.module)
    return found


def upward_imports() -> dict[tuple[str, str], tuple[int, int]]:
    upward = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        for imported in jaxrl_imports(path):
            if imported == "jaxrl":
                continue
            if layer_of(imported) < layer_of(importer):
                upward[(importer, imported)] = (layer_of(importer), layer_of(imported))
    return upward


def test_every_module_is_in_a_layer():
    for path in PACKAGE.rglob("*.py"):
        layer_of(module_name(path))


def test_imports_run_down_the_layers():
    upward = upward_imports()
    new = {pair: layers for pair, layers in upward.items() if pair not in EXCEPTIONS}
    assert not new, "imports of a layer above: " + "; ".join(
        f"{a} (layer {LAYERS[i][0]}) imports {b} (layer {LAYERS[j][0]})"
        for (a, b), (i, j) in sorted(new.items())
    )


def test_listed_exceptions_still_exist():
    gone = sorted(set(EXCEPTIONS) - set(upward_imports()))
    assert not gone, f"these imports no longer go up; remove them from EXCEPTIONS: {gone}"


def test_agents_import_no_host_side():
    for path in (PACKAGE / "agents").rglob("*.py"):
        importer = module_name(path)
        for imported in jaxrl_imports(path):
            if (importer, imported) in EXCEPTIONS:
                continue
            layer = imported.partition(".")[2].split(".")[0]
            assert layer not in ("run", "feedback", "distributed"), (
                f"{importer} imports {imported}"
            )
