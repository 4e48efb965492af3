"""Resume state: a network's weights and optimizer variables at an epoch end, as bytes, and back.

The variables are saved directly (an .npz), not through a Keras model file: that keeps the
optimizer's slots exact (a resumed run continues bit for bit) and stays clear of the Keras .h5
save bug that drops the optimizer from a live model's compile config.
"""

from __future__ import annotations

import io

import keras
import numpy as np


def capture_state(network: keras.Model) -> bytes:
    """The network's variables and its optimizer's, in order, as an uncompressed .npz."""
    arrays = {f"network/{i}": np.asarray(v.numpy()) for i, v in enumerate(network.variables)}
    arrays |= {f"optimizer/{i}": np.asarray(v.numpy()) for i, v in enumerate(network.optimizer.variables)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def restore_state(network: keras.Model, state: bytes) -> None:
    """Load `capture_state` bytes into a compiled network built from the same spec."""
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
