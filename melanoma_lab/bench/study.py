"""Whole-study benchmark: the seeds' notebook procedure vs ``melanoma-lab study`` (M1 + M2 + M3, one seed).

    melanoma-lab bench-study [--data PATH] [--out bench/study.json]      (make bench-study)

Each procedure runs in its own process on the same data (default: the real training copy when present, else
synthetic 180 px images with ISIC-like counts), one after the other, never at the same time:
  seed          the notebook: image_dataset_from_directory + cache + prefetch; M1 20 epochs, M2 (augmentation
                layers + dropout) 20 epochs, Augmentor 500 images per class written to disk, M3 30 epochs;
                no early stopping
  melanoma_lab  the study command with ``study.experiments=[m1,m2,m3] study.seeds=[1]``: audit, decoded once,
                bfloat16 where the CPU has it, early stopping restoring the best weights, cached Augmentor
                images (cold here), evaluation, MLflow tracking and the study report
Reports wall time and peak RSS of each process and, per stage, seconds, epochs and the process's peak RSS at the
end of the stage (M3 is the last and largest stage of both). Writes JSON; the last line is
``study_wall_ratio=<melanoma_lab/seed> peak_rss_ratio=<melanoma_lab/seed>``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from melanoma_lab.config.compose import compose
from melanoma_lab.bench.measure import REAL_DATA, data_overrides, peak_rss_mb
from melanoma_lab.bench.throughput import train_seed_pipeline

SEED_EPOCHS = {"m1": 20, "m2": 20, "m3": 30}
SEED_AUGMENTOR_PER_CLASS = 500
STUDY = "bench-study"


def seed_procedure(data: str | None, workdir: Path) -> list[dict[str, Any]]:
    """The seeds' notebook in this process, stage by stage (seconds, epochs, final val accuracy, peak RSS)."""
    import Augmentor

    from melanoma_lab.data.sources import load_catalog

    stages: list[dict[str, Any]] = []

    def stage(name: str, action: Callable[[], dict[str, Any]]) -> None:
        begin = time.perf_counter()
        result = action()
        stages.append({"stage": name, "seconds": time.perf_counter() - begin, **result,
                       "peak_rss_mb": peak_rss_mb()})
        print(f"  seed {name}: {stages[-1]['seconds']:.0f} s", flush=True)

    def train(experiment: str, folder: Path) -> dict[str, Any]:
        from melanoma_lab.training.fit import TrainingRecipe

        cfg = compose([f"experiment={experiment}"] + data_overrides(data, workdir))
        recipe = TrainingRecipe(*map(cfg.get, TrainingRecipe._fields))
        history = train_seed_pipeline(recipe, folder, SEED_EPOCHS[experiment])
        return {"epochs": len(history["loss"]), "final_val_accuracy": history["val_accuracy"][-1]}

    cfg = compose(data_overrides(data, workdir))
    catalog = load_catalog(cfg.dataset)
    train_dir = workdir / "seed-notebook" / "Train"  # Augmentor writes next to its inputs: work on a copy
    shutil.copytree(Path(catalog.root) / "Train", train_dir)

    def augmentor() -> dict[str, Any]:
        for class_dir in sorted(p for p in train_dir.iterdir() if p.is_dir()):
            pipeline = Augmentor.Pipeline(str(class_dir))
            pipeline.rotate(probability=0.7, max_left_rotation=10, max_right_rotation=10)
            pipeline.sample(SEED_AUGMENTOR_PER_CLASS)
        return {"images": sum(1 for _ in train_dir.glob("*/output/*"))}

    stage("m1", lambda: train("m1", Path(catalog.root) / "Train"))
    stage("m2", lambda: train("m2", Path(catalog.root) / "Train"))
    stage("augmentor", augmentor)
    stage("m3", lambda: train("m3", train_dir))
    return stages


