"""The signed-in user's API tokens: list, create (the token is shown once), revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from backend.deps import MAX_INTEGER, SessionDep
from backend.security.identity import SignedInUser
from backend.security.schemas import TokenCreate, TokenCreated, TokenPublic, TokensPublic
from biaslab.store.models import User
from biaslab.store.users import issue_token, list_tokens, revoke_token

router = APIRouter(prefix="/api/tokens", tags=["tokens"])

TokenId = Annotated[int, Path(ge=1, le=MAX_INTEGER)]


@router.get("")
def list_own(user: SignedInUser, session: SessionDep) -> TokensPublic:
    """List your tokens, newest first, revoked ones included; secrets are never shown again."""
    return TokensPublic(
        tokens=[TokenPublic.from_row(token) for token in list_tokens(session, user.user_id)]
    )


@router.post("", status_code=status.HTTP_201_CREATED)
def create(body: TokenCreate, user: SignedInUser, session: SessionDep) -> TokenCreated:
    """Create a token; the response is the only place its secret is ever shown."""
    row = session.get(User, user.user_id)
    assert row is not None, "authenticate() found this user in this request"
    new = issue_token(session, row, body.name)
    session.commit()
    return TokenCreated(**TokenPublic.from_row(new.token).model_dump(), token=new.secret)


@router.delete("/{token_id}")
def revoke(token_id: TokenId, user: SignedInUser, session: SessionDep) -> TokenPublic:
    """Revoke one of your tokens; requests with it get 401 from then on."""
    token = revoke_token(session, user.user_id, token_id)
    if token is None:
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND,
            detail=f"token {token_id} not found among the tokens of {user.name!r}",
        )
    session.commit()
    return TokenPublic.from_row(token)
