"""The two test tiers (docs/testing.md) as pytest hooks, imported by tests/conftest.py.

`make test` runs `-m "not slow"`; `make test-all` runs everything. A test that needs a service, several processes, a
browser or another backend is in the full tier by its marker alone: it is marked slow here. The end of each run lists
the fast tier's tests over ``unmarked_slow_seconds`` (a report, not a failure) and what the experiment smoke runs
(marker ``experiment_smoke``: one per conf/experiment/*.yaml, in the fast tier whatever they cost) took together.
"""

from __future__ import annotations

import pytest

IMPLY_SLOW = ("cluster", "backends", "distribution", "ui")


def pytest_addoption(parser):
    parser.addini("unmarked_slow_seconds", "report unmarked tests that took longer than this (setup + call + "
                  "teardown), at the end of the run", default="10")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(item.get_closest_marker(name) for name in IMPLY_SLOW) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


def fast_tier_costs(reports) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Seconds of each test outside the slow tier: (its call + teardown, its setup, the experiment smoke runs' whole
    time). Set-up is apart because a fixture of a wider scope (the session's trained model) is paid in the setup of
    the first test that asks for it: marking that test slow would only move the cost to the next one."""
    ran: dict[str, float] = {}
    setup: dict[str, float] = {}
    smoke: dict[str, float] = {}
    for report in reports:
        when = getattr(report, "when", None)
        if when not in ("setup", "call", "teardown") or "slow" in report.keywords:
            continue
        into = smoke if "experiment_smoke" in report.keywords else setup if when == "setup" else ran
        into[report.nodeid] = into.get(report.nodeid, 0.0) + report.duration
    return ran, setup, smoke


def _over(seconds: dict[str, float], limit: float) -> list[tuple[float, str]]:
    return sorted(((spent, nodeid) for nodeid, spent in seconds.items() if spent > limit), reverse=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """List the fast tier's tests that took over ``unmarked_slow_seconds`` and the set-ups that did (a report, not a
    failure), and what the experiment smoke runs and the rest cost."""
    limit = float(config.getini("unmarked_slow_seconds"))
    reports = [report for reports in terminalreporter.stats.values() for report in reports]
    ran, setup, smoke = fast_tier_costs(reports)
    for over, title in ((_over(ran, limit), f"unmarked tests over {limit:g} s: mark them @pytest.mark.slow or "
                                            "slim them"),
                        (_over(setup, limit), f"fixture set-ups over {limit:g} s (a session or module fixture is "
                                              "paid by the first test that asks for it)")):
        if over:
            terminalreporter.section(title)
            for spent, nodeid in over:
                terminalreporter.write_line(f"{spent:7.1f} s  {nodeid}")
    if smoke or ran:
        rest = sum(ran.values()) + sum(setup.values())
        terminalreporter.write_line(f"fast tier: experiment smoke runs (marker experiment_smoke) {len(smoke)} tests, "
                                    f"{sum(smoke.values()):.0f} s; the other tests {len(ran)}, {rest:.0f} s")
