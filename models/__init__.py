"""Database tables, engine and sessions."""

from models.base import Base
from models.blobs import Blob, BlobChunk
from models.datasets import DatasetShare, DatasetStatus, DatasetVersion
from models.registry import AliasMove, DatasetDefault, ModelAlias, ModelVersion, RegisteredModel, Visibility
from models.roles import RoleLease, RolePass
from models.tables import Artifact, Attempt, EpochMetric, Evaluation, Experiment, ResumeState, Sweep
from models.users import ApiKey, User

__all__ = [
    "AliasMove",
    "ApiKey",
    "Artifact",
    "Attempt",
    "Base",
    "Blob",
    "BlobChunk",
    "DatasetDefault",
    "DatasetShare",
    "DatasetStatus",
    "DatasetVersion",
    "EpochMetric",
    "Evaluation",
    "Experiment",
    "ModelAlias",
    "ModelVersion",
    "RegisteredModel",
    "ResumeState",
    "RoleLease",
    "RolePass",
    "Sweep",
    "User",
    "Visibility",
]
