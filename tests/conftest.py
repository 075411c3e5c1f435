"""Shared fixtures.

Services: tests that need PostgreSQL or Redis ask for the ``postgres_dsn`` or ``redis_url``
fixture. Where the service does not answer, the test is skipped on a developer's machine and
fails in CI (``CI=true``), so a missing service can never turn CI green.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_DSN = os.environ.get(
    "GRASS_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("GRASS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, default_port: int) -> str:
    if not _answers(url, default_port):
        message = f"{name} does not answer at {url}"
        if IN_CI:
            pytest.fail(f"{message}: CI needs it (tests must not skip there)")
        pytest.skip(message)
    return url


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    return require_service("PostgreSQL", POSTGRES_DSN, 5432)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return require_service("Redis", REDIS_URL, 6379)
