# melanoma_lab — every target that needs the environment creates it first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/melanoma-lab
# TensorFlow extra (cpu | cuda) and further extras (comma-separated: dev, jax, torch): they name the lock file
# requirements/<tf>-<extras>.txt that `make install` installs with hashes (docs/install.md). `make lock` writes it.
TF ?= cpu
EXTRAS ?= dev,jax
comma := ,
PROFILE := $(TF)-$(subst $(comma),-,$(EXTRAS))
LOCK := requirements/$(PROFILE).txt
CLUSTER_LOCK := requirements/$(PROFILE)-cluster.txt
STAMP := $(VENV)/.installed-$(PROFILE)
UV_VERSION := 0.13.9
# the lowest Python declared: one universal lock covers Python 3.10-3.13 on every platform
LOCK_PYTHON := 3.10
PORT ?= 5000
DB_PORT ?= 5433
DATA ?= $(or $(MELANOMA_LAB_DATA),data/isic9)
TRAINER ?=
ARGS ?=
STUDY ?= $(if $(filter synthetic,$(DATA)),synthetic,isic)-study$(if $(TRAINER),-$(TRAINER))
DEMO_ARGS := dataset=synthetic trainer.epochs=8 study.name=demo
export PIP_DISABLE_PIP_VERSION_CHECK := 1

TUNE_ARGS ?= experiment=m2 tuner=random tuner.max_trials=6 dataset=synthetic trainer=smoke study.name=demo
WORKERS ?= 2

