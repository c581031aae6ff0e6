"""API tokens: only their SHA-256 hashes are stored (``auth.py`` makes and checks them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import insert, select

from launchplane.server import tables as t
from launchplane.server.store.base import StoreBase


@dataclass(frozen=True)
class TokenInfo:
    id: int
    role: str
    name: str | None
    queues: tuple[str, ...]


class TokenStore(StoreBase):
    async def add_token(
        self, token_hash: str, role: str, name: str | None, queues: Sequence[str]
    ) -> None:
        async with self._write() as tx:
            await tx.conn.execute(
                insert(t.tokens).values(
                    token_hash=token_hash,
                    role=role,
                    name=name,
                    queues=list(queues),
                    created_at=t.utcnow(),
                )
            )

    async def find_token(self, token_hash: str) -> TokenInfo | None:
        async with self._read() as conn:
            row = (
                await conn.execute(select(t.tokens).where(t.tokens.c.token_hash == token_hash))
            ).first()
        if row is None:
            return None
        return TokenInfo(row.id, row.role, row.name, tuple(row.queues))
