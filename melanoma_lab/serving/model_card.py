"""The model card of a registered model version, written by ``promote`` from what its run logged (nothing is
recomputed): what it was trained on, its numbers on data it did not train on, the alert's operating point, what
it is for and where it is known to fail, and the command that reproduces it. It becomes the model version's
description (Markdown, shown in the MLflow UI) and the run's ``model_card.md``; ``predict --json`` carries its
summary (:func:`card_summary`; for a fold ensemble also its operating point on the calibration slice and its Test
numbers, with intervals)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from melanoma_lab.data.calibration_slice import SLICE
from melanoma_lab.evaluation import registry
from melanoma_lab.evaluation.ood import card_limit

INTENDED_USE = ("Research and decision support on dermoscopic images of skin lesions: it ranks lesions by their "
                "probability of melanoma and flags those at or above the alert threshold for a dermatologist's "
                "review. It is not a diagnostic device and was not validated prospectively or clinically.")
RARE_IMAGES = 10  # a class with fewer training images than this cannot be trusted (nor measured)
SHIFTS = "oof_shift_worst_drop_"
# what a fold ensemble's metadata says of its threshold and its own numbers (melanoma_lab.study.ensemble)
ENSEMBLE_KEYS = ("alert_threshold_source", "calibration_fraction", "calibration_images", "calibration_melanomas")


def _artifact(client: MlflowClient, run_id: str, path: str) -> str | None:
    if path not in {a.path for a in client.list_artifacts(run_id, str(Path(path).parent) if "/" in path else None)}:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        return Path(client.download_artifacts(run_id, path, scratch)).read_text()


def rare_classes(client: MlflowClient, run: Run) -> dict[str, int]:
    """Classes with fewer than :data:`RARE_IMAGES` Train images in the run's data audit."""
    audit = _artifact(client, run.info.run_id, "data_audit.json")
    counts = (json.loads(audit).get("class_counts", {}).get("train", {}) if audit else {})
    return {name: int(count) for name, count in counts.items() if int(count) < RARE_IMAGES}


