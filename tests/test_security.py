"""Password hashing: the service's production Argon2id cost, and hashes of any cost verifying.

The rest of the suite hashes at the cheap `TEST_ARGON2_COST` (see tests/apps.py); these tests are
where the production cost is exercised.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from app.common import security
from app.common.security import (
    PRODUCTION_ARGON2_COST,
    Argon2Cost,
    configure_password_hashing,
    hash_password,
    password_hasher,
    verify_password,
)
from tests.apps import TEST_ARGON2_COST

OWASP_PREFIX = "$argon2id$v=19$m=19456,t=2,p=1$"
"""Argon2id with OWASP's minimum recommended parameters: 19 MiB, 2 iterations, 1 lane."""

SERVICE_HASHING = """
import asyncio, json
from app.common.security import hash_password, verify_password

async def main() -> None:
    hashed = await hash_password("correct horse")
    print(json.dumps({
        "hash": hashed,
        "right": await verify_password("correct horse", hashed),
        "wrong": await verify_password("wrong horse", hashed),
        "unknown": await verify_password("correct horse", None),
    }))

asyncio.run(main())
"""
"""Hashing as a fresh service process does it, untouched by the test suite's configuration."""


def _prefix(cost: Argon2Cost) -> str:
    return f"$argon2id$v=19$m={cost.memory_cost},t={cost.time_cost},p={cost.parallelism}$"


@pytest.fixture
def restore_test_cost() -> Iterator[None]:
    """Let a test configure another cost; the suite's cheap cost is back afterwards."""
    try:
        yield
    finally:
        configure_password_hashing(TEST_ARGON2_COST)


def test_service_hashes_with_owasp_cost_and_verifies() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SERVICE_HASHING],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    outcome = json.loads(result.stdout)
    assert outcome["hash"].startswith(OWASP_PREFIX)
    assert outcome == {"hash": outcome["hash"], "right": True, "wrong": False, "unknown": False}


def test_production_cost_is_owasp_minimum() -> None:
    hashed = password_hasher(PRODUCTION_ARGON2_COST).hash("correct horse")
    assert hashed.startswith(OWASP_PREFIX)
    assert _prefix(PRODUCTION_ARGON2_COST) == OWASP_PREFIX


async def test_production_hash_verifies_whatever_cost_is_configured() -> None:
    stored = password_hasher(PRODUCTION_ARGON2_COST).hash("correct horse")
    assert await verify_password("correct horse", stored)
    assert not await verify_password("wrong horse", stored)


async def test_hashes_of_the_configured_cost_verify_after_a_change(
    restore_test_cost: None,
) -> None:
    cheap = await hash_password("correct horse")
    assert cheap.startswith(_prefix(TEST_ARGON2_COST))
    configure_password_hashing(PRODUCTION_ARGON2_COST)
    assert (await hash_password("correct horse")).startswith(OWASP_PREFIX)
    assert await verify_password("correct horse", cheap)
    assert not await verify_password("wrong horse", cheap)


@pytest.mark.parametrize("cost", [TEST_ARGON2_COST, PRODUCTION_ARGON2_COST])
async def test_unknown_account_check_costs_the_same_as_a_real_one(
    cost: Argon2Cost, restore_test_cost: None
) -> None:
    configure_password_hashing(cost)
    assert not await verify_password("correct horse", None)
    assert security._dummy_hash().startswith(_prefix(cost))
    assert (await hash_password("correct horse")).startswith(_prefix(cost))
