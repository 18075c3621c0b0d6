"""Fixtures starting real servers: daphne, redis-server and PostgreSQL on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e.servers import (
    DaphneServer,
    daphne_server,
    is_postgres,
    postgres_cluster,
    redis_server,
)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as redis:
        yield redis.url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The suite's PostgreSQL server when it runs on one, else a throwaway cluster."""
    configured = os.environ.get("DATABASE_URL", "")
    if is_postgres(configured):
        yield configured
        return
    with postgres_cluster() as url:
        yield url


@pytest.fixture(scope="module", params=["inmemory", "redis"])
def daphne(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaphneServer]:
    """A fresh daphne, on the in-process layer or on REDIS_URL (``env`` reaches its
    database, for ``manage.py``)."""
    env = {}
    if request.param == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
    with daphne_server(tmp_path_factory.mktemp(f"daphne-{request.param}"), env=env) as process:
        yield process


@pytest.fixture(scope="module")
def server(daphne: DaphneServer) -> str:
    """Base URL of ``daphne``."""
    return daphne.base
