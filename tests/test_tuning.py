"""KerasTuner search: trials as nested MLflow runs, the best values retrained and exported as an experiment."""

import subprocess
import sys

import mlflow
import pytest
from omegaconf import OmegaConf

from melanoma_lab.config.schema import ConfigError
from melanoma_lab.tracking.identity import config_hash
from melanoma_lab.tracking.store import tracking_uri
from melanoma_lab.config.schema import validate
from melanoma_lab.study.search_space import check_search_space
from melanoma_lab.study.tuning import tuned_experiment
from tests.conftest import CONF_DIR, TINY, compose_config

def space_of(cfg):
    """check_search_space's tuner node and key test for a composed config."""
    return cfg.tuner, lambda key: OmegaConf.select(cfg, key, default="absent") != "absent"


SPACE = ("tuner.search_space=[{key: model.dropout, type: float, min: 0.0, max: 0.5, step: 0.1},"
         "{key: optimizer, type: choice, values: [adam, sgd]},"
         "{key: optimizer.learning_rate, type: float, min: 0.0001, max: 0.01, sampling: log}]")


def test_search_space_errors_name_the_entry_and_the_way_out(tiny_cfg):
    cfg = tiny_cfg("tuner=random", "tuner.search_space=[{key: model.dropoutt, type: float, min: 0, max: 1},"
                   "{key: dataset.batch_size, type: int, min: 8, max: 4}, {key: model.filters, values: []}]")
    with pytest.raises(ConfigError) as error:
        check_search_space(*space_of(cfg), ["model.filters=[8,16]"])
    message = str(error.value)
    assert "tuner.search_space[0] (key model.dropoutt): model.dropoutt is not a config key" in message
    assert "[1] (key dataset.batch_size): data and training budget are fixed" in message and "min < max" in message
    assert "[2] (key model.filters): also set on the command line" in message and "needs values" in message
    check_search_space(*space_of(tiny_cfg("tuner=random", SPACE)), TINY)  # the test space is valid


def test_plugin_group_values_can_be_searched(tiny_cfg):
    space = ("tuner.search_space=[{key: augmentation.rotation.factor, type: float, min: 0.0, max: 0.5},"
             "{key: loss.label_smoothing, type: float, min: 0.0, max: 0.2}, {key: lr_schedule, values: [constant, cosine]}]")
    cfg = tiny_cfg("experiment=m2", "tuner=random", space)
    check_search_space(*space_of(cfg), TINY)
    trial = tiny_cfg("experiment=m2", "augmentation.rotation.factor=0.3", "loss.label_smoothing=0.1", "lr_schedule=cosine")
    validate(trial)
    assert (trial.augmentation.rotation.factor, trial.loss.label_smoothing) == (0.3, 0.1)
    assert trial.lr_schedule._target_ == "melanoma_lab.components.schedules.cosine"


def test_tuned_experiment_keeps_the_base_defaults_and_applies_the_best_values():
    base = OmegaConf.create({"defaults": [{"override /augmentation": "flip_rotate_zoom"},
                                          {"override /optimizer": "adam"}], "name": "m2", "model": {"dropout": 0.2}})
    text = tuned_experiment(base, ["model.dropout=0.4", "optimizer=sgd", "model.dense_units=[8,16]"], "m2_x", "# hi")
    assert text.startswith("# @package _global_\n# hi\n")
    tuned = OmegaConf.create(text)
    assert OmegaConf.to_container(tuned.defaults) == [{"override /augmentation": "flip_rotate_zoom"},
                                                      {"override /optimizer": "sgd"}, "_self_"]
    assert tuned.name == "m2_x" and tuned.model.dropout == 0.4 and list(tuned.model.dense_units) == [8, 16]


def _search(root, *extra):
    return subprocess.run([sys.executable, "-m", "melanoma_lab", "experiment=m2", *TINY, "tracking.log_model=false",
                           SPACE, f"paths.root_dir={root}", *extra],
                          capture_output=True, text=True, timeout=600)


def _store(root):
    client = mlflow.tracking.MlflowClient(tracking_uri(None, root / "mlruns"))
    return client, client.get_experiment_by_name("melanoma-study").experiment_id