def _timed_process(command: list[str]) -> tuple[float, float]:
    """Run ``command``; its wall seconds and peak RSS (MB). Raises if it fails."""
    begin = time.perf_counter()
    process = subprocess.Popen(command, env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"})
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - begin
    if os.waitstatus_to_exitcode(status) != 0:
        raise subprocess.CalledProcessError(os.waitstatus_to_exitcode(status), command)
    return wall, usage.ru_maxrss / 1024


def study_stages(workdir: Path) -> list[dict[str, Any]]:
    """Per run of the melanoma_lab study, from its MLflow store: seconds, epochs, accuracy, peak RSS, tracking."""
    from mlflow.tracking import MlflowClient

    from melanoma_lab.tracking.store import tracking_uri

    client = MlflowClient(tracking_uri(None, workdir / "mlruns"))
    experiment = client.get_experiment_by_name(STUDY)
    stages = []
    for run in sorted(client.search_runs([experiment.experiment_id]), key=lambda r: r.info.start_time):
        metrics = run.data.metrics
        stages.append({"stage": run.data.tags.get("experiment"), "seconds": metrics["run_seconds"],
                       "epochs": len(client.get_metric_history(run.info.run_id, "loss")),
                       "final_val_accuracy": metrics["final_val_accuracy"],
                       "val_balanced_accuracy": metrics["val_balanced_accuracy"],
                       "tracking_seconds": metrics["tracking_seconds"],
                       "peak_rss_mb": metrics["process_peak_rss_mb"]})
    return stages


def run_study_benchmark(data: str | None, out: Path) -> dict[str, Any]:
    """melanoma_lab's study, then the seeds' procedure, each in its own process; writes ``out`` atomically."""
    workdir = Path(tempfile.mkdtemp(prefix="melanoma-bench-study-"))
    data_args = [a for a in data_overrides(data, workdir) if not a.startswith("paths.")]
    lab_command = [sys.executable, "-m", "melanoma_lab.study.runner", "study.experiments=[m1,m2,m3]", "study.seeds=[1]",
                   f"study.name={STUDY}", f"paths.root_dir={workdir}", "tracking.skip_finished=false",
                   f"hydra.run.dir={workdir}/hydra", *data_args]
    print("melanoma_lab study:", " ".join(lab_command[1:]), flush=True)
    lab_wall, lab_rss = _timed_process(lab_command)
    seed_result = workdir / "seed.json"
    seed_command = [sys.executable, "-m", "melanoma_lab.bench.study", "--seed-procedure", str(seed_result),
                    "--workdir", str(workdir)] + (["--data", data] if data else [])
    print("seed notebook procedure", flush=True)
    seed_wall, seed_rss = _timed_process(seed_command)
    results = {"data": data or "synthetic",
               "seed": {"wall_s": seed_wall, "peak_rss_mb": seed_rss, "stages": json.loads(seed_result.read_text())},
               "melanoma_lab": {"wall_s": lab_wall, "peak_rss_mb": lab_rss, "stages": study_stages(workdir)}}
    results["study_wall_ratio"] = lab_wall / seed_wall
    results["peak_rss_ratio"] = lab_rss / seed_rss
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.tmp")
    staging.write_text(json.dumps(results, indent=2))
    os.replace(staging, out)
    shutil.rmtree(workdir, ignore_errors=True)
    return results


def _fixed(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def format_table(results: dict[str, Any]) -> str:
    rows = [f"{'procedure':<13} {'stage':<10} {'seconds':>8} {'epochs':>7} {'val acc':>8} {'val bacc':>9} "
            f"{'peak RSS MB':>12}"]
    for procedure in ("seed", "melanoma_lab"):
        entry = results[procedure]
        for stage in entry["stages"]:
            accuracy, bacc = (_fixed(stage.get(k)) for k in ("final_val_accuracy", "val_balanced_accuracy"))
            rows.append(f"{procedure:<13} {stage['stage']:<10} {stage['seconds']:>8.0f} {stage.get('epochs', ''):>7} "
                        f"{accuracy:>8} {bacc:>9} {stage['peak_rss_mb']:>12.0f}")
        rows.append(f"{procedure:<13} {'whole':<10} {entry['wall_s']:>8.0f} {'':>7} {'':>8} {'':>9} "
                    f"{entry['peak_rss_mb']:>12.0f}")
    rows.append(f"study_wall_ratio={results['study_wall_ratio']:.2f} peak_rss_ratio={results['peak_rss_ratio']:.2f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REAL_DATA) if REAL_DATA.is_dir() else None,
                        help="a folder with Train/<class>/ (default: the real copy if present, else synthetic)")
    parser.add_argument("--out", type=Path, default=Path("bench/study.json"))
    parser.add_argument("--seed-procedure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seed_procedure:
        args.seed_procedure.write_text(json.dumps(seed_procedure(args.data, args.workdir)))
        return 0
    print(format_table(run_study_benchmark(args.data, args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