.PHONY: help install install-cluster check-lock lock server demo test test-all reproduce bench bench-models bench-study tune-distributed ui serve stale-runs data clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# install_lock,<lock file>: the lock's exact pins (hashes checked), then melanoma_lab itself without dependencies,
# a copy of the lock in the venv (runs log its hash) and the check that the environment matches it.
define install_lock
	@test -f $(1) || { echo "No lock file $(1) for TF=$(TF) EXTRAS=$(EXTRAS): create it with 'make lock TF=$(TF) EXTRAS=$(EXTRAS)'"; exit 2; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r $(1)
	$(PY) -m pip install -q --no-deps -e .
	cp $(1) $(VENV)/melanoma-lab.lock
	$(CLI) check-lock $(1)
endef

$(STAMP): pyproject.toml $(wildcard $(LOCK))
	$(call install_lock,$(LOCK))
	touch $(STAMP)

install: $(STAMP) ## create .venv from the lock requirements/<tf>-<extras>.txt (TF=cpu|cuda, EXTRAS=dev[,jax,torch])

check-lock: ## check that .venv holds exactly the versions of the lock it was installed from (and one TensorFlow)
	$(CLI) check-lock $(VENV)/melanoma-lab.lock

# Every requirements/*.txt (and the one TF/EXTRAS name) from pyproject.toml, resolved by uv for Linux x86-64 and
# aarch64, macOS arm64 and Python 3.10-3.13 at once (--universal), with hashes; the cpu-dev lock constrains the
# others so that shared packages have the same versions everywhere. Pins are kept unless UPGRADE=1. A lock with the
# torch extra takes torch's CPU wheels from download.pytorch.org (uv --torch-backend cpu; PyPI's Linux torch is CUDA).
lock: ## refresh the lock files requirements/*.txt from pyproject.toml (UPGRADE=1: newest versions)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q 'uv==$(UV_VERSION)'
	@mkdir -p requirements
	set -e; for lock in requirements/cpu-dev.txt $(filter-out requirements/cpu-dev.txt,$(sort $(wildcard requirements/*.txt) $(LOCK))); do \
	  extras=$$(basename $$lock .txt | tr - ' '); \
	  base=$$([ $$lock = requirements/cpu-dev.txt ] || echo "-c requirements/cpu-dev.txt"); \
	  torch=$$(case $$lock in *torch*) echo "--torch-backend cpu --emit-index-url";; esac); \
	  $(VENV)/bin/uv pip compile pyproject.toml --universal --python-version $(LOCK_PYTHON) --generate-hashes -q \
	    $(if $(UPGRADE),--upgrade) $$(printf -- '--extra %s ' $$extras) $$base $$torch -o $$lock --custom-compile-command 'make lock'; \
	  echo "locked $$lock"; \
	done

# hydra-ray-launcher 1.2.2 (the latest) pins cloudpickle<3 for its AWS launcher, which would downgrade the
# cloudpickle 3 that mlflow/joblib/submitit use; hydra/launcher=ray never imports cloudpickle, so the plug-in
# is installed without its pins (ray itself comes from the `cluster` extra).
CLUSTER_STAMP := $(VENV)/.installed-$(PROFILE)-cluster
$(CLUSTER_STAMP): $(STAMP) $(wildcard $(CLUSTER_LOCK))
	$(call install_lock,$(CLUSTER_LOCK))
	$(PY) -m pip install -q --no-deps 'hydra-ray-launcher==1.2.2'
	touch $(CLUSTER_STAMP)

install-cluster: $(CLUSTER_STAMP) ## install the `cluster` extra: Slurm/Ray launchers, Optuna sweeper, PostgreSQL driver

demo: install ## M1 -> M2 -> M3 on the built-in synthetic lesions (a few minutes), tracked in MLflow
	$(CLI) --multirun experiment=m1,m2,m3 $(DEMO_ARGS)

# Tiers (docs/testing.md). `make test`: the fast tier, a newcomer's check (no cluster extra, no torch, no Debian
# packages: tests that need them are marked and skip here). `make test-all`: every tier, as CI runs it (.ci/run).
# Both end with the unmarked tests that took over 10 s (tests/tiers.py); test-all also lists the 25 slowest.
PYTEST_ARGS ?=
test: install ## the fast tier: unit and fast integration tests, in minutes (no cluster extra, torch or services)
	$(PY) -m pytest -q -rs -m "not slow" $(PYTEST_ARGS)

test-all: install-cluster ## every test, slow/cluster/backends/distribution/ui included (needs .ci/run's packages)
	$(PY) -m pytest -q --durations=25 $(PYTEST_ARGS)

reproduce: install ## replay the study: audit, M1..M6 x seeds, report (DATA=path|synthetic, TRAINER=smoke: quick pass, ARGS=overrides)
	$(CLI) study study.name=$(STUDY) $(if $(TRAINER),trainer=$(TRAINER)) \
	  $(if $(filter synthetic,$(DATA)),dataset=synthetic,dataset.root=$(abspath $(DATA))) $(ARGS)

bench: install ## seed pipeline vs melanoma_lab (speed, memory, tracking overhead, Augmentor cache): bench/results.json
	$(CLI) bench --out bench/results.json
	$(CLI) bench-models --out bench/models.json

bench-models: install ## each recipe's model (m5, m6): training and prediction images/s, ~3 min: bench/models.json
	$(CLI) bench-models --out bench/models.json

bench-study: install ## the seeds' whole notebook procedure vs the M1+M2+M3 study, one seed (~20 min): bench/study.json
	$(CLI) bench-study --out bench/study.json

tune-distributed: install ## KerasTuner chief + $(WORKERS) workers on 127.0.0.1 (TUNE_ARGS="experiment=m2 tuner=random ...")
	$(CLI) tune-distributed --workers $(WORKERS) $(TUNE_ARGS)

ui: install ## MLflow UI at http://127.0.0.1:$(PORT) over the store conf/ names (ARGS="paths.root_dir=DIR ...")
	$(CLI) ui --port $(PORT) $(ARGS)

server: install-cluster ## MLflow server on 127.0.0.1:$(PORT), PostgreSQL store in paths.mlruns_dir/server (ARGS="paths.root_dir=DIR"; Ctrl-C stops both)
	$(CLI) server --port $(PORT) --db-port $(DB_PORT) $(ARGS)

stale-runs: install ## list this host's runs left RUNNING by a killed process (ARGS=--repair marks them FAILED)
	$(CLI) stale-runs $(ARGS)

serve: install ## serve the champion model over REST on 127.0.0.1:5001 (promote one first: docs/serving.md)
	$(CLI) serve

data: install ## download a dataset into data/<name>: DATASET=isic9 (default) | ham10000 | isic2019 (needs internet)
	$(CLI) data --dataset $(or $(DATASET),isic9)

clean: ## remove run folders and caches (keeps mlruns/ and data/isic9)
	rm -rf experiments/runs experiments/multiruns data/cache .pytest_cache