def model_card(client: MlflowClient, run: Run, metadata: dict, name: str, version: str,
               chosen: Sequence[str] = ()) -> str:
    """The Markdown card of model ``name`` version ``version``, logged by ``run`` with ``metadata``; ``chosen``: the
    lines on how it was picked among runs, after its numbers (:func:`melanoma_lab.serving.selection.selection_lines`)."""
    tags, metrics = run.data.tags, run.data.metrics
    overrides = (_artifact(client, run.info.run_id, "config/overrides.txt") or "").split()
    threshold = metadata.get("melanoma_alert_threshold")
    lines = [f"# {name} version {version}", "", "## Intended use", "", INTENDED_USE, "",
             "## What it is", "",
             f"- experiment `{tags.get('experiment', '?')}`, run `{run.info.run_id}`"
             + (f" (cross-validation parent, {tags['cv_folds']} folds: the fold ensemble)" if tags.get("cv_folds")
                and "fold" not in tags else ""),
             f"- classes: {', '.join(metadata.get('classes', []))}; input {metadata.get('image_size')} px, "
             f"test-time views: {metadata.get('tta', 'none')}",
             f"- trained on dataset `{tags.get('dataset', '?')}` (data fingerprint `{tags.get('data_fingerprint', '?')}`"
             f"), seed {tags.get('seed', '?')}, code `{tags.get('code_version', '?')}`",
             f"- backend {tags.get('runtime.keras_backend', '?')} on {tags.get('runtime.device', '?')}, precision "
             f"{tags.get('runtime.precision', '?')}"]
    if tags.get("model_weights_sha256"):
        lines.append(f"- pretrained weights sha256 `{tags['model_weights_sha256']}` (source "
                     f"`{tags.get('model_weights_source_sha256', '?')}`)")
    lines += ["", "## Melanoma alert (operating point)", ""]
    if threshold is None:
        lines.append(f"No alert: {metadata.get('melanoma_alert_note', 'no threshold in the metadata')}.")
    else:
        lines.append(f"Alert when p({metadata.get('melanoma_class', 'melanoma')}) >= {float(threshold):.4f}, chosen on "
                     f"{metadata.get('alert_threshold_chosen_on', 'validation data')} for sensitivity "
                     f">= {metadata.get('alert_target_sensitivity', '?')}; never tuned on Test.")
    if metadata.get("alert_threshold_source") == SLICE:
        lines.append("On that slice its sensitivity meets the target by construction (the threshold was chosen "
                     "there); its Test numbers, where there is a Test split, are the independent check.")
    quoted = [(label, metrics[key], registry.interval_text(metrics, key))
              for key, label in registry.labelled(registry.CARD) if key in metrics]
    lines += ["", "## Numbers (on images it did not train on)", "", "| metric | value |", "|---|---|"]
    lines += [f"| {label} | {value:.3f}{interval} |" for label, value, interval in quoted] or ["| (none logged) | |"]
    lines += ["", "Point estimates as logged, with a percentile bootstrap interval over the split's groups (copies "
              "and one lesion's images drawn together, `study.confidence`) where one was logged; the study report "
              "(`melanoma-lab report`) gives the others.", *chosen, "", "## Known limits", ""]
    rare = rare_classes(client, run)
    if rare:
        lines.append("- classes with fewer than 10 training images are not reliable and their recall is not "
                     "measurable: " + ", ".join(f"{k} ({v})" for k, v in sorted(rare.items())))
    drops = {key.removeprefix(SHIFTS): value for key, value in metrics.items() if key.startswith(SHIFTS)}
    if drops:
        lines.append("- acquisition shifts (shift check, worst drop per family): " + ", ".join(
            f"{key.replace('_', ' ')} {value:+.3f}" for key, value in sorted(drops.items())))
    lines.append(card_limit(metadata))
    subgroups = next((text for text in (_artifact(client, run.info.run_id, f"evaluation/{split}_subgroups.md")
                                        for split in ("test", "fold", "val")) if text), None)
    if subgroups is None:
        lines.append("- its dataset carries no subgroup metadata (age, sex, site, skin type): performance by "
                     "subgroup is unknown")
    else:
        lines += ["", "## Performance by subgroup (its held-out images; 95% intervals)", "", subgroups.rstrip()]
    lines += ["", "## Reproduce", ""]
    if overrides:
        lines += ["```bash", "python -m melanoma_lab " + " ".join(overrides), "```", ""]
    lines += [f"The complete config is the run's `config/config.yaml` (code `{tags.get('code_version', '?')}`, data "
              f"fingerprint `{tags.get('data_fingerprint', '?')}`)" + ("." if overrides else
                                                                      "; the run was started without command-line "
                                                                      "overrides (from Python)."), ""]
    return "\n".join(lines)


def card_summary(uri: str) -> dict:
    """What ``predict --json`` says of the model at ``uri`` (fluent store): its registered version (for a
    ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` URI), operating point and intended use, and whether the
    version has a card."""
    import mlflow

    metadata = mlflow.models.get_model_info(uri).metadata or {}
    version, description = None, None
    if uri.startswith("models:/"):
        name, _, rest = uri.removeprefix("models:/").partition("@")
        client = MlflowClient()
        found = (client.get_model_version_by_alias(name, rest) if rest else
                 client.get_model_version(*name.rsplit("/", 1)))
        version, description = str(found.version), found.description
    ensemble = {key: metadata[key] for key in (*ENSEMBLE_KEYS, "ensemble_scores") if key in metadata}
    return {"uri": uri, "version": version, "melanoma_alert_threshold": metadata.get("melanoma_alert_threshold"),
            "threshold_chosen_on": metadata.get("alert_threshold_chosen_on", "validation"), **ensemble,
            "intended_use": INTENDED_USE, "model_card": bool(description)}
