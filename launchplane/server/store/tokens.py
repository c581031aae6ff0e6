"""API tokens: only their SHA-256 hashes are stored (``auth.py`` makes and checks them).

A token is never deleted by the API: revoking it sets ``revoked_at``, so that a
request that still carries it is told it was revoked (not just "invalid"), and
``GET /tokens`` shows when. Every request looks its token up here (``auth.py``
says why there is no cache).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, insert, select, update

from launchplane.server import tables as t
from launchplane.server.problems import NotFound
from launchplane.server.store.base import StoreBase


@dataclass(frozen=True)
class TokenInfo:
    id: int
    role: str
    name: str | None
    queues: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class TokenStore(StoreBase):
    async def add_token(
        self,
        token_hash: str,
        role: str,
        name: str | None,
        queues: Sequence[str],
        expires_at: datetime | None = None,
    ) -> TokenInfo:
        async with self._write() as tx:
            row = (
                await tx.conn.execute(
                    insert(t.tokens)
                    .values(
                        token_hash=token_hash,
                        role=role,
                        name=name,
                        queues=list(queues),
                        created_at=t.utcnow(),
                        expires_at=expires_at,
                    )
                    .returning(*t.tokens.c)
                )
            ).one()
        return _info(row)

    async def find_token(self, token_hash: str) -> TokenInfo | None:
        async with self._read() as conn:
            row = (
                await conn.execute(select(t.tokens).where(t.tokens.c.token_hash == token_hash))
            ).first()
        return None if row is None else _info(row)

    async def list_tokens(self) -> list[TokenInfo]:
        async with self._read() as conn:
            rows = (await conn.execute(select(t.tokens).order_by(t.tokens.c.id))).all()
        return [_info(row) for row in rows]

    async def revoke_token(self, token_id: int) -> TokenInfo:
        """Revoke a token (from the next request on, on every server); revoking twice keeps
        the first time. ``NotFound`` for an unknown id."""
        async with self._write() as tx:
            await tx.conn.execute(
                update(t.tokens)
                .where(t.tokens.c.id == token_id, t.tokens.c.revoked_at.is_(None))
                .values(revoked_at=t.utcnow())
            )
            row = (await tx.conn.execute(select(t.tokens).where(t.tokens.c.id == token_id))).first()
            if row is None:
                raise NotFound(f"token {token_id} not found")
        return _info(row)


def _info(row: Row[object]) -> TokenInfo:
    return TokenInfo(
        row.id,
        row.role,
        row.name,
        tuple(row.queues),
        row.created_at,
        row.expires_at,
        row.revoked_at,
    )
