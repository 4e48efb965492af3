"""Users and API keys, managed by admins; any user can read who they are at GET /me.

A key is shown once, in the answer that creates it; only its hash is stored.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from api.http.auth import AdminUser, CurrentUser
from api.http.deps import SessionDep, SettingsDep
from api.http.errors import responses
from api.http.params import KeyId, UserId
from api.schemas.accounts import (
    KeyCreated,
    KeyRead,
    MeRead,
    QuotaOverrides,
    StorageRead,
    UsageRead,
    UserCreate,
    UserCreated,
    UserRead,
)
from domain import accounts
from domain.errors import NotFound
from domain.usage import storage_bytes, storage_quota, usage_of
from models.users import User

router = APIRouter(tags=["users"])


@router.get("/me", response_model=MeRead)
def read_me(session: SessionDep, settings: SettingsDep, user: CurrentUser) -> MeRead:
    """The user whose key this request carries, with their keys, quota overrides, and what they store against
    their storage quota."""
    storage = StorageRead(used_bytes=storage_bytes(session, user), quota_bytes=storage_quota(settings, user))
    return MeRead(**UserRead.of(user).model_dump(), storage=storage)


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
    quotas = {field: getattr(body, field) for field in QuotaOverrides.model_fields}
    user, new_key = accounts.add_user(session, body.name, admin=body.admin, quotas=quotas)
    return UserCreated(**UserRead.of(accounts.find_user(session, user.id)).model_dump(), api_key=new_key.token)


@router.patch("/users/{user_id}", response_model=UserRead, responses=responses(400, 403, 404, 413, 422))
def set_quotas(user_id: UserId, body: QuotaOverrides, session: SessionDep, _admin: AdminUser) -> UserRead:
    """Set the user's quota overrides; a field sent as null goes back to the service-wide setting. Admins only."""
    accounts.set_quotas(session, user_id, {field: getattr(body, field) for field in body.model_fields_set})
    return UserRead.of(accounts.find_user(session, user_id))


@router.get("/users/{user_id}/usage", response_model=UsageRead, responses=responses(404, 422))
def read_usage(user_id: UserId, session: SessionDep, settings: SettingsDep, user: CurrentUser) -> UsageRead:
    """Jobs queued and running, worker time (all of it, and the decayed figure fair share counts) and storage used.
    Your own, or anyone's for an admin; another user's is a 404."""
    if not user.admin and user_id != user.id:
        raise NotFound(f"user {user_id} does not exist; GET /me says who you are")
    usage = usage_of(session, settings, accounts.find_user(session, user_id))
    return UsageRead(**vars(usage))


@router.post(
    "/users/{user_id}/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyCreated,
    responses=responses(403, 404, 422),
)
def add_key(user_id: UserId, session: SessionDep, _admin: AdminUser) -> KeyCreated:
    """A new key for the user, shown in this answer only; their other keys keep working until revoked. Admins only."""
    new_key = accounts.add_key(session, user_id)
    return KeyCreated(**KeyRead.of(new_key.key).model_dump(), api_key=new_key.token)


@router.post("/keys/{key_id}/revoke", response_model=KeyRead, responses=responses(403, 404, 409, 422))
def revoke_key(key_id: KeyId, request: Request, session: SessionDep, _admin: AdminUser) -> KeyRead:
    """Revoke a key: every later request with it is a 401. Revoking twice is harmless. Admins only."""
    return KeyRead.of(accounts.revoke_key(session, key_id, in_hand=request.state.api_key_id))
