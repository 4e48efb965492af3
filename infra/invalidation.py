"""Telling every API process that something it may have cached changed: a revoked key, a moved alias.

Writers publish a message on one Redis pub/sub channel after their commit (models/change_notices.py), and each
API process runs one `Listener` thread subscribed to it. A cache that trusts its entries between two requests
asks `Listener.live()` first: an entry is served only while this process is sure to hear of a change, so a
process that lost the channel (the broker restarted, the link went silent) drops everything and serves from the
database until it has subscribed again. Every entry also expires within a few seconds of being read
(EPOCHAL_SERVING_CACHE_TTL_S), which bounds a change whose message was never sent (the writer could not reach
the broker).

A publisher waits (at most ECHO_WAIT_S) until every listener the broker handed the message to has confirmed it
had its handlers run, so a change answers once no API process holds what it replaced.

Messages name what changed (`key:12`, `user:3`, `model:4`, `default:mnist`, `experiment:9`); a listener hands
them to its handlers, which today drop their whole cache on any message: changes are rare, and a cache refilled in
a request or two is simpler than one that must know which of its entries a message concerns.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from infra import events

log = logging.getLogger(__name__)

CHANNEL = "epochal:invalidate"
Handler = Callable[[str], None]  # a message, or "*" when the channel was lost: everything may have changed
EVERYTHING = "*"
NONCE_MARK = "#"  # "key:12#3f9a...": the nonce lets the publisher recognise its own message when it comes back


# How long a publishing API process waits to hear its own message back: by then its own caches are empty (the
# request that made the change answers after that), and the broker has handed the message to every subscriber.
ECHO_WAIT_S = 1.0
# Each listener, once its handlers have run, pushes a mark on this list (suffixed by the message's nonce); the
# publisher waits for as many marks as the broker counted subscribers, so the writer's request answers once every
# API process has emptied its caches: the next request, to whichever process, reads the change.
ACKS = "epochal:invalidate:acks:"
ACKS_KEPT_S = 30  # a list nobody waits for any more goes away on its own


def publish(*messages: str) -> None:
    """Send `messages` to every listening process; logged, never raised, when the broker does not answer."""
    own = _listener if _listener is not None and _listener.live() else None
    try:
        client = events.redis_client()
        for message in messages:
            nonce = secrets.token_hex(8)
            echo = own.expect(nonce) if own is not None else None
            receivers = int(client.publish(events.channel(CHANNEL), f"{message}{NONCE_MARK}{nonce}"))
            if own is not None and echo is not None and not echo.wait(ECHO_WAIT_S):
                own.forget(nonce)
                log.warning("cache invalidation %s: not heard back within %.1f s", message, ECHO_WAIT_S)
            missing = _await_acks(client, nonce, receivers, time.monotonic() + ECHO_WAIT_S)
            if missing:
                # A listener that lost its link goes dark on its own (its heartbeat), and entries expire anyway.
                log.warning("cache invalidation %s: %d of %d listeners did not confirm", message, missing, receivers)
    except (redis.RedisError, OSError) as exc:
        # The caches' expiry bounds what this costs: the listeners keep entries for a few seconds at most.
        log.warning("cache invalidation %s not published (%s): caches catch up within their expiry", messages, exc)


def _await_acks(client: Any, nonce: str, receivers: int, deadline: float) -> int:
    """Wait until `receivers` listeners confirmed the message `nonce`, or `deadline`; how many did not."""
    key = f"{ACKS}{nonce}"
    missing = receivers
    while missing > 0:
        left = deadline - time.monotonic()
        if left <= 0 or client.blpop([key], timeout=max(left, 0.01)) is None:
            break
        missing -= 1
    if receivers:
        client.delete(key)
    return missing


def _ack(nonce: str) -> None:
    key = f"{ACKS}{nonce}"
    pipeline = events.redis_client().pipeline(transaction=False)
    pipeline.rpush(key, 1)
    pipeline.expire(key, ACKS_KEPT_S)
    pipeline.execute()


class Listener:
    """One thread subscribed to CHANNEL; `live()` is true only while the subscription is known to work."""

    def __init__(
        self,
        client: Callable[[], Any] = events.subscriber_client,
        heartbeat_s: float = 1.0,
        silent_after_s: float = 3.0,
        retry_s: float = 0.5,
        ack: Callable[[str], None] = _ack,
    ) -> None:
        self._client = client
        self._heartbeat_s, self._silent_after_s, self._retry_s = heartbeat_s, silent_after_s, retry_s
        self._ack = ack
        self._handlers: list[Handler] = []
        self._live = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._echoes: dict[str, threading.Event] = {}
        self._echoes_lock = threading.Lock()
        # A channel of this listener's own: `stop` publishes on it to wake the thread from its wait for a message,
        # so that a process stops at once rather than after up to half a heartbeat.
        self._wake = events.channel(f"{CHANNEL}:wake:{secrets.token_hex(8)}")
        self.heard = 0  # messages handed to the handlers: for tests

    def live(self) -> bool:
        return self._live.is_set()

    def on_message(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def start(self) -> Listener:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="cache-invalidation", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            if self._thread.is_alive() and self.live():  # not live: it waits on the stop flag, or cannot be reached
                self._wake_up()
            self._thread.join(timeout=5)
        self._lose()

    def _wake_up(self) -> None:
        # Best effort, on a broker that answered a moment ago: a listener that cannot be woken still notices the
        # stop within half a heartbeat.
        try:
            client = self._client()
            try:
                client.publish(self._wake, "stop")
            finally:
                client.close()
        except (redis.RedisError, OSError):
            pass

    def expect(self, nonce: str) -> threading.Event:
        """An event set when the message carrying `nonce` has been handed to every handler."""
        with self._echoes_lock:
            return self._echoes.setdefault(nonce, threading.Event())

    def forget(self, nonce: str) -> None:
        with self._echoes_lock:
            self._echoes.pop(nonce, None)

    def wait_live(self, timeout_s: float) -> bool:
        return self._live.wait(timeout_s)

    def _run(self) -> None:
        reported = False  # one warning per outage, not one per retry
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # any failure is a lost channel: caches go dark until it is back
                if self.live() or not reported:
                    log.warning("cache invalidation channel lost (%r): serving without caches", exc)
                reported = not self.live()
            finally:
                self._lose()
            self._stop.wait(self._retry_s)

    def _listen(self) -> None:
        client = self._client()
        pubsub = client.pubsub()
        try:
            channel = events.channel(CHANNEL)
            pubsub.subscribe(channel, self._wake)
            heard_at = time.monotonic()
            pinged_at = 0.0
            while not self._stop.is_set():
                now = time.monotonic()
                if now - heard_at > self._silent_after_s:
                    raise TimeoutError(f"the broker said nothing for {now - heard_at:.1f} s")
                if now - pinged_at >= self._heartbeat_s:
                    pubsub.ping()  # a half-open connection shows as silence: no pong comes back
                    pinged_at = now
                message = pubsub.get_message(timeout=self._heartbeat_s / 2)
                if message is None:
                    continue
                heard_at = time.monotonic()
                kind = message.get("type")
                if _name(message.get("channel")) != channel:
                    continue  # the wake channel's: the loop's test of the stop is all it is for
                if kind == "subscribe":
                    # Anything published while no subscription was up is unknown: start from nothing.
                    self._deliver(EVERYTHING)
                    self._live.set()
                elif kind == "message":
                    data = message["data"]
                    text, _, nonce = (data.decode() if isinstance(data, bytes) else str(data)).partition(NONCE_MARK)
                    self._deliver(text)
                    with self._echoes_lock:
                        echo = self._echoes.pop(nonce, None)
                    if echo is not None:
                        echo.set()
                    if nonce:
                        self._confirm(nonce)
        finally:
            pubsub.close()
            client.close()

    def _confirm(self, nonce: str) -> None:
        # On the process's command client: a subscribed connection carries no other commands. A confirmation that
        # does not go out costs its publisher a wait, never a stale answer: the caches are empty already.
        try:
            self._ack(nonce)
        except (redis.RedisError, OSError) as exc:
            log.warning("cache invalidation: could not confirm a message (%r)", exc)

    def _lose(self) -> None:
        was_live = self.live()
        self._live.clear()
        if was_live:
            self._deliver(EVERYTHING)
        with self._echoes_lock:  # nobody waits for an echo that cannot come: the caches are empty already
            for echo in self._echoes.values():
                echo.set()
            self._echoes.clear()

    def _deliver(self, message: str) -> None:
        self.heard += 1
        for handler in self._handlers:
            try:
                handler(message)
            except Exception:
                log.exception("cache invalidation handler failed on %r", message)


def _name(channel: object) -> str:
    return channel.decode() if isinstance(channel, bytes) else str(channel)


_listener: Listener | None = None
_lock = threading.Lock()


def listener() -> Listener:
    """The process's listener (not started: the API's lifespan starts it)."""
    global _listener
    with _lock:
        if _listener is None:
            _listener = Listener()
        return _listener
