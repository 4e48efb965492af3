"""Resume state: a network's weights and optimizer variables at an epoch end, as bytes, and back.

The variables are saved directly (an .npz), not through a Keras model file: that keeps the
optimizer's slots exact (a resumed run continues bit for bit) and stays clear of the Keras .h5
save bug that drops the optimizer from a live model's compile config.
"""

from __future__ import annotations

import io
import json
from typing import Any

import keras
import numpy as np

CONTROLS = "controls"  # the entry of the run's per-epoch controls (training/schedules.py), as JSON text


def capture_state(network: keras.Model, controls: dict[str, Any] | None = None) -> bytes:
    """The network's variables and its optimizer's, in order, as an uncompressed .npz; with `controls` (the
    schedules' and early stopping's state) beside them. Without, the bytes are those of before controls existed."""
    arrays = {f"network/{i}": np.asarray(v.numpy()) for i, v in enumerate(network.variables)}
    arrays |= {f"optimizer/{i}": np.asarray(v.numpy()) for i, v in enumerate(network.optimizer.variables)}
    if controls is not None:
        arrays[CONTROLS] = np.asarray(json.dumps(controls, sort_keys=True))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def restore_state(network: keras.Model, state: bytes) -> dict[str, Any] | None:
    """Load `capture_state` bytes into a compiled network built from the same spec; the controls' state it holds,
    if any."""
    # The optimizer creates its slots lazily, at the first step: create them now so they can be assigned.
    network.optimizer.build(network.trainable_variables)
    with np.load(io.BytesIO(state)) as saved:
        for prefix, variables in (("network", network.variables), ("optimizer", network.optimizer.variables)):
            names = [name for name in saved.files if name.startswith(f"{prefix}/")]
            if len(names) != len(variables):
                raise ValueError(
                    f"the resume state holds {len(names)} {prefix} variables but the network has {len(variables)}"
                )
            for i, variable in enumerate(variables):
                variable.assign(saved[f"{prefix}/{i}"])
        controls: dict[str, Any] | None = json.loads(str(saved[CONTROLS])) if CONTROLS in saved.files else None
    return controls
