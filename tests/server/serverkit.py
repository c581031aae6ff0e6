"""Helpers of the queue server tests alone (fixtures live in conftest.py).

The queue, the clients and lease helpers that the store suite shares are in tests/kit.py.
"""

from __future__ import annotations


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
