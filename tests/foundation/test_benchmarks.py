"""Every benchmark under scripts/bench/ still runs, at a tiny size.

The figures are not checked (they are measured by hand, on a quiet machine, and recorded in
docs/benchmarks.md): this only keeps a benchmark from rotting when the code it drives moves,
so that "the benchmarks pass unchanged" can be checked by running them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.ledger.evm import anvil_binary, anvil_unavailable

REPO = Path(__file__).resolve().parents[2]

# Each benchmark with arguments small enough for a few seconds, and a piece of text its report
# always prints (a ratio to the baseline measured in the same run).
_PLAIN = [
    ("protocol_codec.py", ["--rounds", "2000", "--repeat", "1"], "grass fast path"),
    ("json_guard.py", ["--repeat", "1"], "json.loads ms"),
    ("merkle.py", ["--sizes", "1000", "--proofs", "100"], "x baseline"),
]
_POSTGRES = [
    ("ledger.py", ["--users", "300", "--batch", "100"], "ratio"),
    ("pg_flush.py", ["--rows", "300"], "x copy"),
    ("pg_earnings.py", ["--rows", "300"], "x copy"),
    ("close_bucket.py", ["--devices", "300"], "x copy"),
]


def _run(script: str, args: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("script", "args", "marker"), _PLAIN, ids=[s for s, _, _ in _PLAIN])
def test_benchmark_runs(script: str, args: list[str], marker: str) -> None:
    assert marker in _run(script, args)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize(("script", "args", "marker"), _POSTGRES, ids=[s for s, _, _ in _POSTGRES])
def test_postgres_benchmark_runs(
    postgres_dsn: str, script: str, args: list[str], marker: str
) -> None:
    assert marker in _run(script, [*args, "--dsn", postgres_dsn])


@pytest.mark.slow
@pytest.mark.redis
def test_redis_benchmark_runs(redis_url: str) -> None:
    out = _run("redis_adapters.py", ["--url", redis_url, "--ops", "200", "--batches", "20"])
    assert "asyncio (baseline)" in out


@pytest.mark.slow
@pytest.mark.evm
def test_web3_benchmark_runs(tmp_path: Path) -> None:
    if anvil_binary() is None:
        anvil_unavailable("anvil is not installed (scripts/install-anvil.sh)")
    # anvil keeps a cache under $HOME: a home of its own, as the ledger tests give each anvil.
    out = _run("web3_calls.py", ["--calls", "50"], env={"HOME": str(tmp_path)})
    assert "calls/s" in out


@pytest.mark.slow
def test_frame_instructions_benchmark_runs() -> None:
    # valgrind is one of the tools .ci/run requires; on a developer's machine without it, skip.
    if shutil.which("valgrind") is None:
        if IN_CI:
            pytest.fail("valgrind is missing: CI needs it (apt-get install valgrind)")
        pytest.skip("valgrind is missing (apt-get install valgrind)")
    out = _run("frame_instructions.py", ["--frames", "200"])
    assert "x baseline" in out


@pytest.mark.slow
def test_node_gateway_benchmark_runs() -> None:
    out = _run("nodes.py", ["--connections", "40", "--rate", "80", "--duration", "1"])
    assert "PINGs" in out
