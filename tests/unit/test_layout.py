"""The house: rooms a newcomer can name, imports that point one way, modules and classes
that stay small (docs/architecture.md states these rules; this test holds the code to them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gateway"

# Lowest floor first. A module may import its own room or a room on a lower floor, never one
# on a higher floor and never a sibling room on the same floor. The package root (canonical,
# errors, the version) is the ground every room stands on.
FLOORS: list[set[str]] = [
    {""},
    {"config"},
    {"dialects", "providers", "state", "mock", "notify"},
    {"upstream", "routing", "security", "policies"},
    {"observability"},
    {"server"},
    {"console", "health", "reports"},
    {"admin", "jobs"},
    {"app"},
    {"cli"},
]
ROOT_MODULES = {"__init__.py", "__main__.py", "canonical.py", "errors.py", "py.typed"}
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 150
# The declarative metrics catalog (one place that declares every metric) is exempt.
SIZE_EXEMPT = {"observability/metrics.py"}


def floor_of(room: str) -> int:
    for level, rooms in enumerate(FLOORS):
        if room in rooms:
            return level
    raise AssertionError(f"room {room!r} has no floor in FLOORS: add it where its imports put it")


def room_of(module: str) -> str:
    """``gateway.server.traffic`` -> ``server``; ``gateway.errors`` -> ``""`` (the root)."""
    parts = module.split(".")
    if len(parts) == 1 or not (PACKAGE / parts[1]).is_dir():
        return ""  # a root module, or a name the root package defines (``__version__``)
    return parts[1]


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every ``gateway.*`` module a file imports, anywhere in it (functions and
    ``TYPE_CHECKING`` blocks included)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "gateway":
            if node.module == "gateway":
                found += [(node.lineno, f"gateway.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "gateway"]
    return found


def test_the_package_root_holds_only_what_every_room_shares() -> None:
    loose = {p.name for p in PACKAGE.iterdir() if p.is_file()} - ROOT_MODULES
    assert loose == set(), f"modules at the package root: {sorted(loose)}; give each a room"


def test_every_room_says_its_job_and_has_a_floor() -> None:
    for room in sorted(p for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"):
        init = room / "__init__.py"
        assert init.exists(), f"{room.name}/ has no __init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{room.name}/__init__.py has no docstring saying the room's job"
        floor_of(room.name)


def test_imports_point_one_way() -> None:
    wrong: list[str] = []
    for path in modules():
        rel = path.relative_to(PACKAGE)
        if rel.name == "__main__.py" and len(rel.parts) == 1:
            continue  # `python -m gateway` is the command itself
        here = "" if len(rel.parts) == 1 else rel.parts[0]
        for line, target in imports_of(path):
            there = room_of(target)
            if there == here:
                continue
            if floor_of(there) >= floor_of(here):
                wrong.append(f"gateway/{rel}:{line} ({here or 'root'}) imports {target} ({there or 'root'})")
    assert wrong == [], "imports that run up or sideways:\n" + "\n".join(wrong)


def test_the_floor_check_catches_an_upward_import(tmp_path: Path) -> None:
    # The check above is only worth something if it can fail: a policy importing the server.
    bad = tmp_path / "bad.py"
    bad.write_text("from gateway.server.service import Service\n")
    [(_, target)] = imports_of(bad)
    assert floor_of(room_of(target)) > floor_of("policies")
    assert room_of("gateway.errors") == ""
    assert room_of("gateway") == ""


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_classes_stay_small(path: Path) -> None:
    rel = str(path.relative_to(PACKAGE))
    if rel in SIZE_EXEMPT:
        return
    source = path.read_text()
    lines = source.count("\n")
    assert lines <= MAX_MODULE_LINES, f"gateway/{rel} has {lines} lines (at most {MAX_MODULE_LINES})"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            assert node.end_lineno is not None
            size = node.end_lineno - node.lineno + 1
            assert size <= MAX_CLASS_LINES, f"gateway/{rel}: class {node.name} has {size} lines"
