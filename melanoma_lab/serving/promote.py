"""Register a trained model as the champion melanoma classifier in the MLflow Model Registry.

    melanoma-lab promote --run RUN_ID [key=value ...]
    melanoma-lab promote --study NAME [--metric val_balanced_accuracy] [key=value ...]

With ``--study`` the run with the highest ``--metric`` is picked among the study's runs with a model: that value is
optimistic (the winner's curse), and the version is tagged and carded with how it was picked and its numbers on
data that did not pick it, or with a plain statement that there are none (:mod:`melanoma_lab.serving.selection`).
The model version gets the alias ``champion``, tags with its class names, input size and the melanoma alert
threshold that was chosen on VALIDATION data (with the validation sensitivity and specificity at it; a fold
ensemble's threshold was chosen on its calibration slice, and it is tagged with its operating point there and its
Test numbers, ``ensemble_calibration_*`` / ``ensemble_test_*`` with ``_ci_low`` / ``_ci_high``), and a model
card (:mod:`melanoma_lab.serving.model_card`) as its description and as the run's ``model_card.md``.
Nothing is retrained; ``melanoma-lab predict IMAGES`` then uses the champion by default. The
store is the one ``key=value`` overrides of ``conf/`` name (``paths.root_dir=DIR``, ``tracking.tracking_uri=URI``:
:mod:`melanoma_lab.config.arguments`), as for training.
"""

from __future__ import annotations


import mlflow
from mlflow.tracking import MlflowClient

from melanoma_lab.evaluation import registry
from melanoma_lab.serving.model_card import ENSEMBLE_KEYS, model_card
from melanoma_lab.serving.selection import Selection, selection_lines, selection_tags

REGISTERED_NAME = "melanoma-classifier"
ALIAS = "champion"


def best_run(client: MlflowClient, study: str, metric: str) -> Selection:
    """The FINISHED run of ``study`` with the highest ``metric`` that has a logged model, with how many such runs
    it was picked among (its ``metric`` is then optimistic: :mod:`melanoma_lab.serving.selection`)."""
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        raise LookupError(f"no MLflow experiment named {study!r}")
    runs = client.search_runs([experiment.experiment_id], f"attributes.status = 'FINISHED' and metrics.{metric} > -1",
                              order_by=[f"metrics.{metric} DESC"])
    candidates = [run for run in runs if mlflow.search_logged_models(
        experiment_ids=[experiment.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'",
        output_format="list")]
    if candidates:
        return Selection(candidates[0].info.run_id, study, metric, candidates[0].data.metrics[metric], len(candidates))
    raise LookupError(f"no FINISHED run of {study!r} has both {metric} and a logged model")


def promote(client: MlflowClient, run_id: str, selection: Selection | None = None) -> str:
    """Register the run's model, point the champion alias at it, tag it; returns the version. ``selection``: how
    ``--study`` picked it (tagged and carded: the value it was picked by is optimistic, and its numbers on data
    that did not pick it)."""
    run = client.get_run(run_id)
    info = mlflow.models.get_model_info(f"runs:/{run_id}/model")
    version = mlflow.register_model(f"runs:/{run_id}/model", REGISTERED_NAME).version
    metrics, metadata = run.data.metrics, info.metadata or {}
    tags = {"classes": ",".join(metadata.get("classes", [])), "image_size": metadata.get("image_size"),
            "melanoma_class": metadata.get("melanoma_class"),
            "melanoma_alert_threshold": metadata.get("melanoma_alert_threshold"),
            "threshold_chosen_on": metadata.get("alert_threshold_chosen_on", "validation")
            if metadata.get("melanoma_alert_threshold") is not None else (
                "none: " + metadata.get("melanoma_alert_note", "no threshold in the model's metadata")),
            "val_melanoma_alert_sensitivity": metrics.get("val_melanoma_alert_sensitivity"),
            "val_melanoma_alert_specificity": metrics.get("val_melanoma_alert_specificity"),
            "val_balanced_accuracy": metrics.get("val_balanced_accuracy"), "source_run": run_id}
    shown = registry.keys_with_intervals(registry.TAGS)  # a fold ensemble: its members' OOF estimate, and its own
    tags |= {k: v for k, v in metrics.items() if k in shown}  # operating point on the calibration slice and Test
    tags |= {k: metadata[k] for k in ENSEMBLE_KEYS if metadata.get(k) is not None}
    if selection is not None:
        tags |= selection_tags(selection, metrics)
    for key, value in tags.items():
        client.set_model_version_tag(REGISTERED_NAME, version, key, str(value))
    card = model_card(client, run, metadata, REGISTERED_NAME, version,
                      selection_lines(selection, metrics) if selection is not None else ())
    client.update_model_version(REGISTERED_NAME, version, description=card)  # shown in the MLflow UI
    client.log_text(run_id, card, "model_card.md")
    client.set_registered_model_alias(REGISTERED_NAME, ALIAS, version)
    return version
