"""Read and change rights on studies.

Everyone signed in reads every study except private ones, which only their
owner and admins read. Only the owner or an admin changes a study (rename,
delete, cancel its runs). With authentication off, everyone may do everything.
"""

from __future__ import annotations

from fastapi import HTTPException, status

from backend.security.identity import Principal
from biaslab.store.models import Study


def can_read(study: Study, user: Principal | None) -> bool:
    if user is None or not study.private:
        return True
    return user.is_admin or study.owner_id == user.user_id


def ensure_can_change(study: Study, user: Principal | None) -> None:
    """Raise 403, naming the study and its owner, unless `user` may change `study`."""
    if (
        user is None
        or user.is_admin
        or (study.owner_id is not None and study.owner_id == user.user_id)
    ):
        return
    if study.owner is None:
        ownership = "has no owner (it was made while authentication was off)"
        rule = "only an admin can change it"
    else:
        ownership = f"belongs to {study.owner.name!r}"
        rule = "only its owner or an admin can change it"
    raise HTTPException(
        status_code=status.HTTP_403_FORBIDDEN,
        detail=f"study {study.id} ({study.name!r}) {ownership}; {rule}",
    )
