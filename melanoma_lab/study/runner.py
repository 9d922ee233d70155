"""Run a whole study — every experiment for every seed — then write its report.

    melanoma-lab study [dataset.root=PATH | dataset=synthetic] [trainer=smoke] [study.seeds=[1,2,3]]
    melanoma-lab study study.cv_folds=5 ...   # every experiment and seed cross-validated: the report
                                                        # compares out-of-fold predictions of every Train image

Runs already FINISHED with the same config and data are skipped (``tracking.skip_finished``), so an
interrupted study resumes where it stopped. A run made by hand (``python -m melanoma_lab experiment=... trainer.seed=...``,
with ``study.cv_folds=K`` for a cross-validated study) with exactly the study's config, data and code is adopted into
the study (tag ``adopted_by_study``) instead of trained again. The report is built from MLflow alone
(``melanoma-lab report --study NAME`` rebuilds it without retraining).
"""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path

from melanoma_lab.config.compose import compose
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from melanoma_lab.config.schema import validate
from melanoma_lab.reporting.selection import Study

log = logging.getLogger(__name__)
PER_RUN_KEYS = re.compile(r"^[+~]*(experiment|trainer\.seed|study\.launch)=")


def missing_runs(experiments: list[str], seeds: list[int], study: Study) -> list[tuple[str, int]]:
    """The (experiment, seed) pairs the study asked for that the report has no study-launched run of."""
    return sorted({(e, s) for e in experiments for s in seeds} - {(r.experiment, r.seed) for r in study.runs})


def run_study(cfg: DictConfig, output_dir: Path, base_overrides: list[str]) -> Path:
    """Train every (experiment, seed) of ``cfg.study`` in this process (with ``base_overrides``), then write the
    report (its path is printed and returned). Every run this invocation launches is tagged ``launched_by=study`` and ``study_launch=<uuid of this invocation>`` (via ``study.launch``)."""
    from melanoma_lab.study.crossval import run_cross_validation
    from melanoma_lab.study.experiment import run_experiment
    from melanoma_lab.reporting.render import write_report
    from melanoma_lab.reporting.selection import load_study
    from melanoma_lab.tracking.store import configured_tracking_uri

    from melanoma_lab.data.audit import audit_catalog, summary
    from melanoma_lab.data.audit import write_report as write_audit
    from melanoma_lab.data.sources import load_catalog

    validate(cfg)
    reports = Path(cfg.study.reports_dir) / cfg.study.name
    audit = audit_catalog(load_catalog(cfg.dataset), cfg.audit.near_duplicate_distance)
    log.info("audit written to %s\n%s", write_audit(audit, reports), summary(audit))
    shared = [o for o in base_overrides if not PER_RUN_KEYS.match(o)]
    launch = uuid.uuid4().hex
    for experiment in cfg.study.experiments:
        for seed in cfg.study.seeds:
            overrides = [*shared, f"experiment={experiment}", f"trainer.seed={seed}"]
            log.info("study %s: %s seed %s", cfg.study.name, experiment, seed)
            run_cfg = compose(overrides)
            run_cfg.study.launch = launch  # not an override: it tags the run, it is not part of its identity
            run = run_cross_validation if run_cfg.study.cv_folds > 1 else run_experiment
            run(run_cfg, output_dir / experiment / f"seed_{seed}", overrides)
    client = MlflowClient(configured_tracking_uri(cfg.tracking, cfg.paths.mlruns_dir))
    study = load_study(client, cfg.study.name)
    study.frequent_class_images = cfg.evaluation.frequent_class_images
    missing = missing_runs(cfg.study.experiments, cfg.study.seeds, study)
    if missing:  # e.g. a run of this invocation failed, or the store holds no MLflow tracking (tracking.enabled)
        log.warning("the report has no study-launched run for %s: see the log above, or rerun them",
                    ", ".join(f"{e} seed {s}" for e, s in missing))
    report = write_report(study, reports, cfg.study.bootstrap_samples, cfg.study.confidence)
    print(f"study report: {report} and {report.with_suffix('.html')}")
    return report
