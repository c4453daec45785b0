"""Every client example in the README and docs/ names an alias the default config has, so a
newcomer who copies one after `make run` gets an answer, not a 404."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)
# A client request: an /v1 or /v1beta call, or an SDK call.
CLIENT_CALL = re.compile(r"/v1(beta)?/|\.create\(|\.stream\(|generate_content")
MODEL = re.compile(r"""(?:"model"\s*:\s*"|model\s*=\s*["']|/models/)([A-Za-z0-9._-]+)""")


def default_aliases() -> set[str]:
    return set(yaml.safe_load((ROOT / "config" / "gateway.yaml").read_text())["models"])


def client_examples() -> list[tuple[str, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in FENCE.findall(path.read_text()):
            if CLIENT_CALL.search(block) and "/admin/" not in block:
                found += [(path.name, name) for name in MODEL.findall(block)]
    return found


def test_client_examples_use_default_aliases() -> None:
    examples = client_examples()
    assert examples, "the README's quick start example was not found"
    unknown = [(doc, alias) for doc, alias in examples if alias not in default_aliases()]
    assert unknown == [], f"examples naming aliases the default config does not have: {unknown}"
