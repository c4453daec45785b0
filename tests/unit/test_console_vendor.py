"""The console's vendored files (gateway/console/static/vendor/) are exactly those
recorded in gateway/console/vendor/VENDOR.md (version and sha256), the version there
is the one package.json and package-lock.json pin, and index.html loads them from
the console itself."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

CONSOLE = Path(__file__).resolve().parents[2] / "gateway" / "console"
ROW = re.compile(r"^\| `([^`]+)` \| (\S+) \| (\S+) \| `([0-9a-f]{64})` \|$", re.M)


def rows() -> list[tuple[str, str, str, str]]:
    return ROW.findall((CONSOLE / "vendor" / "VENDOR.md").read_text())


def test_committed_files_match_vendor_md() -> None:
    found = rows()
    assert {name for name, *_ in found} >= {"uPlot.iife.min.js", "uPlot.min.css"}
    for name, _, _, digest in found:
        assert hashlib.sha256((CONSOLE / "static" / "vendor" / name).read_bytes()).hexdigest() == digest, name
    on_disk = {p.name for p in (CONSOLE / "static" / "vendor").iterdir()}
    assert on_disk == {name for name, *_ in found}  # nothing unrecorded is served


def test_versions_are_the_locked_ones() -> None:
    package = json.loads((CONSOLE / "vendor" / "package.json").read_text())
    lock = json.loads((CONSOLE / "vendor" / "package-lock.json").read_text())
    for _, name, version, _ in rows():
        assert package["dependencies"][name] == version
        assert lock["packages"][f"node_modules/{name}"]["version"] == version


def test_index_loads_the_vendored_files_from_the_console() -> None:
    html = (CONSOLE / "static" / "index.html").read_text()
    assert '<script src="vendor/uPlot.iife.min.js" defer></script>' in html
    assert '<link rel="stylesheet" href="vendor/uPlot.min.css">' in html
