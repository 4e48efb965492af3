"""Creating users and API keys, and finding the key a request presents: shared by the API, the CLI and the tests."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload, object_session

from models.base import utcnow
from models.change_notices import announce
from models.users import ApiKey, User

KEY_SCHEME = "epk_"  # makes a leaked key recognisable to secret scanners and to people
PREFIX_LENGTH = 12  # "epk_" and 8 random characters: 48 bits, enough to find one row, too few to guess a key
# last_used_at is a hint for people, not an audit log: writing it on every request would turn reads into writes.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class NewKey:
    """A key just created: `token` is shown once and never stored."""

    key: ApiKey
    token: str


def hash_token(token: str) -> str:
    # A plain sha256 is enough here, unlike for passwords: tokens carry 256 random bits, so there is no
    # dictionary to try and a slow hash would buy nothing but latency on every request.
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(session: Session, user: User) -> NewKey:
    """A new random key for `user`, added to the session (the caller commits)."""
    token = KEY_SCHEME + secrets.token_urlsafe(32)
    key = ApiKey(user=user, prefix=token[:PREFIX_LENGTH], sha256=hash_token(token))
    session.add(key)
    session.flush()
    return NewKey(key=key, token=token)


def create_user(session: Session, name: str, *, admin: bool = False) -> tuple[User, NewKey]:
    """A new user with a first key, added to the session (the caller commits)."""
    user = User(name=name, admin=admin)
    session.add(user)
    session.flush()
    return user, create_key(session, user)


def user_named(session: Session, name: str) -> User | None:
    return session.scalars(select(User).where(User.name == name)).first()


def first_admin(session: Session) -> User | None:
    return session.scalars(select(User).where(User.admin.is_(True)).order_by(User.id).limit(1)).first()


def any_key_exists(session: Session) -> bool:
    return bool(session.scalar(select(func.count(ApiKey.id))))


def find_key(session: Session, token: str) -> ApiKey | None:
    """The unrevoked key whose token is `token`, or None; compared in constant time."""
    if not token.startswith(KEY_SCHEME) or len(token) <= PREFIX_LENGTH:
        return None
    digest = hash_token(token)
    # The user comes in the same query: every request needs them, and a second round trip per request showed in
    # the profile of the prediction and submission routes.
    statement = select(ApiKey).options(joinedload(ApiKey.user)).where(ApiKey.prefix == token[:PREFIX_LENGTH])
    candidates = session.scalars(statement).all()
    for key in candidates:
        if hmac.compare_digest(key.sha256, digest) and key.revoked_at is None:
            return key
    return None


def touch(key: ApiKey, now: datetime | None = None) -> bool:
    """Record that `key` was used, at most once per LAST_USED_RESOLUTION; True when the row changed."""
    now = now or utcnow()
    last = key.last_used_at
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=UTC)  # SQLite hands stored UTC times back without a zone
    if last is not None and now - last < LAST_USED_RESOLUTION:
        return False
    key.last_used_at = now
    return True


def key_for(session: Session, name: str, *, admin: bool = False) -> NewKey:
    """A new key for the user `name`, who is created (admin or not) if missing. The caller commits."""
    user = user_named(session, name)
    if user is None:
        return create_user(session, name, admin=admin)[1]
    return create_key(session, user)


def first_start_key(session: Session) -> NewKey | None:
    """On a service's first start (no key was ever made): a key for the first admin, created if missing.

    The admin may exist already: a database upgraded from before users existed has one without a key.
    """
    if any_key_exists(session):
        return None
    admin = first_admin(session)
    if admin is None:
        return create_user(session, "admin", admin=True)[1]
    return create_key(session, admin)


def revoke(key: ApiKey) -> None:
    """Revoke `key` in its session: refused from the commit on, by every API process (models/change_notices.py)."""
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session = object_session(key)
        if session is not None:
            announce(session, f"key:{key.id}")
