"""Users and API keys, managed by admins; any user can read who they are at GET /me.

A key is shown once, in the answer that creates it; only its hash is stored.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from api.access import KeyId, UserId
from api.account_schemas import KeyCreated, KeyRead, QuotaOverrides, UserCreate, UserCreated, UserRead
from api.auth import AdminUser, CurrentUser
from api.deps import SessionDep
from api.errors import conflict, not_found, responses
from domain.access import in_id_range
from models.accounts import create_key, create_user, revoke, user_named
from models.users import ApiKey, User

router = APIRouter(tags=["users"])


def _user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id, options=[selectinload(User.keys)]) if in_id_range(user_id) else None
    if user is None:
        raise not_found(f"user {user_id} does not exist; GET /users lists the ones that do")
    return user


@router.get("/me", response_model=UserRead)
def read_me(user: CurrentUser) -> UserRead:
    """The user whose key this request carries, with their keys and quota overrides."""
    return UserRead.of(user)


@router.get("/users", response_model=list[UserRead], responses=responses(403))
def list_users(session: SessionDep, _admin: AdminUser) -> list[UserRead]:
    """Every user with their keys (never the keys themselves). Admins only."""
    return [UserRead.of(u) for u in session.scalars(select(User).options(selectinload(User.keys)).order_by(User.id))]


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    response_model=UserCreated,
    responses=responses(400, 403, 409, 413, 422),
)
def create_user_with_key(body: UserCreate, session: SessionDep, _admin: AdminUser) -> UserCreated:
    """A new user and their first API key, shown in this answer only. Admins only."""
    if user_named(session, body.name) is not None:
        raise conflict(f"a user named {body.name!r} already exists; GET /users lists them")
    try:
        user, new_key = create_user(session, body.name, admin=body.admin)
        user.max_active_jobs = body.max_active_jobs
        user.max_sweep_experiments = body.max_sweep_experiments
        user.predictions_per_second = body.predictions_per_second
        session.commit()
    except IntegrityError:
        # Two admins creating the same name at once: the unique constraint decides.
        session.rollback()
        raise conflict(f"a user named {body.name!r} already exists; GET /users lists them") from None
    return UserCreated(**UserRead.of(_user(session, user.id)).model_dump(), api_key=new_key.token)


@router.patch("/users/{user_id}", response_model=UserRead, responses=responses(400, 403, 404, 413, 422))
def set_quotas(user_id: UserId, body: QuotaOverrides, session: SessionDep, _admin: AdminUser) -> UserRead:
    """Set the user's quota overrides; a field sent as null goes back to the service-wide setting. Admins only."""
    user = _user(session, user_id)
    for field in body.model_fields_set:
        setattr(user, field, getattr(body, field))
    session.commit()
    return UserRead.of(_user(session, user_id))


@router.post(
    "/users/{user_id}/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyCreated,
    responses=responses(403, 404, 422),
)
def add_key(user_id: UserId, session: SessionDep, _admin: AdminUser) -> KeyCreated:
    """A new key for the user, shown in this answer only; their other keys keep working until revoked. Admins only."""
    new_key = create_key(session, _user(session, user_id))
    session.commit()
    return KeyCreated(**KeyRead.of(new_key.key).model_dump(), api_key=new_key.token)


@router.post("/keys/{key_id}/revoke", response_model=KeyRead, responses=responses(403, 404, 409, 422))
def revoke_key(key_id: KeyId, request: Request, session: SessionDep, _admin: AdminUser) -> KeyRead:
    """Revoke a key: every later request with it is a 401. Revoking twice is harmless. Admins only."""
    key = session.get(ApiKey, key_id) if in_id_range(key_id) else None
    if key is None:
        raise not_found(f"key {key_id} does not exist; GET /users lists the ones that do")
    if key.id == request.state.api_key_id:
        # Revoking the key in hand would lock this admin out mid-session; another admin key must do it.
        raise conflict(f"key {key_id} is the one this request uses; revoke it with another admin key")
    revoke(key)
    session.commit()
    return KeyRead.of(key)
