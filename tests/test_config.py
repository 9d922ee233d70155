import dataclasses
from pathlib import Path

import pytest
import yaml
from hydra.errors import ConfigCompositionException
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from melanoma_lab.config.schema import GROUP_SCHEMAS, Config, ConfigError, validate
from tests.conftest import CONF_DIR, EXPERIMENTS, compose_config


def test_seed_study_experiments_exist():
    assert {"m1", "m2", "m3"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_validates(name):
    cfg = compose_config([f"experiment={name}"])
    validate(cfg)
    assert cfg.name == name


def test_experiments_differ_as_in_the_seeds():
    m1, m2, m3 = (compose_config([f"experiment={n}"]) for n in ("m1", "m2", "m3"))
    assert not m1.augmentation and m1.model.dropout == 0
    assert m2.augmentation.flip.mode == "horizontal_and_vertical" and m2.model.dropout > 0
    assert m2.imbalance._target_ == "melanoma_lab.components.imbalance.unchanged"
    assert m3.imbalance._target_ == "melanoma_lab.components.imbalance.augmentor" and m3.imbalance.extra_per_class == 500
    assert m3.trainer.epochs == 30 and m1.trainer.epochs == 20


def test_defaults_match_the_study():
    cfg = compose_config([])
    assert (cfg.dataset.name, cfg.dataset.image_size, cfg.dataset.batch_size) == ("isic9", 180, 32)
    assert cfg.dataset.val_fraction == 0.2
    assert cfg.dataset.root.endswith("data/isic9")


def test_dataset_root_comes_from_environment(monkeypatch):
    monkeypatch.setenv("MELANOMA_LAB_DATA", "/somewhere/isic")
    assert compose_config([]).dataset.root == "/somewhere/isic"


def test_command_line_overrides_any_value():
    cfg = compose_config(["experiment=m2", "model.dropout=0.3", "trainer.epochs=5", "optimizer=sgd"])
    assert (cfg.model.dropout, cfg.trainer.epochs, cfg.optimizer.momentum) == (0.3, 5, 0.9)


@pytest.mark.parametrize("override", ["model.dropoutt=0.3", "trainer.epochz=2", "dataset.colour=red"])
def test_unknown_key_is_rejected(override):
    with pytest.raises((ConfigCompositionException, ConfigKeyError)) as error:
        compose_config([override])
    assert override.split("=")[0].split(".")[-1] in str(error.value) + str(error.value.__cause__)


@pytest.mark.parametrize("override", ["trainer.epochs=abc", "dataset.image_size=big"])
def test_wrong_type_is_rejected(override):
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_config([override])


@pytest.mark.parametrize("override,message", [
    ("model.batch_norm=maybe", "model.batch_norm='maybe' must be true or false"),
    ("model.filters=[8,0]", "model.filters=[8, 0] contains 0, which must be >= 1"),
    ("+model.dropoutt=0.3", "model.dropoutt: unknown key; melanoma_lab.components.models.build_cnn takes"),
    ("loss.label_smoothing=1.0", "loss.label_smoothing=1.0 must be in [0.0, 1.0)"),
    ("+callbacks.early_stopping.patiencee=3", "callbacks.early_stopping.patiencee: unknown key"),
    ("imbalance=augmentor;imbalance.workers=0", "imbalance.workers=0 must be >= 1"),
    ("imbalance=class_weight;imbalance.max_class_weight=0.5", "imbalance.max_class_weight=0.5 must be >= 1.0"),
    ("experiment=m2;augmentation.flip.mode=diagonal",
     "augmentation.flip.mode='diagonal' must be one of horizontal, vertical, horizontal_and_vertical"),
    ("+augmentation.blur._target_=nowhere.Blur", "augmentation.blur._target_='nowhere.Blur' cannot be imported"),
])
def test_plugin_values_are_checked_against_their_signature(override, message):
    """Plug-in groups have no schema class: the _target_'s signature (types, Literal, Range) is checked."""
    with pytest.raises(ConfigError) as error:
        validate(compose_config(override.split(";")))
    assert message in str(error.value)


@pytest.mark.parametrize("override,key", [("trainer.epochs=-1", "trainer.epochs"),
                                          ("dataset.val_fraction=1.5", "dataset.val_fraction"),
                                          ("dataset.image_size=0", "dataset.image_size"),
                                          ("model.dropout=1.5", "model.dropout"),
                                          ("evaluation.epoch_tta=eight", "evaluation.epoch_tta")])
def test_impossible_value_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(compose_config([override]))


def test_missing_experiment_file_is_rejected():
    with pytest.raises(ConfigCompositionException, match="m99"):
        compose_config(["experiment=m99"])


def test_config_groups_mirror_modules():
    package = Path(__file__).resolve().parents[1] / "melanoma_lab"
    for group in ("augmentation", "imbalance", "evaluation", "audit", "tracking"):
        assert (CONF_DIR / group).is_dir() and (any(package.glob(f"*/{group}.py")) or (package / group).is_dir())


def test_smoke_trainer_wins_over_the_experiments_trainer():
    assert compose_config(["experiment=m3", "trainer=smoke"]).trainer.epochs == 1
    assert compose_config(["experiment=m3", "trainer.epochs=3"]).trainer.epochs == 3


def test_experiment_files_leave_the_trainer_to_the_trainer_group():
    for name in EXPERIMENTS:
        assert compose_config([f"experiment={name}", "trainer=smoke"]).trainer.epochs == 1, name


def _stated_defaults(schema: type) -> list[str]:
    """Fields of a schema dataclass that state a value (MISSING and a nested schema's default_factory do not)."""
    stated = []
    for field in dataclasses.fields(schema):
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            continue
        value = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        if value is not MISSING and not dataclasses.is_dataclass(value):
            stated.append(field.name)
    return stated


def test_a_default_is_stated_once_in_conf_not_again_in_the_schema():
    """The schema states types (and validate's CHECKS ranges): a value stated in a dataclass too would drift from
    the YAML (it did: tuner.patience None vs 5)."""
    twice = {}
    for group, schemas in [*GROUP_SCHEMAS.items(), ("", {"_schema": Config})]:
        files = sorted((CONF_DIR / group).glob("*.yaml")) if group else [CONF_DIR / "config.yaml"]
        keys = set().union(*({k for k in (yaml.safe_load(f.read_text()) or {}) if k != "defaults"} for f in files))
        for schema in set(schemas.values()):
            twice |= {f"{group}.{name}".lstrip("."): schema.__name__ for name in _stated_defaults(schema)
                      if name in keys}
    assert not twice, f"defaults stated in melanoma_lab/config/schema.py and in conf/: {sorted(twice)}"
    for schema in {s for schemas in GROUP_SCHEMAS.values() for s in schemas.values()} | {Config}:
        assert not _stated_defaults(schema), f"{schema.__name__} states defaults: {_stated_defaults(schema)}"


@pytest.mark.parametrize("group", sorted(GROUP_SCHEMAS))
def test_every_option_of_a_schema_group_states_every_key(group):
    for option in sorted(p.stem for p in (CONF_DIR / group).glob("[!_]*.yaml")):
        cfg = compose_config([f"{group}={option}"])
        missing = [key for key in cfg[group] if OmegaConf.is_missing(cfg[group], key)]
        assert not missing, f"{group}={option} leaves {missing} unset (MISSING in the schema, absent in conf/)"


def test_drifted_defaults_are_the_yaml_ones():
    assert list(compose_config([]).study.experiments) == EXPERIMENTS
    assert compose_config(["tuner=random"]).tuner.patience == 5
    assert compose_config(["tuner=random"]).tuner.export_dir == compose_config([]).paths.conf_dir


@pytest.mark.parametrize("override,message", [
    ("+trainer.epocs=5", "trainer.epocs: unknown key (did you mean trainer.epochs?)"),
    ("+evaluation.tt=flip", "evaluation.tt: unknown key (did you mean evaluation.tta?)"),
    ("+dataset.colour=red", "dataset.colour: unknown key"),
    ("+nmae=x", "nmae: unknown key (did you mean name?)"),
])
def test_a_key_added_to_a_closed_schema_is_refused(override, message):
    """``+key=value`` is what Hydra advises after a typo; in a group with a schema it would run with the default
    and log a bogus param."""
    with pytest.raises(ConfigError) as error:
        validate(compose_config([override]))
    assert message in str(error.value)


@pytest.mark.parametrize("overrides,key", [
    (["+callbacks.nan._target_=keras.callbacks.TerminateOnNaN"], "callbacks.nan._target_"),
    (["+augmentation.mixup._target_=keras.layers.MixUp", "+augmentation.mixup.alpha=0.2"], "augmentation.mixup.alpha"),
    (["experiment=m2", "+augmentation.flip.seed=3"], "augmentation.flip.seed"),  # Keras layers: checked when built
    (["+optimizer.beta_1=0.8"], "optimizer.beta_1"),  # a Keras optimizer takes it: checked when built
])
def test_a_key_a_plugin_takes_can_be_added(overrides, key):
    cfg = compose_config(overrides)
    validate(cfg)
    assert OmegaConf.select(cfg, key) is not None
