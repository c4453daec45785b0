"""Local development defaults for ``gateway serve --dev`` (what ``make run`` uses).

The quick start must work with no variables set: ``--dev`` fills in, for this one process,
the documented development master key and a secrets key and JWT secret of its own. The two
secrets are made once, at random, and kept in ``.dev/secrets.env`` (git-ignored, mode 0600)
so that provider keys sealed in one run open in the next. A variable already set always wins.

The development master key is public (it is in the README), so a gateway listening on
anything but loopback refuses to start with it (:func:`refuse_public_dev_key`), ``--dev``
or not.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
from collections.abc import MutableMapping
from pathlib import Path

DEV_MASTER_KEY = "sk-gateway-local-dev"
DEV_FOLDER = Path(".dev")
SECRETS_FILE = "secrets.env"
_GENERATED = ("GATEWAY_SECRETS_KEY", "GATEWAY_JWT_SECRET")


def _new_value(name: str) -> str:
    if name == "GATEWAY_SECRETS_KEY":
        return base64.b64encode(secrets.token_bytes(32)).decode("ascii")  # AES-256-GCM key
    return secrets.token_urlsafe(48)


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{path}:{number}: expected NAME=value")
        values[name.strip()] = value.strip()
    return values


def dev_secrets(folder: Path = DEV_FOLDER) -> tuple[Path, dict[str, str], bool]:
    """The development secrets file, its values, and whether it was just created."""
    path = folder / SECRETS_FILE
    values = _read_env_file(path) if path.exists() else {}
    missing = [name for name in _GENERATED if not values.get(name)]
    if missing:
        values.update({name: _new_value(name) for name in missing})
        folder.mkdir(parents=True, exist_ok=True)
        text = "# Local development secrets made by `gateway serve --dev`; never use them in production.\n"
        body = text + "".join(f"{name}={values[name]}\n" for name in _GENERATED)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(body)
    return path, values, bool(missing)


def apply_dev_defaults(env: MutableMapping[str, str], folder: Path = DEV_FOLDER) -> list[str]:
    """Fill ``env`` with the development defaults; the lines to tell the user."""
    path, values, created = dev_secrets(folder)
    said = [f"development secrets {'created in' if created else 'read from'} {path} (git-ignored)"]
    for name, value in values.items():
        if not env.get(name):
            env[name] = value
    if not env.get("GATEWAY_MASTER_KEY"):
        env["GATEWAY_MASTER_KEY"] = DEV_MASTER_KEY
        said.append(f"master key: {DEV_MASTER_KEY} (the documented development key; loopback only)")
    return said


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost, or "" (every interface)


def refuse_public_dev_key(host: str, master_key: str | None) -> str | None:
    """Why the gateway must not start (the development key on a public address), or None."""
    if master_key != DEV_MASTER_KEY or is_loopback(host):
        return None
    return (
        f"refusing to listen on {host!r} with the development master key {DEV_MASTER_KEY!r}, which is published "
        "in the README: anyone who can reach the port could administer the gateway. Set a real one, e.g. "
        "GATEWAY_MASTER_KEY=$(python3 -c 'import secrets; print(\"sk-\" + secrets.token_urlsafe(32))'), "
        "or listen on 127.0.0.1."
    )
