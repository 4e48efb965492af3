"""The library versions this process runs, as a training records them next to its results."""

from __future__ import annotations

import platform
from dataclasses import dataclass


@dataclass(frozen=True)
class LibraryVersions:
    python: str
    tensorflow: str
    keras: str
    numpy: str


def library_versions() -> LibraryVersions:
    """Python's, TensorFlow's, Keras' and NumPy's versions in this process (imports TensorFlow)."""
    import keras
    import numpy
    import tensorflow

    return LibraryVersions(
        python=platform.python_version(),
        tensorflow=tensorflow.__version__,
        keras=keras.__version__,
        numpy=numpy.__version__,
    )
