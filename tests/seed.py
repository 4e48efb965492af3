"""Results as a finished run leaves them, written straight to the database: for tests that need a
succeeded experiment without training one."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from config import get_settings
from domain.lifecycle import Status
from models import Artifact, EpochMetric, Evaluation, Experiment
from models.db import make_engine, session_scope
from training.results import CHECKPOINT_NAME
from training.spec import DATASETS, Dataset

NOT_A_NETWORK = b"not a network; nothing here loads it"


def png() -> bytes:
    """A 28x28 grey PNG: a valid upload for an MNIST network."""
    buffer = io.BytesIO()
    Image.new("L", (28, 28), color=128).save(buffer, format="PNG")
    return buffer.getvalue()


def small_network_h5(folder: Path) -> bytes:
    """A small MNIST-shaped network saved as the worker saves checkpoints (imports TensorFlow)."""
    import keras

    keras.utils.set_random_seed(7)
    network = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    path = folder / CHECKPOINT_NAME
    network.save(path)
    return path.read_bytes()


@contextmanager
def fresh_database(folder: Path) -> Iterator[str]:
    """The URL of a new, empty database of the kind the suite runs on (a SQLite file, or a throwaway
    PostgreSQL database), so that its ids start at 1; dropped on exit."""
    url = make_url(get_settings().database_url)
    if url.get_backend_name() != "postgresql":
        yield f"sqlite:///{folder / 'fresh.db'}"
        return
    name = f"epochal_fresh_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def finish(
    experiment_id: int,
    *,
    epochs: int = 2,
    val_accuracy: float = 0.9,
    checkpoint: bytes = NOT_A_NETWORK,
    database_url: str | None = None,
) -> None:
    """Give a queued MNIST experiment epochs, an evaluation and a checkpoint, and mark it succeeded.

    In the test database, unless `database_url` names another one.
    """
    if database_url is None:
        with session_scope() as session:
            _finish(session, experiment_id, epochs, val_accuracy, checkpoint)
        return
    engine = make_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            _finish(session, experiment_id, epochs, val_accuracy, checkpoint)
    finally:
        engine.dispose()


def _finish(session: Session, experiment_id: int, epochs: int, val_accuracy: float, checkpoint: bytes) -> None:
    experiment = session.get(Experiment, experiment_id)
    assert experiment is not None
    for epoch in range(1, epochs + 1):
        session.add(
            EpochMetric(
                experiment_id=experiment_id,
                epoch=epoch,
                loss=1.0 / epoch,
                accuracy=0.5,
                val_loss=1.0,
                val_accuracy=val_accuracy,
                seconds=1.0,
            )
        )
    labels = list(DATASETS[Dataset.MNIST].class_names)
    session.add(
        Evaluation(
            experiment_id=experiment_id,
            test_loss=0.5,
            test_accuracy=0.8,
            labels=labels,
            confusion_matrix=[[1 if i == j else 0 for j in range(len(labels))] for i in range(len(labels))],
            classification_report={"accuracy": 0.8},
        )
    )
    session.add(
        Artifact(
            experiment_id=experiment_id,
            name=CHECKPOINT_NAME,
            media_type="application/x-hdf5",
            size=len(checkpoint),
            sha256=hashlib.sha256(checkpoint).hexdigest(),
            content=checkpoint,
        )
    )
    experiment.status = Status.SUCCEEDED
    experiment.best_epoch, experiment.best_val_accuracy = epochs, val_accuracy


def noise_digits(count: int, seed: int = 3) -> list[bytes]:
    """`count` different 28x28 grayscale PNGs of noise, so an answer given to the wrong request would show."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L").save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images


def submitted_and_succeeded(client: Any, checkpoint: bytes, **finished: Any) -> int:
    """An mnist experiment submitted through `client` (the API in-process, or over HTTP) and marked succeeded with
    `checkpoint` as its best network (the figures of `finish`, or those given)."""
    response = client.post("/experiments", json={"dataset": "mnist", "epochs": 2})
    assert response.status_code == 202, response.text
    experiment_id = int(response.json()["id"])
    finish(experiment_id, checkpoint=checkpoint, **finished)
    return experiment_id
