"""Who is calling: `authenticate` is the one rule for the bearer key of every request but /health and /docs.

Most routers get the caller from the dependency `CurrentUser`: api/main.py applies it to every router but
health's and predictions', and a handler that needs the caller declares `user: CurrentUser` (FastAPI resolves
it once per request for both). The prediction routes verify the key themselves, in the same worker-thread
hop as their lookups (api/serving/pipeline.py): each sync dependency is a hop between the event loop and a thread,
and those hops were a quarter of the API's CPU on that route. Their router is guarded by `bearer_key`
(401 without a key, before anything else) and built with `KeyVerifiedRoute` (an invalid key is a 401 before
a 422), so they answer exactly as a `CurrentUser` route would. The submission routes (POST /experiments,
POST /sweeps) do the same through `as_caller`: the key and the whole submission in one hop.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.http.deps import SessionDep
from models.accounts import find_key, touch
from models.db import get_sessionmaker
from models.users import User

HOW_TO_GET_A_KEY = (
    "send 'Authorization: Bearer <key>'. The first admin's key is printed when `python -m epochal serve` "
    "first starts and kept in the file api-key of its state folder (EPOCHAL_STATE_DIR, var/ by default); "
    "an admin creates users and keys with POST /users and POST /users/{id}/keys, or on the server with "
    "`python -m epochal users create NAME` and `python -m epochal keys create NAME`"
)

T = TypeVar("T")

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer epk_...`.")


def unauthorized(problem: str) -> HTTPException:
    return HTTPException(
        status_code=401, detail=f"{problem}; {HOW_TO_GET_A_KEY}", headers={"WWW-Authenticate": "Bearer"}
    )


def authenticate(session: Session, request: Request, token: str | None) -> User:
    """The user whose unrevoked key `token` is; 401 for a missing, malformed, unknown or revoked key."""
    if token is None:
        raise unauthorized("this needs an API key")
    key = find_key(session, token)
    if key is None:
        # Unknown and revoked keys get the same answer: a stolen, revoked key learns nothing.
        raise unauthorized("this API key is not valid (unknown or revoked)")
    if touch(key):
        session.commit()
    request.state.api_key_id = key.id
    return key.user


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def current_user(request: Request, session: SessionDep, credentials: Credentials) -> User:
    """The caller, from the key the request carries (see `authenticate`)."""
    return authenticate(session, request, None if credentials is None else credentials.credentials)


CurrentUser = Annotated[User, Depends(current_user)]


async def bearer_key(credentials: Credentials) -> str:
    """The request's key, not yet verified (no database, no thread): 401 at once when there is none.

    Only for routes that call `authenticate` with it before anything else they do.
    """
    if credentials is None:
        raise unauthorized("this needs an API key")
    return credentials.credentials


BearerKey = Annotated[str, Depends(bearer_key)]


async def as_caller(request: Request, key: str, work: Callable[[Session, User], T]) -> T:
    """`work(session, caller)` for the caller whose unverified bearer key is `key`, in one worker-thread hop.

    The key is verified first (401), in the same session and thread as the work: for an `async` route taking
    `BearerKey` and built with `KeyVerifiedRoute`, in place of `CurrentUser`, `SessionDep` and a sync handler,
    each of which is a hop of its own.
    """

    def verified_then_work() -> T:
        with get_sessionmaker()() as session:
            return work(session, authenticate(session, request, key))

    return await run_in_threadpool(verified_then_work)


def _verify(request: Request, token: str | None) -> None:
    with get_sessionmaker()() as session:
        authenticate(session, request, token)


class KeyVerifiedRoute(APIRoute):
    """A route that verifies the key in its handler still answers 401 before 422 for an invalid key.

    FastAPI validates parameters after the dependencies ran and before the handler: `CurrentUser` (a
    dependency) has decided by then. Here the key is verified when validation failed, before its 422 goes
    out; a valid request pays nothing for it.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def verified_first(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError:
                credentials = await _bearer(request)
                await run_in_threadpool(_verify, request, None if credentials is None else credentials.credentials)
                raise

        return verified_first


def require_admin(user: CurrentUser) -> User:
    if not user.admin:
        # 403, not 404: which routes exist is public (/docs); only what they hold is private.
        raise HTTPException(status_code=403, detail="only an admin can manage users and keys")
    return user


AdminUser = Annotated[User, Depends(require_admin)]
