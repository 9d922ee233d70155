"""The tiers' report (tests/tiers.py): the fast tier's tests over the limit are listed, the experiment smoke runs
are totalled apart, the slow tier is neither."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SUITE = '''
import time
import pytest

@pytest.fixture(scope="session")
def trained():
    time.sleep(0.6)


def test_quick():
    pass


def test_first_to_ask(trained):
    pass


def test_second_to_ask(trained):
    pass

def test_lingers():
    time.sleep(0.6)

@pytest.mark.experiment_smoke
@pytest.mark.parametrize("experiment", ["a", "b"])
def test_smoke(experiment):
    time.sleep(0.6)

@pytest.mark.slow
def test_slow_tier():
    time.sleep(0.6)

@pytest.mark.cluster
def test_needs_a_cluster():
    time.sleep(0.6)
'''


def _run(tmp_path: Path, *args: str) -> str:
    (tmp_path / "conftest.py").write_text(
        "from tests.tiers import pytest_addoption, pytest_collection_modifyitems, pytest_terminal_summary\n")
    (tmp_path / "test_suite.py").write_text(SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nunmarked_slow_seconds = 0.5\nmarkers =\n    slow\n    cluster\n"
                                         "    experiment_smoke\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_ADDOPTS", None)  # a caller's -k or -m is not this suite's
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_fast_tier_lists_its_tests_over_the_limit_and_totals_the_smoke_runs_apart(tmp_path):
    out = _run(tmp_path, "-m", "not slow")
    assert "6 passed, 2 deselected" in out  # the cluster-marked test is in the slow tier by its marker alone
    listed = out.split("unmarked tests over 0.5 s")[1].split("fast tier:")[0]
    assert re.search(r"0\.[6-9] s  \(set-up 0\.0 s\)  test_suite.py::test_lingers", listed)
    # the session fixture is paid in the first test's set-up: listed with it, as set-up
    assert re.search(r"0\.[6-9] s  \(set-up 0\.[6-9] s\)  test_suite.py::test_first_to_ask", listed)
    assert "test_quick" not in listed and "test_smoke" not in listed and "test_second_to_ask" not in listed
    assert "fast tier: experiment smoke runs (marker experiment_smoke) 2 tests" in out
    assert "the other tests 4," in out


def test_the_slow_tier_is_not_reported_as_the_fast_tiers_cost(tmp_path):
    out = _run(tmp_path, "-m", "slow")
    assert "2 passed, 6 deselected" in out
    assert "unmarked tests over" not in out and "fast tier:" not in out
