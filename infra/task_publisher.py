"""Enqueue jobs by task name. The API never imports the worker's code, only the name of its task."""

from __future__ import annotations

from functools import lru_cache

import redis
from celery import Celery

from config import DATASET_TASK_NAME, TRAIN_TASK_NAME, get_settings
from infra.events import DISPATCH_CHANNEL, channel, one_retry, redis_url
from infra.redaction import redact_secrets, redact_url

# Fail in seconds, not minutes, when the broker is down: the caller is an HTTP request.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


class BrokerUnavailable(RuntimeError):
    pass


@lru_cache
def get_celery_client() -> Celery:
    settings = get_settings()
    client = Celery("epochal-api", broker=settings.broker_url)
    client.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_timeout=3,
        broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout_s},
    )
    return client


def enqueue_training(experiment_id: int, queue: str) -> None:
    """Put one experiment on `queue`; raise `BrokerUnavailable` if the broker cannot take it."""
    _send(TRAIN_TASK_NAME, experiment_id, queue)


def enqueue_dataset(dataset_id: int, queue: str) -> None:
    """Put the preparation of one uploaded dataset version on `queue`; `BrokerUnavailable` if the broker cannot
    take it."""
    _send(DATASET_TASK_NAME, dataset_id, queue)


def _send(task: str, row_id: int, queue: str) -> None:
    try:
        get_celery_client().send_task(task, args=[row_id], queue=queue, retry=True, retry_policy=PUBLISH_RETRY_POLICY)
    except Exception as exc:
        # Stored in experiment.error and returned in the 503 body: never with the broker's password.
        where = redact_url(get_settings().broker_url)
        raise BrokerUnavailable(f"the broker at {where} did not take the job ({redact_secrets(str(exc))})") from exc


@lru_cache
def get_nudge_client() -> redis.Redis:
    """The broker's Redis as a redis-py client with a connection pool of its own, for nudging the dispatcher.

    Not a kombu connection. kombu's pool is shared by every Celery app of the process on the same broker, and one
    handed back with a read still pending (a control reply consumer's BRPOP) answered a later PUBLISH's health
    check with its reply ("Bad response from PING health check"); a fresh kombu connection per nudge instead
    doubled a submission's API CPU (bench/submit.py). One immediate retry replaces a pooled connection the broker
    closed; a broker that does not answer is refused within the connect timeout.
    """
    return redis.Redis.from_url(
        redis_url(get_settings().broker_url),
        socket_timeout=3,
        socket_connect_timeout=3,
        retry=one_retry(),
    )


def nudge_dispatcher() -> None:
    """Wake the dispatcher over the broker (new jobs wait); raise `BrokerUnavailable` if the broker does not answer.

    A submission that cannot reach the broker is refused (a 503 saying so) as when the API published the job itself:
    nothing would deliver it.
    """
    try:
        get_nudge_client().publish(channel(DISPATCH_CHANNEL), "queued")
    except Exception as exc:
        where = redact_url(get_settings().broker_url)
        raise BrokerUnavailable(f"the broker at {where} did not answer ({redact_secrets(str(exc))})") from exc


def broker_reachable() -> tuple[bool, str]:
    """Whether the broker answers, and what went wrong if not."""
    try:
        with get_celery_client().connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=3)
        return True, "ok"
    except Exception as exc:
        return False, redact_secrets(f"{type(exc).__name__}: {exc}")
