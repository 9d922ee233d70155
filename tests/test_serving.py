"""`melanoma-lab serve` (make serve): the champion answers raw images over REST."""

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from PIL import Image

from melanoma_lab.serving import promote

from melanoma_lab.cli import promote as promote_command
from melanoma_lab.serving.classifier import encode_image
from melanoma_lab.tracking.server import stop_group, wait_until_up
from melanoma_lab.study.tune_cluster import free_port

pytestmark = pytest.mark.slow


def test_served_champion_predicts_raw_real_size_images(trained_model, tmp_path):
    _, run, catalog, store = trained_model
    assert promote_command.main(["--run", run.info.run_id, f"paths.mlruns_dir={store}"]) == 0
    images = []
    for index, (path, size) in enumerate(zip(catalog.split("test")["path"][:2], [(1022, 767), (600, 450)])):
        images.append(tmp_path / f"lesion{index}.{'jpg' if index == 0 else 'png'}")
        Image.open(path).resize(size).save(images[-1])  # ISIC-original sizes, not the model's 32 px
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "melanoma_lab", "serve", f"paths.root_dir={tmp_path}",
                               f"serving.port={port}", f"hydra.run.dir={tmp_path / 'serve'}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", server)
        body = json.dumps({"dataframe_records": [{"image": encode_image(p)} for p in images]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            rows = json.loads(response.read())["predictions"]
    finally:
        stop_group(server)
    classes = list(catalog.classes)
    threshold = run.data.metrics["val_melanoma_alert_threshold"]
    assert len(rows) == 2
    for row in rows:
        probabilities = [row[name] for name in classes]
        assert abs(sum(probabilities) - 1) < 1e-4 and row["error"] == ""
        assert row["top_class"] == classes[probabilities.index(max(probabilities))]
        assert row["melanoma_alert"] == (row["melanoma_probability"] >= threshold and not row["out_of_distribution"])
        assert isinstance(row["out_of_distribution"], bool) and row["ood_note"] == ""


def test_serving_without_a_champion_says_what_to_do(tmp_path):
    result = subprocess.run([sys.executable, "-m", "melanoma_lab", "serve", f"paths.root_dir={tmp_path}",
                             f"hydra.run.dir={tmp_path / 'serve'}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2  # a user error
    assert result.stderr.startswith("error: cannot serve") and "melanoma-lab promote" in result.stderr
