"""``gateway users create``: an admin API user, through the admin API.

``gateway users create --username alice --role operator`` asks for the password
twice on a terminal; ``--password-stdin`` reads it from the first line of
standard input instead (for scripts: ``printf %s "$PW" | gateway users create
... --password-stdin``). The gateway is ``--url`` (default ``$GATEWAY_URL`` or
http://127.0.0.1:8080); the credential is ``$GATEWAY_MASTER_KEY``, else an
admin's access token in ``$GATEWAY_ADMIN_TOKEN``.
Exit codes: 0 created, 1 the gateway refused or could not be reached, 2 bad usage.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any, TextIO

from gateway.cli.connection import AdminClient, Refused, add_url_argument


def add_parser(sub: Any) -> None:
    users = sub.add_parser("users", help="manage admin API users through the admin API")
    add_url_argument(users, os.environ)
    actions = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a user (admin, operator or viewer)")
    create.add_argument("--username", required=True)
    create.add_argument("--role", required=True, choices=["admin", "operator", "viewer"])
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")


def read_password(from_stdin: bool, stdin: TextIO) -> str:
    """The new password; ValueError (a usage problem) saying what is wrong."""
    if from_stdin:
        password = stdin.readline().rstrip("\r\n")
        if not password:
            raise ValueError("no password on standard input")
        return password
    if not stdin.isatty():
        raise ValueError("no terminal to ask for the password on: use --password-stdin")
    password = getpass.getpass("password: ")
    if password != getpass.getpass("again: "):
        raise ValueError("the two passwords differ")
    return password


def run(args: argparse.Namespace, stdin: TextIO = sys.stdin) -> int:
    credential = os.environ.get("GATEWAY_MASTER_KEY") or os.environ.get("GATEWAY_ADMIN_TOKEN")
    if not credential:
        print("set GATEWAY_MASTER_KEY (or GATEWAY_ADMIN_TOKEN, an admin's access token)", file=sys.stderr)
        return 2
    try:
        password = read_password(args.password_stdin, stdin)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    body = {"username": args.username, "password": password, "role": args.role}
    try:
        answer = AdminClient(args.url, credential).call("POST", "/admin/users", body)
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if exc.status == 400 else 1
    print(f"created user {answer['username']} ({answer['role']})")
    return 0
