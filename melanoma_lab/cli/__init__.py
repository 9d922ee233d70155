"""One command line: ``melanoma-lab <command> [options] [key=value ...]`` (also ``python -m melanoma_lab``).

Every command takes Hydra ``key=value`` overrides of ``conf/config.yaml`` the same way (``paths.root_dir=DIR``,
``tracking.tracking_uri=URI``...), and ``melanoma-lab <command> --help`` lists its own options. With no command,
or with overrides first, the command is ``train``: ``melanoma-lab experiment=m2`` trains M2. A user error exits
with status 2 and one ``error:`` line.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from typing import NamedTuple

from melanoma_lab.cli.quiet import quiet_output
from melanoma_lab.errors import USER_ERROR_STATUS


class Command(NamedTuple):
    target: str  # "module:function"
    summary: str
    hydra: bool = False  # a Hydra app (reads sys.argv itself) rather than main(argv)


COMMANDS = {
    "train": Command("melanoma_lab.cli.train:main", "train one experiment, cross-validate or tune it (default)"),
    "study": Command("melanoma_lab.cli.study:app", "every experiment for every seed, then the report", True),
    "report": Command("melanoma_lab.cli.report:main", "the study report from MLflow (no retraining)"),
    "evaluate": Command("melanoma_lab.cli.evaluate:app", "score a logged or registered model on any dataset", True),
    "shift-check": Command("melanoma_lab.cli.shift_check:main",
                           "score a cross-validation's fold models under acquisition shifts"),
    "ablation": Command("melanoma_lab.cli.ablation:main", "ablation tables of cross-validated runs"),
    "audit": Command("melanoma_lab.cli.audit:app", "what is wrong with a dataset before training on it", True),
    "data": Command("melanoma_lab.cli.data:main", "download and verify a dataset (isic9, ham10000, isic2019)"),
    "predict": Command("melanoma_lab.cli.predict:main", "classify images with a melanoma alert (Grad-CAM)"),
    "ood-check": Command("melanoma_lab.cli.ood_check:main",
                         "how often the input check flags a dataset's lesions and generated non-lesions"),
    "promote": Command("melanoma_lab.cli.promote:main", "register a model as the champion, with its card"),
    "serve": Command("melanoma_lab.cli.serve:app", "serve a model over REST (mlflow models serve)", True),
    "ui": Command("melanoma_lab.cli.ui:main", "the MLflow UI over the configured store"),
    "server": Command("melanoma_lab.cli.server:main", "a shared MLflow server with a PostgreSQL store"),
    "stale-runs": Command("melanoma_lab.cli.stale_runs:main", "list or end runs whose process died"),
    "check-lock": Command("melanoma_lab.cli.check_lock:main", "check the environment against its lock file"),
    "tune-distributed": Command("melanoma_lab.study.tune_cluster:main",
                                "a KerasTuner chief and workers on 127.0.0.1"),
    "bench": Command("melanoma_lab.bench.throughput:main", "input pipeline and training speed (bench/results.json)"),
    "bench-models": Command("melanoma_lab.bench.models:main", "each recipe's model: images/s"),
    "bench-study": Command("melanoma_lab.bench.study:main", "the notebook procedure vs the study, one seed"),
    "bench-backends": Command("melanoma_lab.bench.backends:main", "one model under each Keras backend"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [__doc__.split("\n")[0], "", "commands:"]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "melanoma-lab <command> --help: that command's options"]
    return "\n".join(lines)


def split_command(argv: list[str]) -> tuple[str, list[str]]:
    """The command named first in ``argv`` (``train`` when the first word is an override or an option), and the
    rest. An unknown command word is a user error with the nearest command names."""
    from melanoma_lab.config.arguments import is_override

    if not argv or argv[0].startswith("-") or is_override(argv[0]):
        return "train", argv
    if argv[0] in COMMANDS:
        return argv[0], argv[1:]
    near = difflib.get_close_matches(argv[0], COMMANDS, n=3)
    hint = f" (did you mean {' or '.join(near)}?)" if near else ""
    raise LookupError(f"unknown command {argv[0]!r}{hint}: run 'melanoma-lab --help' for the list")


def main(argv: list[str] | None = None) -> int | None:
    argv = sys.argv[1:] if argv is None else list(argv)
    quiet_output(argv)  # before any command imports TensorFlow or MLflow
    if argv[:1] in (["-h"], ["--help"], ["help"]):
        print(usage())
        return 0
    try:
        name, rest = split_command(argv)
    except LookupError as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return USER_ERROR_STATUS
    command = COMMANDS[name]
    module, _, function = command.target.partition(":")
    entry = getattr(importlib.import_module(module), function)
    if command.hydra:
        from melanoma_lab.cli.hydra_app import run_hydra_app
        from melanoma_lab.config.schema import register_configs

        register_configs()
        return run_hydra_app(entry, f"melanoma-lab {name}", rest)
    sys.argv = [f"melanoma-lab {name}", *rest]
    return entry(rest)
