"""The caller of a prediction, from memory when this process verified their key a moment ago.

Predictions are the one route where a key's SQL showed against a model call (docs/results/performance.md), so
their pipeline asks here first: a key verified within EPOCHAL_SERVING_CACHE_TTL_S, and not revoked since (its
revocation empties the cache of every API process: models/accounts.py `revoke`), is taken as it was. The cache
holds the keys' sha256, never a key, and the few fields a prediction reads; every other route verifies the key
in the database (api/http/auth.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from fastapi import Request
from sqlalchemy.orm import Session

from api.http.auth import authenticate
from api.http.hot_cache import HotCache
from models.accounts import KEY_SCHEME, hash_token
from models.users import User

# A 64-character digest and a record of four small fields, with the dictionary's and the LRU's overhead.
ENTRY_BYTES = 512


@dataclass(frozen=True, slots=True)
class Caller:
    """What a prediction needs of the user whose key it carries."""

    id: int
    admin: bool
    predictions_per_second: int | None
    api_key_id: int


@lru_cache
def caller_cache() -> HotCache[str, Caller]:
    return HotCache.configured(ENTRY_BYTES)


def remembered_caller(request: Request, token: str) -> Caller | None:
    """The caller whose key `token` is, if this process verified it recently; None means: ask the database."""
    if not token.startswith(KEY_SCHEME):
        return None
    caller = caller_cache().get(hash_token(token))
    if caller is not None:
        request.state.api_key_id = caller.api_key_id  # as authenticate sets it, for the access log
    return caller


def verified_caller(session: Session, request: Request, token: str | None) -> tuple[User, Caller]:
    """`authenticate` (a 401 for a bad key), remembering the caller for the next requests with this key."""
    cache = caller_cache()
    generation = cache.generation  # before the read: a revocation announced meanwhile keeps it out of the cache
    user = authenticate(session, request, token)
    caller = Caller(user.id, user.admin, user.predictions_per_second, request.state.api_key_id)
    if token is not None:
        cache.put(hash_token(token), caller, generation)
    return user, caller
