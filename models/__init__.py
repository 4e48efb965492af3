"""Database tables, engine and sessions."""

from models.base import Base
from models.tables import Artifact, EpochMetric, Evaluation, Experiment, Sweep
from models.users import ApiKey, User

__all__ = ["ApiKey", "Artifact", "Base", "EpochMetric", "Evaluation", "Experiment", "Sweep", "User"]
