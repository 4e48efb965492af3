"""Who is calling: one dependency, `CurrentUser`, reads the bearer key of every request but /health and /docs.

api/main.py applies it to every router but health's; a handler that needs the caller declares
`user: CurrentUser`, and FastAPI resolves the dependency once per request for both.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import SessionDep
from models.accounts import find_key, touch
from models.users import User

HOW_TO_GET_A_KEY = (
    "send 'Authorization: Bearer <key>'. The first admin's key is printed when `python -m epochal serve` "
    "first starts and kept in the file api-key of its state folder (EPOCHAL_STATE_DIR, var/ by default); "
    "an admin creates users and keys with POST /users and POST /users/{id}/keys, or on the server with "
    "`python -m epochal users create NAME` and `python -m epochal keys create NAME`"
)

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer epk_...`.")


def unauthorized(problem: str) -> HTTPException:
    return HTTPException(
        status_code=401, detail=f"{problem}; {HOW_TO_GET_A_KEY}", headers={"WWW-Authenticate": "Bearer"}
    )


def current_user(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """The user whose unrevoked key the request carries; 401 for a missing, malformed, unknown or revoked key."""
    if credentials is None:
        raise unauthorized("this needs an API key")
    key = find_key(session, credentials.credentials)
    if key is None:
        # Unknown and revoked keys get the same answer: a stolen, revoked key learns nothing.
        raise unauthorized("this API key is not valid (unknown or revoked)")
    if touch(key):
        session.commit()
    request.state.api_key_id = key.id
    return key.user


CurrentUser = Annotated[User, Depends(current_user)]


def require_admin(user: CurrentUser) -> User:
    if not user.admin:
        # 403, not 404: which routes exist is public (/docs); only what they hold is private.
        raise HTTPException(status_code=403, detail="only an admin can manage users and keys")
    return user


AdminUser = Annotated[User, Depends(require_admin)]
