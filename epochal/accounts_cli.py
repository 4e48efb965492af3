"""Operator commands on the server, next to `serve`: users and API keys, straight in the database.

    python -m epochal users create NAME [--admin]    a user and their first key (printed once)
    python -m epochal users list
    python -m epochal keys create USER               another key for USER (printed once)
    python -m epochal keys revoke KEY_ID

They need only the database settings (EPOCHAL_DATABASE_URL, or the embedded default); the API can be
running or not. Run the migrations first (`serve` does).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from config import Settings
from models.accounts import NewKey, create_key, create_user, first_start_key, revoke, user_named
from models.db import session_scope
from models.users import ApiKey, User

KEY_FILE = "api-key"


def key_file(settings: Settings) -> Path:
    return settings.state_dir / KEY_FILE


def write_secret(path: Path, secret: str) -> None:
    """Write `secret` to a file only its owner can read (0600), also when the file already existed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # the mode given to open() does not apply to an existing file
    with os.fdopen(descriptor, "w") as file:
        file.write(secret + "\n")


def ensure_first_key(settings: Settings) -> NewKey | None:
    """On the first start (no key ever made): an admin and a key, printed once and kept in <state>/api-key."""
    with session_scope() as session:
        new_key = first_start_key(session)
        if new_key is None:
            return None
        token, name = new_key.token, new_key.key.user.name
    path = key_file(settings)
    write_secret(path, token)
    print(
        f"epochal: created the API key of admin {name!r}; it is shown this once and kept in {path} (mode 0600):\n"
        f"    {token}\n"
        f'epochal: call the API with -H "Authorization: Bearer $(cat {path})"',
        flush=True,
    )
    return new_key


def _show(new_key: NewKey, user: User) -> None:
    print(f"key {new_key.key.id} for user {user.name!r} (shown this once, store it now):\n{new_key.token}")


def _users_create(args: argparse.Namespace) -> int:
    with session_scope() as session:
        if user_named(session, args.name) is not None:
            print(f"a user named {args.name!r} already exists; `keys create {args.name}` adds a key", file=sys.stderr)
            return 1
        user, new_key = create_user(session, args.name, admin=args.admin)
        _show(new_key, user)
    return 0


def _users_list(_args: argparse.Namespace) -> int:
    with session_scope() as session:
        for user in session.scalars(select(User).options(selectinload(User.keys)).order_by(User.id)):
            active = [str(k.id) for k in user.keys if k.revoked_at is None]
            role = "admin" if user.admin else "user"
            print(f"{user.id}\t{user.name}\t{role}\tactive keys: {', '.join(active) or 'none'}")
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    with session_scope() as session:
        user = user_named(session, args.user)
        if user is None:
            print(f"no user named {args.user!r}; `users create {args.user}` makes one", file=sys.stderr)
            return 1
        _show(create_key(session, user), user)
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    with session_scope() as session:
        # An id beyond 64 bits cannot exist, and SQLite would overflow on it.
        key = session.get(ApiKey, args.key_id) if 1 <= args.key_id < 2**31 else None  # INTEGER ids
        if key is None:
            print(f"no key {args.key_id}; `users list` shows each user's keys", file=sys.stderr)
            return 1
        revoke(key)
        print(f"key {key.id} of user {key.user.name!r} revoked")
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `users` and `keys` subcommands; each parser's `run` is the function to call with the parsed args."""
    users = commands.add_parser("users", help="create or list users").add_subparsers(dest="action", required=True)
    create = users.add_parser("create", help="a new user and their first API key")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="may manage users and keys, and sees all work")
    create.set_defaults(run=_users_create)
    users.add_parser("list", help="every user and their active key ids").set_defaults(run=_users_list)

    keys = commands.add_parser("keys", help="create or revoke API keys").add_subparsers(dest="action", required=True)
    key_create = keys.add_parser("create", help="another API key for a user")
    key_create.add_argument("user")
    key_create.set_defaults(run=_keys_create)
    key_revoke = keys.add_parser("revoke", help="revoke an API key: requests with it are refused from now on")
    key_revoke.add_argument("key_id", type=int)
    key_revoke.set_defaults(run=_keys_revoke)
