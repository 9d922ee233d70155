"""`melanoma-lab predict IMAGE|FOLDER ...`: lesion classes, the melanoma alert and optional Grad-CAM overlays."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from melanoma_lab.config.arguments import parse_with_config
from melanoma_lab.evaluation.gradcam import grad_cam
from melanoma_lab.serving import predict as room
from melanoma_lab.serving.model_card import card_summary
from melanoma_lab.serving.predict import (IMAGE_SUFFIXES, describe, expand, input_check_summary, load_model,
                                            predict, read_images, save_overlay, write_csv)
from melanoma_lab.tracking.store import configured_tracking_uri, fluent_tracking_uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=room.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="image files or folders")
    parser.add_argument("--model", default=None,
                        help="MLflow model URI (default: serving.model_uri, the champion; or runs:/<run_id>/model)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--out", type=Path, help="folder for predictions.csv and Grad-CAM overlays")
    args, cfg = parse_with_config(parser, argv)
    model_uri = args.model or cfg.serving.model_uri
    try:
        with fluent_tracking_uri(configured_tracking_uri(cfg.tracking, cfg.paths.mlruns_dir)):
            loaded = load_model(model_uri)
    except Exception as error:  # noqa: BLE001 - any load failure is one clear message
        print(f"error: cannot load model {model_uri}: {error}", file=sys.stderr)
        return 2
    settings = loaded.settings
    paths = expand(args.inputs)
    if not paths:
        print(f"error: no image files in {' '.join(args.inputs)} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})",
              file=sys.stderr)
        return 2  # a user error (exit status 2, like every command)
    images, errors = read_images(paths, settings.image_size)
    for path, error in zip(paths, errors):
        if error is not None:
            print(f"error: {path}: {error}", file=sys.stderr)
    predictions = predict(loaded, images, [str(p) for p in paths], errors)
    failures = sum(error is not None for error in errors)
    if args.json:
        with fluent_tracking_uri(configured_tracking_uri(cfg.tracking, cfg.paths.mlruns_dir)):
            model = card_summary(model_uri)
        print(json.dumps({"model": model, "threshold": settings.threshold, "alert_note": settings.alert_note or None,
                          "input_check": input_check_summary(settings), "tta": settings.tta, "failed": failures,
                          "predictions": [vars(p) for p in predictions]}, indent=2))
    else:
        if settings.threshold is None:
            print(f"note: {settings.alert_note}: no melanoma alerts are given")
        if settings.input_check is None:
            print(f"note: {settings.ood_note}")
        ood_threshold = settings.input_check and settings.input_check.threshold
        for prediction in predictions:
            print(describe(prediction, settings.threshold, settings.melanoma_class, ood_threshold))
    if failures:
        print(f"{failures} of {len(paths)} files could not be read (listed above); the others were predicted",
              file=sys.stderr)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write_csv(predictions, settings.classes, args.out / "predictions.csv")
        for index, (prediction, image) in enumerate(zip(predictions, images)):
            if image is None:
                continue
            heatmap = grad_cam(loaded.model, settings.preprocess(image),  # as it was predicted
                               settings.classes.index(prediction.top_class))
            title = f"{prediction.top_class} {prediction.probabilities[prediction.top_class]:.2f}" + (
                "  MELANOMA ALERT" if prediction.alert else "") + (
                "  OUT OF DISTRIBUTION" if prediction.out_of_distribution else "")
            save_overlay(image, heatmap, title, args.out / f"{index:04d}_{Path(prediction.path).stem}_gradcam.png")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
