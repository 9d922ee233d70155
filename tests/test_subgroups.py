"""Performance by subgroup where a dataset carries metadata (HAM10000, ISIC 2019, a CSV's named columns)."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from melanoma_lab.evaluation.subgroups import TOO_SMALL, render, subgroup_table
from tests.conftest import compose_config
from tests.manifest_fixtures import write_ham10000, write_isic2019


def test_manifests_keep_their_metadata_columns_for_subgroups(tmp_path):
    from melanoma_lab.data.sources import load_catalog

    ham = load_catalog(compose_config(["dataset=ham10000",
                                       f"dataset.root={write_ham10000(tmp_path / 'ham')}"]).dataset)
    assert {"meta_age", "meta_sex", "meta_localization"} <= set(ham.files.columns)
    assert set(ham.files["meta_sex"]) == {"male", "female"} and "" in set(ham.files["meta_age"])
    isic = load_catalog(compose_config(["dataset=isic2019",
                                        f"dataset.root={write_isic2019(tmp_path / 'isic')}"]).dataset)
    assert {"meta_age_approx", "meta_sex", "meta_anatom_site_general"} <= set(isic.files.columns)
    with pytest.raises(Exception, match="metadata_columns .*skin_type"):
        load_catalog(compose_config(["dataset=ham10000", f"dataset.root={tmp_path / 'ham'}",
                                     "dataset.source.metadata_columns=[skin_type]"]).dataset)


def test_the_table_scores_each_subgroup_with_intervals_and_lists_small_ones():
    rng = np.random.default_rng(0)
    n = 200
    files = pd.DataFrame({"path": [f"{i}.jpg" for i in range(n)],
                          "meta_age": rng.choice(["25.0", "50.0", "80.0", ""], n, p=[0.45, 0.45, 0.05, 0.05]),
                          "meta_sex": rng.choice(["male", "female"], n)})
    labels = rng.integers(0, 3, n)
    probabilities = np.eye(3)[labels] * 0.7 + 0.1  # always right: melanoma (class 0) p = 0.8
    table = subgroup_table(files, labels, probabilities, ["melanoma", "nevus", "bkl"], "melanoma", 0.5, 30,
                           [0, 30, 45, 60, 75, 120], samples=100)
    ages = table[table["column"] == "age"].set_index("subgroup")
    assert set(ages.index) == {"0-29", "45-59", "75-119", "unknown"}
    assert ages.loc["75-119", "status"] == TOO_SMALL and np.isnan(ages.loc["75-119"].get("balanced_accuracy"))
    scored = ages.loc["0-29"]
    assert scored["balanced_accuracy"] == 1.0 and scored["melanoma_alert_sensitivity"] == 1.0
    assert scored["melanoma_alert_specificity_low"] < 1.0 == scored["melanoma_alert_specificity_high"]  # Wilson
    assert table["images"].groupby(table["column"]).sum().tolist() == [n, n]
    assert "| age | 75-119 |" in render(table) and TOO_SMALL in render(table)
    assert subgroup_table(files[["path"]], labels, probabilities, ["melanoma", "nevus", "bkl"], "melanoma", 0.5,
                          30, [0, 120]) is None  # no metadata, no table


def test_an_evaluation_on_ham10000_logs_its_subgroups(trained_model, tmp_path):
    from melanoma_lab.study.external import run_evaluation
    from melanoma_lab.tracking.store import tracking_uri

    uri, _, _, store = trained_model
    root = write_ham10000(tmp_path / "ham", lesions_per_class=6)
    cfg = compose_config([f"model_uri={uri}", "dataset=ham10000", f"dataset.root={root}",
                          "class_map=ham10000_to_isic9", f"paths.mlruns_dir={store}", "evaluation.subgroup_min_images=5"],
                         root=tmp_path, config_name="evaluate")
    run_evaluation(cfg, tmp_path / "eval")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, store))
    (run,) = [r for r in client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
              if r.info.run_name == "evaluate-ham10000"]
    table = pd.read_csv(client.download_artifacts(run.info.run_id, "evaluation/eval_subgroups.csv", str(tmp_path)))
    assert set(table["column"]) == {"age", "sex", "localization"}
    assert set(table.loc[table["column"] == "sex", "subgroup"]) == {"male", "female"}
    assert (table["status"] == "scored").any()


@pytest.mark.slow
def test_a_training_run_on_a_ham10000_format_fixture_logs_its_subgroup_tables(tmp_path, shared_cache):
    from melanoma_lab.study.experiment import run_experiment
    from melanoma_lab.tracking.store import tracking_uri
    from tests.conftest import TINY_RUN

    root = write_ham10000(tmp_path / "ham", lesions_per_class=8)
    cfg = compose_config(["experiment=m2", "dataset=ham10000", f"dataset.root={root}", "dataset.image_size=32",
                          *TINY_RUN, "tracking.log_model=false", "evaluation.subgroup_min_images=5",
                          f"paths.cache_dir={shared_cache}"], root=tmp_path)
    run_experiment(cfg, tmp_path / "run")
    client = mlflow.tracking.MlflowClient(tracking_uri(None, tmp_path / "mlruns"))
    (run,) = client.search_runs([client.get_experiment_by_name("melanoma-study").experiment_id])
    table = pd.read_csv(client.download_artifacts(run.info.run_id, "evaluation/val_subgroups.csv", str(tmp_path)))
    assert set(table["column"]) == {"age", "sex", "localization"} and table["images"].sum() == 3 * int(
        run.data.metrics["val_images"])
