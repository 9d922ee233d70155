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


def fast_tier_costs(reports) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Seconds of each test outside the slow tier, [setup, call + teardown] (the experiment smoke runs apart, whole).
    Set-up is shown apart because a fixture of a wider scope (the session's trained model) is paid in the setup of
    the first test that asks for it: there the fixture, not the test, is what to slim."""
    tests: dict[str, list[float]] = {}
    smoke: dict[str, float] = {}
    for report in reports:
        when = getattr(report, "when", None)
        if when not in ("setup", "call", "teardown") or "slow" in report.keywords:
            continue
        if "experiment_smoke" in report.keywords:
            smoke[report.nodeid] = smoke.get(report.nodeid, 0.0) + report.duration
        else:
            tests.setdefault(report.nodeid, [0.0, 0.0])[when != "setup"] += report.duration
    return tests, smoke


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """List the fast tier's tests that took over ``unmarked_slow_seconds`` (setup + call + teardown; a report, not a
    failure), with their set-up shown apart, and what the experiment smoke runs and the others cost."""
    limit = float(config.getini("unmarked_slow_seconds"))
    reports = [report for reports in terminalreporter.stats.values() for report in reports]
    tests, smoke = fast_tier_costs(reports)
    over = sorted(((sum(parts), parts[0], nodeid) for nodeid, parts in tests.items() if sum(parts) > limit),
                  reverse=True)
    if over:
        terminalreporter.section(f"unmarked tests over {limit:g} s: mark them @pytest.mark.slow or slim them (a "
                                 "large set-up is a shared fixture paid by its first test: slim the fixture)")
        for spent, setup, nodeid in over:
            terminalreporter.write_line(f"{spent:7.1f} s  (set-up {setup:.1f} s)  {nodeid}")
    if smoke or tests:
        terminalreporter.write_line(f"fast tier: experiment smoke runs (marker experiment_smoke) {len(smoke)} tests, "
                                    f"{sum(smoke.values()):.0f} s; the other tests {len(tests)}, "
                                    f"{sum(map(sum, tests.values())):.0f} s")
