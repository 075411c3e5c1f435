"""The hostile campaign's tally in pytest's terminal summary, and its floor of cases.

Every run prints, per campaign, the hostile cases played, the time they took and the canary's
worst latency meanwhile. When every test of this directory ran, fewer than
:data:`tests.hostile.campaign.MIN_CASES` cases in all fails the session: a campaign that
quietly shrank (a strategy filtered to nothing, a test skipped) would otherwise still pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.campaign import LATENCY_BOUND, MIN_CASES, TALLY

HERE = Path(__file__).parent
_outcomes: dict[str, str] = {}


def _ours(item: pytest.Item) -> bool:
    return Path(str(item.path)).parent == HERE


_deselected: list[str] = []


def pytest_deselected(items: list[pytest.Item]) -> None:
    _deselected.extend(item.nodeid for item in items if _ours(item))


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:
        if _ours(item):
            _outcomes[item.nodeid] = "collected"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid in _outcomes and report.when == "call":
        _outcomes[report.nodeid] = report.outcome


def _complete() -> bool:
    """Every test of every module here was selected and ran."""
    modules = {path.name for path in HERE.glob("test_*.py")}
    selected = {nodeid.split("::")[0].rsplit("/", 1)[-1] for nodeid in _outcomes}
    ran = all(outcome != "collected" for outcome in _outcomes.values())
    return selected == modules and not _deselected and ran


def _total() -> int:
    return sum(figures.cases for figures in TALLY.values())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY:
        return
    write = terminalreporter.write_line
    terminalreporter.section("hostile campaign")
    for name, figures in sorted(TALLY.items()):
        worst = f"{figures.worst_latency * 1000:.1f} ms" if figures.canary_calls else "-"
        write(
            f"{name:<10} {figures.cases:>6} cases in {figures.seconds:6.1f} s; "
            f"canary worst latency {worst} over {figures.canary_calls} calls"
        )
    write(
        f"{'total':<10} {_total():>6} hostile cases (floor {MIN_CASES} for a full run; "
        f"canary bound {LATENCY_BOUND * 1000:.0f} ms)"
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _complete() and _total() < MIN_CASES and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"hostile campaign: only {_total()} cases, at least {MIN_CASES} are required",
                red=True,
            )
