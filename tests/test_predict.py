import csv
import json

import mlflow
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from melanoma_lab.evaluation.gradcam import grad_cam
from melanoma_lab.serving import predict

from melanoma_lab.cli import predict as predict_command
from melanoma_lab.serving.classifier import encode_image
from melanoma_lab.tracking.store import tracking_uri


def test_predict_a_folder_with_alerts_overlays_and_per_file_errors(trained_model, tmp_path, capsys):
    uri, run, catalog, store = trained_model
    folder = tmp_path / "images"
    folder.mkdir()
    for path in catalog.split("test")["path"][:4]:
        Image.open(path).save(folder / (path.split("/")[-1].replace(".jpg", ".png")))
    Image.new("RGBA", (300, 200), (120, 60, 50, 255)).save(folder / "alpha.png")
    Image.new("L", (50, 80), 90).save(folder / "grey.jpg")
    (folder / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    # exit status 1: one input could not be read (the others are still predicted)
    code = predict_command.main([str(folder), "--model", uri, "--out", str(out), f"paths.mlruns_dir={store}"])
    assert code == 1
    captured = capsys.readouterr()
    assert captured.err.count("error:") == 1 and "broken.jpg" in captured.err
    assert "1 of 7 files could not be read" in captured.err
    for name in [p.name for p in folder.iterdir()]:
        assert f"{name}: " in captured.out
    assert "broken.jpg: NOT PREDICTED: cannot read as an image" in captured.out
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 7
    assert set(rows[0]) >= {"path", "top_class", "melanoma_probability", "alert", "out_of_distribution", "ood_score",
                            "melanoma", "error"}
    (broken,) = [row for row in rows if row["error"]]
    assert broken["path"].endswith("broken.jpg") and broken["melanoma"] == "" and "cannot read" in broken["error"]
    rows.remove(broken)
    threshold = run.data.metrics["val_melanoma_alert_threshold"]
    for row in rows:  # a picture flagged out of distribution never gets the alert
        assert (row["alert"] == "True") == (float(row["melanoma_probability"]) >= threshold
                                            and row["out_of_distribution"] == "False")
    assert {row["path"].split("/")[-1]: row["out_of_distribution"] for row in rows}["alpha.png"] == "True"  # flat
    assert len(list(out.glob("*_gradcam.png"))) == 6
    alerts = sum(row["alert"] == "True" for row in rows)
    assert captured.out.count("MELANOMA ALERT") == alerts


def test_predict_json_output(trained_model, tmp_path, capsys):
    uri, _, catalog, store = trained_model
    image = catalog.split("test")["path"][0]
    assert predict_command.main([image, "--model", uri, "--json", f"paths.mlruns_dir={store}"]) == 0
    payload = json.loads(capsys.readouterr().out)
    (only,) = payload["predictions"]
    assert only["path"] == image and abs(sum(only["probabilities"].values()) - 1) < 1e-4
    assert only["top_class"] == max(only["probabilities"], key=only["probabilities"].get)
    assert payload["model"]["uri"] == uri and payload["model"]["version"] is None  # a run's model: no card


def test_predict_json_answers_every_input_including_unreadable_files(trained_model, tmp_path, capsys):
    uri, _, catalog, store = trained_model
    good = list(catalog.split("test")["path"][:2])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    missing = tmp_path / "missing.png"
    inputs = [good[0], str(broken), good[1], str(missing)]
    code = predict_command.main(inputs + ["--model", uri, "--json", f"paths.mlruns_dir={store}"])
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert [p["path"] for p in payload["predictions"]] == inputs  # main: only the two good files
    assert code == 1 and payload["failed"] == 2  # main: exit status 0
    for entry in payload["predictions"]:
        if entry["path"] in good:
            assert entry["error"] is None and abs(sum(entry["probabilities"].values()) - 1) < 1e-4
        else:
            assert "cannot read as an image" in entry["error"] and entry["probabilities"] is None
    assert "2 of 4 files could not be read" in captured.err
    (tmp_path / "empty").mkdir()
    assert predict_command.main([str(tmp_path / "empty"), "--model", uri, f"paths.mlruns_dir={store}"]) == 2  # a user error
    assert "no image files" in capsys.readouterr().err


def test_grad_cam_is_a_normalised_map_of_the_image_size(trained_model):
    uri, _, catalog, store = trained_model
    loaded = predict.load_model(uri)
    from melanoma_lab.data.pipeline import load_image

    image = load_image(catalog.split("test")["path"][0], loaded.image_size)
    heatmap = grad_cam(loaded.model, image, 3)
    assert heatmap.shape == image.shape[:2] and 0 <= heatmap.min() and heatmap.max() <= 1


def test_unknown_model_is_one_clear_error(tmp_path, capsys):
    assert predict_command.main([str(tmp_path), "--model", "runs:/0123456789abcdef/model",
                         f"paths.root_dir={tmp_path}"]) == 2
    assert "cannot load model" in capsys.readouterr().err


def test_promote_registers_the_champion_with_its_validation_threshold(trained_model, capsys):
    from melanoma_lab.cli import promote as promote_command
    uri, run, catalog, store = trained_model
    assert promote_command.main(["--study", "melanoma-study", f"paths.mlruns_dir={store}"]) == 0
    assert "version 1 (alias @champion)" in capsys.readouterr().out
    client = mlflow.tracking.MlflowClient(tracking_uri(None, store))
    version = client.get_model_version_by_alias("melanoma-classifier", "champion")
    assert version.tags["source_run"] == run.info.run_id and version.tags["threshold_chosen_on"] == "validation"
    assert version.tags["melanoma_class"] == "melanoma"  # the model's own melanoma class, from its metadata
    assert float(version.tags["melanoma_alert_threshold"]) == pytest.approx(
        run.data.metrics["val_melanoma_alert_threshold"])
    card = version.description  # the model card, from the run's logged facts
    assert card.startswith("# melanoma-classifier version 1") and run.info.run_id in card
    assert f"{run.data.metrics['val_melanoma_alert_threshold']:.4f}" in card and "## Intended use" in card
    assert "not a diagnostic device" in card and "`config/config.yaml`" in card and run.data.tags["code_version"] in card
    assert f"| validation balanced accuracy | {run.data.metrics['val_balanced_accuracy']:.3f} |" in card
    assert "fewer than 10 training images" in card  # the tiny set's rare classes, from the run's data audit
    assert "no subgroup metadata" in card  # isic9-style folders carry none
    assert "are flagged and get no alert (input check" in card  # out-of-distribution input: no longer "not detected"
    assert "| clean-Test (no Train twin) balanced accuracy |" in card and "| Test melanoma ROC-AUC |" in card
    logged = client.download_artifacts(run.info.run_id, "model_card.md")
    assert open(logged).read() == card
    image = catalog.split("test")["path"][0]
    assert predict_command.main([image, "--json", f"paths.mlruns_dir={store}"]) == 0  # default: champion
    payload = json.loads(capsys.readouterr().out)
    assert payload["predictions"][0]["path"] == image
    assert payload["model"]["version"] == "1" and payload["model"]["model_card"] is True
    assert payload["model"]["melanoma_alert_threshold"] == pytest.approx(float(version.tags["melanoma_alert_threshold"]))
    assert "not a diagnostic device" in payload["model"]["intended_use"]
    assert promote_command.main(["--study", "nope", f"paths.mlruns_dir={store}"]) == 2  # a user error


def test_predict_and_promote_find_the_store_that_paths_root_dir_names(trained_model, tmp_path, monkeypatch, capsys):
    from melanoma_lab.cli import promote as promote_command
    uri, run, catalog, store = trained_model
    assert store == tmp_path / "mlruns"  # logged with paths.root_dir=<tmp_path>
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the fixture's mlflow.set_tracking_uri set it
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the default store, ./mlruns, does not hold the run here
    image = catalog.split("test")["path"][0]
    assert predict_command.main([image, "--model", uri, "--json"]) == 2
    assert promote_command.main(["--run", run.info.run_id]) == 2  # not in this store: a user error
    capsys.readouterr()
    assert predict_command.main([image, "--model", uri, "--json", f"paths.root_dir={tmp_path}"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"][0]["path"] == image
    assert promote_command.main(["--run", run.info.run_id, f"paths.root_dir={tmp_path}"]) == 0
    capsys.readouterr()
    assert predict_command.main([image, "--json", f"paths.root_dir={tmp_path}"]) == 0  # serving.model_uri: the champion
    assert json.loads(capsys.readouterr().out)["predictions"][0]["path"] == image


def test_the_alert_line_names_the_models_melanoma_class():
    prediction = predict.Prediction("a.jpg", {"mel": 0.7, "nv": 0.3}, "mel", 0.7, True)
    assert "MELANOMA ALERT: p(mel) = 0.700 >= threshold 0.500" in predict.describe(prediction, 0.5, "mel")


# --- the input check (issue 26, point 8; its statistics: tests/test_ood.py) ---

def _issue_pictures(folder):
    """The issue's three: a blank 1-pixel image, a solid green picture and a palette GIF (of printed text)."""
    Image.new("RGB", (1, 1), (255, 255, 255)).save(folder / "blank.png")
    Image.new("RGB", (640, 480), (0, 200, 0)).save(folder / "green.jpg")
    page = Image.new("RGB", (300, 200), (250, 250, 245))
    ImageDraw.Draw(page).text((10, 10), "Invoice 118\ntotal 42.00\nthank you", fill=(20, 20, 20), font_size=28)
    page.quantize(16).save(folder / "page.gif")
    return ["blank.png", "green.jpg", "page.gif"]


def test_predict_flags_out_of_distribution_images_per_image_and_never_alerts_on_them(trained_model, tmp_path, capsys):
    uri, run, catalog, store = trained_model
    folder = tmp_path / "images"
    folder.mkdir()
    odd = _issue_pictures(folder)
    lesions = list(catalog.split("test")["path"][:3])
    args = [str(folder / name) for name in odd] + lesions + ["--model", uri, f"paths.mlruns_dir={store}"]
    assert predict_command.main(args + ["--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["input_check"]["available"] is True and payload["input_check"]["chosen_on"] == "validation"
    threshold = run.data.metrics["val_melanoma_alert_threshold"]
    by_name = {entry["path"].split("/")[-1]: entry for entry in payload["predictions"]}
    for name in odd:
        entry = by_name[name]
        assert entry["out_of_distribution"] is True, name
        assert entry["ood_score"] > payload["input_check"]["threshold"] and entry["alert"] is False
        assert entry["probabilities"] is not None  # still answered, with the flag beside it
    for entry in payload["predictions"]:
        assert isinstance(entry["out_of_distribution"], bool)
        assert entry["alert"] == (entry["melanoma_probability"] >= threshold and not entry["out_of_distribution"])
    assert run.data.metrics["val_ood_flagged_fraction"] <= 0.1  # logged per split by the run
    assert predict_command.main(args) == 0  # the table names the flagged images
    out = capsys.readouterr().out
    assert out.count("OUT OF DISTRIBUTION") == sum(e["out_of_distribution"] for e in payload["predictions"]) >= 3
    assert out.count("MELANOMA ALERT") == sum(bool(e["alert"]) for e in payload["predictions"])


def test_the_served_model_answers_the_flag_and_never_alerts_on_a_flagged_image(trained_model, tmp_path):
    uri, run, catalog, _ = trained_model
    odd = _issue_pictures(tmp_path)
    lesion = catalog.split("test")["path"][0]
    served = mlflow.pyfunc.load_model(uri)  # what `melanoma-lab serve` answers, in process
    rows = served.predict(pd.DataFrame({"image": [encode_image(tmp_path / name) for name in odd]
                                        + [encode_image(lesion), "bm90IGFuIGltYWdl"]}))
    assert list(rows["out_of_distribution"][:3]) == [True, True, True]
    assert (rows["ood_score"][:3] > 0).all() and not rows["melanoma_alert"][:3].any()
    assert rows["out_of_distribution"][3] in (True, False) and rows["ood_note"][3] == ""
    assert rows["out_of_distribution"][4] is None and rows["error"][4]  # unreadable: not checked
    from melanoma_lab.evaluation.ood import logged_input_check

    assert logged_input_check(uri)["input_check"]["threshold"] == pytest.approx(
        served.unwrap_python_model().settings.input_check.threshold)  # what a fold ensemble carries over
