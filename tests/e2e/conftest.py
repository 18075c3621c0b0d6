"""Fixtures starting real servers: daphne (in-process or Redis channel layer)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.servers import daphne_server, redis_server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="module", params=["inmemory", "redis"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Base URL of a fresh daphne, on the in-process layer or on REDIS_URL."""
    env = {}
    if request.param == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
    workdir: Path = tmp_path_factory.mktemp(f"daphne-{request.param}")
    with daphne_server(workdir, env) as base:
        yield base