@pytest.mark.slow
def test_random_search_logs_trials_retrains_the_best_and_exports_it(tmp_path):
    result = _search(tmp_path, "tuner=random", "tuner.max_trials=2")
    assert result.returncode == 0, result.stderr[-3000:]
    client, experiment_id = _store(tmp_path)
    [search] = client.search_runs([experiment_id], "tags.kind = 'tuner_search'")
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{search.info.run_id}'")
    trials = [r for r in children if r.data.tags.get("kind") == "tuner_trial"]
    [best] = [r for r in children if r.data.tags.get("kind") != "tuner_trial"]
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in children)
    for trial in trials:
        assert {"model.dropout", "optimizer", "optimizer.learning_rate"} <= set(trial.data.params)
        assert [m.step for m in client.get_metric_history(trial.info.run_id, "val_balanced_accuracy")] == [0]
    assert best.info.run_name == "m2_random" and "val_balanced_accuracy" in best.data.metrics
    assert search.data.tags["best_overrides"].startswith("model.dropout=")

    # exported into paths.conf_dir (on the search path), it composes to the retrained best run's config
    tuned = tmp_path / "conf" / "experiment" / "tuned" / "m2_random.yaml"
    assert tuned.read_text().startswith("# @package _global_")
    cfg = compose_config(["experiment=tuned/m2_random", *TINY], root=tmp_path)
    assert config_hash(OmegaConf.to_container(cfg, resolve=True)) == best.data.tags["config_hash"]

    resumed = _search(tmp_path, "tuner=random", "tuner.max_trials=3", "tuner.resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    [again] = client.search_runs([experiment_id], "tags.kind = 'tuner_search'")
    trials = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{search.info.run_id}' "
                                                 "and tags.kind = 'tuner_trial'")
    assert again.info.run_id == search.info.run_id and len(trials) == 3  # one more trial, the first two kept


@pytest.mark.slow
def test_hyperband_logs_continued_trials_at_their_true_epochs(tmp_path):
    result = _search(tmp_path, "tuner=hyperband", "tuner.max_epochs=3", "tuner.factor=3", "tuner.patience=null")
    assert result.returncode == 0, result.stderr[-3000:]
    client, experiment_id = _store(tmp_path)
    trials = client.search_runs([experiment_id], "tags.kind = 'tuner_trial'")
    continued = [r for r in trials if int(r.data.params.get("tuner/initial_epoch", 0)) > 0]
    assert continued, [r.data.params for r in trials]
    for trial in continued:
        first, last = int(trial.data.params["tuner/initial_epoch"]), int(trial.data.params["tuner/epochs"])
        assert [m.step for m in client.get_metric_history(trial.info.run_id, "val_balanced_accuracy")] == list(range(first, last))


@pytest.mark.slow
def test_distributed_search_with_a_chief_and_two_workers_on_loopback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "melanoma_lab.study.tune_cluster", "--workers", "2",
                             "--timeout", "300", "experiment=m2", "tuner=random", "tuner.max_trials=3", *TINY,
                             "tracking.log_model=false", SPACE, f"paths.root_dir={tmp_path}"],
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    client, experiment_id = _store(tmp_path)
    [search] = client.search_runs([experiment_id], "tags.kind = 'tuner_search'")
    trials = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{search.info.run_id}' "
                                                 "and tags.kind = 'tuner_trial'")
    assert sorted(r.data.tags["trial_id"] for r in trials) == ["0", "1", "2"]
    assert all(r.info.status == "FINISHED" for r in trials)
    assert search.data.tags["pid"] not in {r.data.tags["pid"] for r in trials}  # the workers ran the trials
    assert (tmp_path / "conf" / "experiment" / "tuned" / "m2_random.yaml").is_file()


@pytest.mark.parametrize("model", sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml")))
def test_the_default_search_space_fits_every_model(model):
    """tuner=random with any conf/model file searches only keys that model has (was: the CNN's space for all)."""
    from melanoma_lab.study.search_space import dimensions

    cfg = compose_config(["tuner=random", f"model={model}"])
    check_search_space(*space_of(cfg), [])
    keys = [entry.key for entry in dimensions(cfg.tuner)]
    assert all(OmegaConf.select(cfg, key, default="absent") != "absent" for key in keys if key.startswith("model."))
    assert any(key.startswith("model.") for key in keys) and all(e.sampling in ("linear", "log")
                                                                  for e in dimensions(cfg.tuner))
