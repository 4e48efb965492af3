"""Managing users and their keys, as an admin does through the API: refusals as domain errors.

The rows themselves (making keys, finding the one a request presents) are `models/accounts.py`, which the
operator's CLI uses too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from domain.access import in_id_range
from domain.errors import Conflict, NotFound
from models.accounts import NewKey, create_key, create_user, revoke, user_named
from models.change_notices import announce
from models.users import ApiKey, User


def find_user(session: Session, user_id: int) -> User:
    """The user with their keys loaded, or NotFound."""
    user = session.get(User, user_id, options=[selectinload(User.keys)]) if in_id_range(user_id) else None
    if user is None:
        raise NotFound(f"user {user_id} does not exist; GET /users lists the ones that do")
    return user


def add_user(session: Session, name: str, *, admin: bool, quotas: dict[str, Any]) -> tuple[User, NewKey]:
    """A new user with `quotas` (their overrides) and a first key, committed; Conflict if the name is taken."""
    taken = Conflict(f"a user named {name!r} already exists; GET /users lists them")
    if user_named(session, name) is not None:
        raise taken
    try:
        user, new_key = create_user(session, name, admin=admin)
        for field, value in quotas.items():
            setattr(user, field, value)
        session.commit()
    except IntegrityError:
        # Two admins creating the same name at once: the unique constraint decides.
        session.rollback()
        raise taken from None
    return user, new_key


def set_quotas(session: Session, user_id: int, overrides: dict[str, Any]) -> None:
    """Set the user's quota overrides (None goes back to the service-wide setting), committed."""
    user = find_user(session, user_id)
    for field, value in overrides.items():
        setattr(user, field, value)
    announce(session, f"user:{user_id}")  # API processes hold the caller's quotas for their predictions
    session.commit()


def add_key(session: Session, user_id: int) -> NewKey:
    """A new key for the user, committed; their other keys keep working."""
    new_key = create_key(session, find_user(session, user_id))
    session.commit()
    return new_key


def revoke_key(session: Session, key_id: int, *, in_hand: int | None) -> ApiKey:
    """Revoke a key, committed (twice is harmless); Conflict for `in_hand`, the key of the request asking."""
    key = session.get(ApiKey, key_id) if in_id_range(key_id) else None
    if key is None:
        raise NotFound(f"key {key_id} does not exist; GET /users lists the ones that do")
    if key.id == in_hand:
        # Revoking the key in hand would lock this admin out mid-session; another admin key must do it.
        raise Conflict(f"key {key_id} is the one this request uses; revoke it with another admin key")
    revoke(key)
    session.commit()
    return key
