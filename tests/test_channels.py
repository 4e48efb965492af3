"""Pub/sub channels are this deployment's own: Redis pub/sub ignores database numbers, and deployments that share
one Redis server, a database each, must not hear each other (an invalidation's publisher counted the other
deployments' listeners and waited for confirmations that could never come)."""

from __future__ import annotations

import pytest

from config import get_settings
from infra.events import DISPATCH_CHANNEL, channel
from infra.invalidation import CHANNEL


@pytest.mark.parametrize("name", [DISPATCH_CHANNEL, CHANNEL])
def test_a_channel_is_scoped_by_the_brokers_database(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    settings = get_settings()
    names = {}
    for url in ("redis://127.0.0.1:6379/13", "redis://127.0.0.1:6379/9", "redis://127.0.0.1:6379", "redis://h:1/9"):
        monkeypatch.setattr(settings, "broker_url", url)
        names[url] = channel(name)
    assert names["redis://127.0.0.1:6379/13"] == f"{name}:13"
    assert names["redis://127.0.0.1:6379"] == f"{name}:0"
    # Another database of the same server is another deployment; the same database number on another server
    # cannot be heard anyway, so it may share the name.
    assert names["redis://127.0.0.1:6379/9"] != names["redis://127.0.0.1:6379/13"]
    assert names["redis://h:1/9"] == names["redis://127.0.0.1:6379/9"]
    monkeypatch.setattr(settings, "broker_url", "redis+socket:///run/epochal/redis.sock")
    assert channel(name) == f"{name}:0"  # the embedded broker: one server of its own, database 0
