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


def fast_tier_costs(reports) -> tuple[list[tuple[float, str]], dict[str, float]]:
    """Seconds (setup + call + teardown) of each test outside the slow tier: the others, largest first, and the
    experiment smoke runs (marker ``experiment_smoke``: in the fast tier whatever they cost) apart."""
    smoke: dict[str, float] = {}
    other: dict[str, float] = {}
    for report in reports:
        if getattr(report, "when", None) in ("setup", "call", "teardown") and "slow" not in report.keywords:
            into = smoke if "experiment_smoke" in report.keywords else other
            into[report.nodeid] = into.get(report.nodeid, 0.0) + report.duration
    return sorted(((s, nodeid) for nodeid, s in other.items()), reverse=True), smoke


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """List the fast tier's tests that took over ``unmarked_slow_seconds`` (a report, not a failure), and what the
    experiment smoke runs cost together."""
    limit = float(config.getini("unmarked_slow_seconds"))
    reports = [report for reports in terminalreporter.stats.values() for report in reports]
    others, smoke = fast_tier_costs(reports)
    over = [(spent, nodeid) for spent, nodeid in others if spent > limit]
    if over:
        terminalreporter.section(f"unmarked tests over {limit:g} s: mark them @pytest.mark.slow or slim them")
        for spent, nodeid in over:
            terminalreporter.write_line(f"{spent:7.1f} s  {nodeid}")
    if smoke:
        terminalreporter.write_line(f"experiment smoke runs (fast tier, marker experiment_smoke): {len(smoke)} tests, "
                                    f"{sum(smoke.values()):.0f} s; the rest of the fast tier: {len(others)} tests, "
                                    f"{sum(spent for spent, _ in others):.0f} s")
