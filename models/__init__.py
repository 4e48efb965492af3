"""Database tables, engine and sessions."""

from models.base import Base
from models.roles import RoleLease, RolePass
from models.tables import Artifact, Attempt, EpochMetric, Evaluation, Experiment, ResumeState, Sweep
from models.users import ApiKey, User

__all__ = [
    "ApiKey",
    "Artifact",
    "Attempt",
    "Base",
    "EpochMetric",
    "Evaluation",
    "Experiment",
    "ResumeState",
    "RoleLease",
    "RolePass",
    "Sweep",
    "User",
]
