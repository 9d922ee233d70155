"""The MLflow UI as a person sees it: headless Chromium lists the study's runs and opens a confusion matrix.

Needs Debian's chromium and chromium-driver (`.ci/run` installs them); skipped where they are missing.
Screenshots go to $MELANOMA_LAB_UI_SCREENSHOTS (default: the test's temporary folder).
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from melanoma_lab.study.experiment import run_experiment
from melanoma_lab.tracking.store import tracking_uri
from tests.conftest import TINY_AUGMENTOR
from melanoma_lab.tracking.server import stop_group, wait_until_up
from melanoma_lab.study.tune_cluster import free_port

pytestmark = [pytest.mark.slow, pytest.mark.ui]

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
OFFLINE_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--window-size=1600,1000"]


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Debian chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in OFFLINE_FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def study_ui(tiny_cfg, tmp_path):
    """A study with m1, m2, m3 runs and `mlflow ui` serving its store: (base URL, experiment id, runs by name)."""
    for name in ("m1", "m2", "m3"):  # m3 logs its model, registered with its card below
        run_experiment(tiny_cfg(f"experiment={name}", "study.name=ui-study", f"tracking.log_model={name == 'm3'}",
                                *(TINY_AUGMENTOR if name == "m3" else [])),
                       tmp_path / name)
    port = free_port()
    bin_dir = os.path.dirname(sys.executable)
    server = subprocess.Popen([os.path.join(bin_dir, "mlflow"), "ui", "--backend-store-uri",
                               tracking_uri(None, tmp_path / "mlruns"), "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True, env=os.environ | {"PATH": bin_dir + os.pathsep + os.environ["PATH"]})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/health", server)
        experiment = _api(base, "experiments/get-by-name?experiment_name=ui-study")["experiment"]["experiment_id"]
        runs = _api(base, "runs/search", {"experiment_ids": [experiment]})["runs"]
        yield base, experiment, {r["info"]["run_name"]: r for r in runs}
    finally:
        stop_group(server)


def _api(base: str, endpoint: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(f"{base}/ajax-api/2.0/mlflow/{endpoint}",
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _page_shows(driver, texts: list[str], timeout: float = 60.0) -> str:
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = driver.find_element(By.TAG_NAME, "body").text
        if all(text in body for text in texts):
            return body
        time.sleep(0.5)
    raise AssertionError(f"page {driver.current_url} never showed {texts}; it shows:\n{body[:2000]}")


def test_study_runs_metrics_and_confusion_matrix_in_the_mlflow_ui(browser, study_ui, tmp_path):
    from selenium.webdriver.common.by import By

    base, experiment, runs = study_ui
    shots = Path(os.environ.get("MELANOMA_LAB_UI_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    assert sorted(runs) == ["m1", "m2", "m3"]

    browser.get(f"{base}/#/experiments/{experiment}/runs")
    _page_shows(browser, ["m1", "m2", "m3", "3 matching runs", "synthetic-training"])  # lineage: Dataset column
    browser.save_screenshot(str(shots / "ui_runs.png"))

    m3 = runs["m3"]["info"]["run_id"]
    balanced = {m["key"]: m["value"] for m in runs["m3"]["data"]["metrics"]}["val_balanced_accuracy"]
    browser.get(f"{base}/#/experiments/{experiment}/runs/{m3}")
    _page_shows(browser, ["val_balanced_accuracy", f"{balanced:.4f}"[:5], "test_melanoma_sensitivity",
                          "headline/val_balanced_accuracy", "headline/test_melanoma_roc_auc"])
    browser.save_screenshot(str(shots / "ui_run_metrics.png"))

    browser.get(f"{base}/#/experiments/{experiment}/runs/{m3}/artifacts")
    _page_shows(browser, ["evaluation", "learning_curves.png"])
    browser.find_element(By.XPATH, "//*[normalize-space(text())='evaluation']").click()
    _page_shows(browser, ["val_confusion_matrix.png"])
    browser.find_element(By.XPATH, "//*[normalize-space(text())='val_confusion_matrix.png']").click()
    _page_shows(browser, ["evaluation/val_confusion_matrix.png"])
    deadline = time.monotonic() + 30
    while not any(int(image.get_attribute("naturalWidth") or 0) > 400 and
                  image.get_attribute("src").startswith("blob:") for image in browser.find_elements(By.TAG_NAME, "img")):
        assert time.monotonic() < deadline, "the confusion-matrix image never rendered"
        time.sleep(0.5)
    browser.save_screenshot(str(shots / "ui_confusion_matrix.png"))
    assert (shots / "ui_confusion_matrix.png").stat().st_size > 10_000

    from melanoma_lab.serving import promote

    from melanoma_lab.cli import promote as promote_command

    assert promote_command.main(["--run", m3, f"tracking.tracking_uri={base}"]) == 0  # registered, with its model card
    browser.get(f"{base}/#/models/{promote.REGISTERED_NAME}/versions/1")
    _page_shows(browser, ["Intended use", "not a diagnostic device", "Melanoma alert (operating point)"])
    browser.save_screenshot(str(shots / "ui_model_card.png"))
