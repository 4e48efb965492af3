"""Database tables, engine and sessions."""

from models.base import Base
from models.tables import Artifact, EpochMetric, Evaluation, Experiment, Sweep

__all__ = ["Artifact", "Base", "EpochMetric", "Evaluation", "Experiment", "Sweep"]
