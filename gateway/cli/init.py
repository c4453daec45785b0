"""``gateway init [PATH]``: write the starter config (the repository's ``config/gateway.yaml``,
shipped in the package as ``gateway/config/default.yaml``) where ``gateway serve`` looks for it."""

from __future__ import annotations

import argparse
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

DEFAULT_PATH = "config/gateway.yaml"


def starter_config() -> str:
    return files("gateway.config").joinpath("default.yaml").read_text(encoding="utf-8")


def add_parser(sub: Any) -> None:
    init = sub.add_parser("init", help="write a starter config file (demo aliases on the mock, real providers by key)")
    init.add_argument("path", nargs="?", default=DEFAULT_PATH, help=f"where to write it (default {DEFAULT_PATH})")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")


def run(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.exists() and not args.force:
        print(f"{path} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(starter_config(), encoding="utf-8")
    except OSError as exc:
        print(f"cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}; start the gateway with: gateway serve --config {path} --mock-port 8090 --dev")
    return 0
