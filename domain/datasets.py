"""Datasets as rows (models/datasets.py): who may see one, a new version of an upload, and deleting one.

A user sees the built-ins, every public dataset and their own (an admin sees all); another user's private dataset
is `NotFound` with the same words as a missing one. A name belongs to the first user to upload under it: another
user's upload under a name they can see is refused (409), and under one they cannot see too, since one name has
one owner (so a private name is known to be taken, as a registered model's is). The owner (or an admin) may share a
private dataset with named users, who then see and use it as their own but cannot change it.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Select, case, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain.access import in_id_range
from domain.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from models import DatasetShare, DatasetStatus, DatasetVersion, Experiment, Visibility
from models.base import utcnow
from models.datasets import TRAINABLE, info_of
from models.states import Status
from models.users import User
from training.spec import DATASET_NAME, DATASETS, DatasetInfo, DatasetLookup, builtin_info

# A short slug: what a URL, a file name and a CLI argument can all carry as it is.
NAME = re.compile(DATASET_NAME)
NAME_RULE = "1 to 40 characters: lowercase letters, digits, '-' and '_', starting and ending with a letter or digit"
# Two uploads under one name at once both read the same highest version; the second is refused by the unique
# constraint and tries the next number, this many times.
VERSION_TRIES = 5
FINISHED = tuple(s for s in Status if s.finished)


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise Invalid(f"dataset name {name!r:.60} is not a short slug: {NAME_RULE} (e.g. 'flowers')")
    return name


def readable(statement: Select[Any], user: User) -> Select[Any]:
    """`statement` limited to the dataset versions the user may see: built-ins, public ones, their own (all, for an
    admin)."""
    statement = statement.where(DatasetVersion.deleted_at.is_(None))
    if user.admin:
        return statement
    shared_with_user = select(DatasetShare.name).where(DatasetShare.user_id == user.id)
    return statement.where(
        or_(
            DatasetVersion.owner_id.is_(None),
            DatasetVersion.owner_id == user.id,
            DatasetVersion.visibility == Visibility.PUBLIC,
            DatasetVersion.name.in_(shared_with_user),
        )
    )


def _missing(name: str) -> NotFound:
    return NotFound(f"dataset {name!r:.60} does not exist; GET /datasets lists the ones you can use")


def visible_versions(session: Session, user: User, name: str) -> list[DatasetVersion]:
    """Every version of `name` the user may see, oldest first; NotFound when there is none."""
    statement = select(DatasetVersion).where(DatasetVersion.name == name).order_by(DatasetVersion.version)
    versions = list(session.scalars(readable(statement, user)))
    if not versions:
        raise _missing(name)
    return versions


def visible_version(session: Session, user: User, name: str, version: int) -> DatasetVersion:
    """Version `version` of `name`, if the user may see it; NotFound otherwise (another user's private dataset in
    the words of a missing one)."""
    versions = visible_versions(session, user, name)
    row = next((v for v in versions if v.version == version), None) if in_id_range(version) else None
    if row is None:
        raise NotFound(f"dataset {name!r} has no version {version}; GET /datasets/{name} lists its versions")
    return row


def all_visible(session: Session, user: User) -> list[DatasetVersion]:
    """Every dataset version the user may see: built-ins first (as they were declared), then by name and version."""
    builtin = DatasetVersion.owner_id.is_(None)
    statement = select(DatasetVersion).order_by(
        ~builtin, case((builtin, DatasetVersion.id), else_=0), DatasetVersion.name, DatasetVersion.version
    )
    return list(session.scalars(readable(statement, user)))


def check_visible(session: Session, user: User, name: str) -> None:
    """NotFound unless `name` is a built-in or a dataset the user may see (its default model, its predictions)."""
    if builtin_info(name) is None:
        visible_versions(session, user, name)


def ready_version(
    session: Session, user: User, name: str, version: int | None, not_ready: type[DomainError] = Conflict
) -> DatasetVersion:
    """Version `version` of `name` (None: the latest ready one) if the user may see it and it is ready (a duplicate
    is: it has its twin's arrays).

    NotFound for a dataset they cannot see (in the words of a missing one) or a version it does not have;
    `not_ready` (a 409 unless the caller says otherwise) for one still processing, or failed.
    """
    versions = visible_versions(session, user, name)
    if version is None:
        ready = [row for row in versions if row.status in TRAINABLE]
        if not ready:
            latest = versions[-1]
            raise not_ready(
                f"dataset {name!r} has no ready version yet (version {latest.version} is {latest.status}); "
                f"GET /datasets/{name} shows where each stands"
            )
        return ready[-1]
    row = next((v for v in versions if v.version == version), None) if in_id_range(version) else None
    if row is None:
        raise NotFound(f"dataset {name!r} has no version {version}; GET /datasets/{name} lists its versions")
    if row.status not in TRAINABLE:
        then = (
            "its errors say why; upload it again"
            if row.status == DatasetStatus.FAILED
            else f"try again once it is ready (GET /datasets/{name} shows its status)"
        )
        raise not_ready(f"dataset {name!r} version {version} is not ready: it is {row.status}; {then}")
    return row


def usable_info(session: Session, user: User, name: str, version: int | None) -> DatasetInfo:
    """The version of uploaded dataset `name` that a spec of `user` trains on: `version`, or the latest ready one.
    A version not ready to train on is Invalid (a 422, as the spec's other checks)."""
    return info_of(ready_version(session, user, name, version, not_ready=Invalid))


def lookup_for(session: Session, user: User) -> DatasetLookup:
    """What validates a spec of `user` against the uploaded dataset it names (training/spec.py `with_datasets`)."""
    return lambda name, version: usable_info(session, user, name, version)


def check_owner(session: Session, user: User, name: str) -> None:
    """Conflict unless `name` is a valid slug that is free or the user's own."""
    check_name(name)
    owners = set(session.scalars(select(DatasetVersion.owner_id).where(DatasetVersion.name == name).distinct()))
    if None in owners:
        raise Conflict(f"{name!r} is a built-in dataset; upload yours under another name")
    if owners - {user.id}:
        raise Conflict(f"the dataset name {name!r} is taken by another user; upload yours under another name")


def new_version(
    session: Session,
    user: User,
    name: str,
    visibility: Visibility,
    options: dict[str, Any],
    upload_sha256: str,
    upload_bytes: int,
) -> DatasetVersion:
    """A `processing` row for an upload stored as `upload_sha256`: the next version of `name`, committed.

    Conflict when the name is a built-in's or another user's.
    """
    for _ in range(VERSION_TRIES):
        check_owner(session, user, name)
        latest = session.scalar(select(func.max(DatasetVersion.version)).where(DatasetVersion.name == name))
        row = DatasetVersion(
            name=name,
            version=(latest or 0) + 1,
            owner_id=user.id,
            created_by=user.id,
            visibility=visibility,
            status=DatasetStatus.PROCESSING,
            options=options,
            upload_sha256=upload_sha256,
            upload_bytes=upload_bytes,
        )
        session.add(row)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            continue
        return row
    raise Conflict(f"uploads under {name!r} kept racing for a version number; send yours again")


def _changeable(session: Session, user: User, name: str) -> list[DatasetVersion]:
    """The versions of `name`, if the user may change who sees it (its owner, or an admin). NotFound for a dataset
    they cannot see; Forbidden for a built-in, or for one they see without owning it."""
    versions = visible_versions(session, user, name)
    if versions[0].builtin:
        raise Forbidden(f"{name!r} is a built-in dataset: every user sees it already")
    if not user.admin and versions[0].owner_id != user.id:
        raise Forbidden(f"dataset {name!r} is another user's: only its owner or an admin can share it")
    return versions


def shares_of(session: Session, user: User, name: str) -> list[DatasetShare]:
    """Who the dataset is shared with, by its owner or an admin (the users it is shared with see the dataset, not
    each other)."""
    _changeable(session, user, name)
    return list(session.scalars(select(DatasetShare).where(DatasetShare.name == name).order_by(DatasetShare.user_id)))


def share(session: Session, user: User, name: str, with_user_id: int) -> None:
    """Share every version of `name` with user `with_user_id` (idempotent), committed."""
    if not in_id_range(with_user_id) or session.get(User, with_user_id) is None:
        raise NotFound(f"user {with_user_id} does not exist; GET /users lists them (ask an admin for the id)")
    versions = _changeable(session, user, name)
    if with_user_id == versions[0].owner_id:
        raise Invalid(f"user {with_user_id} owns {name!r}: there is nobody to share it with")
    exists = select(DatasetShare.id).where(DatasetShare.name == name, DatasetShare.user_id == with_user_id)
    if session.scalar(exists) is None:
        session.add(DatasetShare(name=name, user_id=with_user_id, shared_by=user.id))
        try:
            session.commit()
        except IntegrityError:  # the same share, made at the same moment: it is there
            session.rollback()


def unshare(session: Session, user: User, name: str, with_user_id: int) -> None:
    """Stop sharing `name` with user `with_user_id`, committed; NotFound if it was not shared with them. Their
    experiments on it stay theirs, but they cannot train on it again."""
    if not in_id_range(with_user_id):  # no user can have it: never a query the database would overflow on
        raise NotFound(f"dataset {name!r} is not shared with user {with_user_id}; GET /datasets/{name}/shares")
    _changeable(session, user, name)
    row = session.scalar(select(DatasetShare).where(DatasetShare.name == name, DatasetShare.user_id == with_user_id))
    if row is None:
        raise NotFound(f"dataset {name!r} is not shared with user {with_user_id}; GET /datasets/{name}/shares")
    session.delete(row)
    session.commit()


def hold_versions(session: Session, experiments: list[Experiment]) -> None:
    """Inside a submission's transaction, after its rows were flushed: lock the dataset versions they train on
    against a delete until the commit, and refuse (Conflict) a version deleted since the spec was checked.

    With `delete_version`, which tombstones before it counts who uses the version, one of the two always sees the
    other: a delete that came first is seen here, a submission that came first is counted there. On PostgreSQL the
    share lock waits for a delete in progress; on SQLite the flushed insert already holds the one write lock.
    """
    # A built-in is never deleted: a submission on one (the homework's) costs no statement more.
    pairs = {(e.dataset, e.dataset_version) for e in experiments if e.dataset not in DATASETS}
    if not pairs:
        return
    named = or_(*((DatasetVersion.name == name) & (DatasetVersion.version == version) for name, version in pairs))
    rows = session.scalars(select(DatasetVersion).where(named).with_for_update(read=True))
    gone = sorted(f"{row.name}@{row.version}" for row in rows if row.deleted_at is not None)
    if gone:
        raise Conflict(
            f"dataset {', '.join(gone)} was deleted while this was submitted: GET /datasets/{gone[0].split('@')[0]} "
            "lists the versions left; submit again naming one of them"
        )


def delete_version(session: Session, user: User, name: str, version: int) -> None:
    """Delete one version, by its owner or an admin. The built-ins are refused (403); the blobs it referenced are
    freed by the blob store's sweep, once nothing else references them. Its number is not given again, and the
    name stays the owner's."""
    row = visible_version(session, user, name, version)
    if row.builtin:
        raise Forbidden(f"{name!r} is a built-in dataset: it cannot be deleted")
    if not user.admin and row.owner_id != user.id:
        raise Forbidden(f"dataset {name!r} is another user's public dataset: only its owner or an admin can delete it")
    # A tombstone, not a delete: the number stays taken. Its blobs are no longer referenced. Written before the
    # count, so that a submission on this version either is counted or sees the tombstone (`hold_versions`).
    row.deleted_at, row.blob_sha256, row.upload_sha256 = utcnow(), None, None
    session.flush()
    in_use = session.scalar(
        select(func.count(Experiment.id)).where(
            Experiment.dataset == name, Experiment.dataset_version == version, Experiment.status.not_in(FINISHED)
        )
    )
    if in_use:
        session.rollback()
        raise Conflict(
            f"dataset {name}@{version} is used by {in_use} queued or running experiments: cancel them, or wait "
            "until they end, then delete it"
        )
    session.commit()
