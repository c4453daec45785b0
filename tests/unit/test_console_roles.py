"""The console decides which controls exist from the admin API's route-role table as
GET /admin/openapi.json publishes it (each operation's ``x-role``). These tests hold
that table to ROUTE_ROLES (gateway/admin/access.py), every route the console's code
names to a real one, and the console's code to text-only rendering."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.admin.access import ROUTE_ROLES
from gateway.admin.openapi import load_document

STATIC = Path(__file__).resolve().parents[2] / "gateway" / "console" / "static"
METHODS = {"get", "post", "put", "patch", "delete"}


def published() -> dict[str, str]:
    """``"METHOD /path"`` -> x-role, as the console reads the document."""
    out: dict[str, str] = {}
    for path, item in load_document()["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                out[f"{method.upper()} {path}"] = op["x-role"]
    return out


def matrix() -> dict[str, str]:
    """ROUTE_ROLES in the document's path spelling (``{alias:path}`` -> ``{alias}``)."""
    return {
        re.sub(r"\{(\w+):path\}", r"{\1}", route): "none" if role is None else role.name
        for route, role in ROUTE_ROLES.items()
    }


def test_openapi_x_role_is_route_roles() -> None:
    assert published() == matrix()


def console_sources() -> dict[Path, str]:
    files = [*STATIC.rglob("*.js"), STATIC / "index.html"]
    return {path: path.read_text() for path in files}


def test_every_route_the_console_names_exists() -> None:
    named: set[str] = set()
    pattern = re.compile(
        r"""(?:data-route="|allowed\(\s*"|can\(\s*"|route:\s*")((?:GET|POST|PUT|PATCH|DELETE) /admin[^"]*)"""
    )
    for text in console_sources().values():
        named.update(pattern.findall(text))
    assert len(named) >= 25  # the views' write controls and read routes were found
    assert named - set(matrix()) == set()


def test_console_code_never_builds_markup_from_text() -> None:
    markup = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(")
    found = {str(path.relative_to(STATIC)): markup.findall(text) for path, text in console_sources().items()}
    assert {path: hits for path, hits in found.items() if hits} == {}
    assert (STATIC / "js" / "main.js").exists()
