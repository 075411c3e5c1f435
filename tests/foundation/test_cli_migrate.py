"""``grass migrate`` as a real process against a throwaway schema."""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import quote

from tests.foundation.test_cli import _env
from tests.storage.postgres.conftest import temporary_schema


def _migrate(dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "grass", "migrate", "--dsn", dsn],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_migrate_then_rerun_does_nothing(postgres_dsn: str) -> None:
    with temporary_schema(postgres_dsn, "cli") as schema:
        dsn = f"{postgres_dsn}?options={quote(f'-csearch_path={schema}')}"
        first = _migrate(dsn)
        assert first.returncode == 0, first.stderr
        assert "migrations applied: 1" in first.stdout
        assert "partitions created: uptime_buckets_" in first.stdout
        again = _migrate(dsn)
        assert again.returncode == 0, again.stderr
        assert "migrations applied: none (already up to date)" in again.stdout
        assert "partitions created: none" in again.stdout


def test_migrate_unreachable_is_one_clear_line() -> None:
    result = _migrate("postgresql://grass:hunter2@127.0.0.1:1/grass")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "grass: cannot connect to PostgreSQL at 127.0.0.1:1/grass: [Errno 111] Connect call failed ('127.0.0.1', 1)"
    ]
