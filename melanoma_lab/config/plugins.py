"""Plug-ins: config nodes with ``_target_``, checked against the target's own signature before anything runs.

A plug-in (model builder, imbalance strategy, loss, schedule, callback, augmentation step, dataset source) is
a function or class whose keyword parameters, with type annotations and defaults, are its only schema:
``Literal[...]`` lists the allowed values, ``Annotated[float, Range(0, 1)]`` bounds a number. :func:`target_problems`
walks a config group and, for every node with a ``_target_``, finds an unknown key, a wrongly typed value or
an out-of-range value, naming ``group.key`` (:func:`melanoma_lab.config.schema.validate` raises them as one
:class:`ConfigError`), without importing TensorFlow: a target
in a heavy package (``keras``, ``tensorflow``) is checked when it is built instead (:func:`build`).
"""

from __future__ import annotations

import inspect
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from omegaconf import DictConfig, ListConfig, OmegaConf

from melanoma_lab.errors import ConfigError, UserError

HEAVY = ("keras", "tensorflow", "tf_keras", "keras_tuner")  # importing these loads TensorFlow: checked when built
HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}
NOT_SET = inspect.Parameter.empty

__all__ = ["Annotated", "Literal", "Range", "build", "check_node", "resolve", "target_problems"]


@dataclass(frozen=True)
class Range:
    """A bound on a number parameter, used as ``Annotated[float, Range(0, 1, max_open=True)]`` (0 <= x < 1)."""

    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False

    def holds(self, value: float) -> bool:
        above = self.min is None or (value > self.min if self.min_open else value >= self.min)
        below = self.max is None or (value < self.max if self.max_open else value <= self.max)
        return above and below

    def __str__(self) -> str:
        low = "" if self.min is None else f"{'(' if self.min_open else '['}{self.min}"
        high = "" if self.max is None else f"{self.max}{')' if self.max_open else ']'}"
        if self.max is None:
            return f"{'>' if self.min_open else '>='} {self.min}"
        if self.min is None:
            return f"{'<' if self.max_open else '<='} {self.max}"
        return f"in {low}, {high}"


# Arguments of the augmentation group's Keras layers that Keras takes without checking them (RandomFlip's mode) or
# checks only once TensorFlow has loaded: checked at composition (melanoma_lab.components.augmentation).
FillMode = Literal["reflect", "wrap", "constant", "nearest"]
Interpolation = Literal["nearest", "bilinear"]
AFFINE = {"fill_mode": FillMode, "interpolation": Interpolation}
KERAS_ARGUMENTS: dict[str, dict[str, Any]] = {
    "keras.layers.RandomFlip": {"mode": Literal["horizontal", "vertical", "horizontal_and_vertical"]},
    "keras.layers.RandomRotation": AFFINE,
    "keras.layers.RandomZoom": AFFINE,
    "keras.layers.RandomTranslation": AFFINE,
}


def is_heavy(target: str) -> bool:
    return target.split(".", 1)[0] in HEAVY


def resolve(target: str, where: str) -> Any:
    """The object named by a ``_target_`` (a dotted path), or a ConfigError naming ``where``."""
    from hydra.utils import get_object  # resolving only: no Hydra runtime needed

    try:
        return get_object(target)
    except Exception as error:  # ImportError, AttributeError, or an error raised while importing its module
        raise ConfigError(f"{where}._target_={target!r} cannot be imported ({' '.join(str(error).split())}): give the "
                          "dotted path of a function or class importable from the working directory") from error


def _hints(function: Any) -> dict[str, Any]:
    """The evaluated annotations of ``function`` (extras kept); one that cannot be evaluated here (a type imported
    only for type checkers, e.g. ``keras.Model``) is left out, and its value is not type-checked."""
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception:
        namespace = getattr(function, "__globals__", {})
        hints = {}
        for name, annotation in getattr(function, "__annotations__", {}).items():
            try:
                hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation
            except Exception:
                continue
        return hints


def _parameters(target: Any) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """Keyword parameters of ``target``, their annotations (extras kept) and whether it takes ``**kwargs``."""
    function = target.__init__ if inspect.isclass(target) else target
    signature = inspect.signature(target)
    hints = _hints(function)
    named = {name: p for name, p in signature.parameters.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    return named, hints, takes_any


def _problem(value: Any, annotation: Any) -> str | None:
    """Why ``value`` does not fit ``annotation`` (None: it fits)."""
    if annotation in (Any, NOT_SET, inspect.Parameter.empty):
        return None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        problem = _problem(value, args[0])
        if problem is None:
            for bound in (a for a in args[1:] if isinstance(a, Range)):
                if not bound.holds(value):
                    return f"must be {bound}"
        return problem
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = [_problem(value, a) for a in args if a is not type(None)]
        return None if None in problems else problems[0] if len(problems) == 1 else "must be " + " or ".join(
            str(getattr(a, "__name__", a)) for a in args)
    if origin is Literal:
        return None if value in args else "must be one of " + ", ".join(map(str, args))
    if value is None:
        return "must not be null"
    if origin in (list, tuple) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return "must be a list"
        for item in value if args else ():
            problem = _problem(item, args[0])
            if problem:
                return f"contains {item!r}, which {problem}"
        return None
    if origin is dict or annotation is dict:
        return None if isinstance(value, dict) else "must be a mapping"
    if annotation is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if annotation is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"
    if annotation is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "must be a number"
    if annotation is str:
        return None if isinstance(value, str) else "must be a string"
    return None  # a type this check does not know: the plug-in checks it itself


def check_node(node: dict, where: str, target: Any | None = None) -> list[str]:
    """Problems of one ``_target_`` node (a plain dict) against its target's signature, each naming its key."""
    target = resolve(node["_target_"], where) if target is None else target
    named, hints, takes_any = _parameters(target)
    problems = []
    for key, value in node.items():
        if key in HYDRA_KEYS:
            continue
        if key not in named:
            if not takes_any:
                problems.append(f"{where}.{key}: unknown key; {node['_target_']} takes "
                                f"{', '.join(named) or 'no parameters'}")
            continue
        problem = _problem(value, hints.get(key, Any))
        if problem:
            problems.append(f"{where}.{key}={value!r} {problem}")
    return problems


def target_problems(node: Any, where: str, declared: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """What is wrong with every ``_target_`` node in ``node`` (a config group at ``where``): keys its target does not
    take, and values of heavy targets' arguments that ``declared`` types ({target: {argument: annotation}})."""
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=True, throw_on_missing=False)
    declared = declared or {}
    problems = []
    if isinstance(node, dict):
        target = node.get("_target_")
        if isinstance(target, str) and not is_heavy(target):
            problems += check_node(node, where)
        elif isinstance(target, str):  # checked when built; values declared in pure Python are checked now
            problems += [f"{where}.{key}={node[key]!r} {problem}"
                         for key, annotation in declared.get(target, {}).items()
                         if key in node and (problem := _problem(node[key], annotation))]
        for key, value in node.items():
            problems += target_problems(value, f"{where}.{key}" if where else str(key), declared)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            problems += target_problems(value, f"{where}[{index}]", declared)
    return problems


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def accepts(target: Any, name: str) -> bool:
    named, _, takes_any = _parameters(target)
    return name in named or takes_any


def build(node: DictConfig | dict, where: str, *, partial: bool = False, replace: dict[str, Any] | None = None,
          **context: Any) -> Any:
    """Call ``node``'s target with its keys and those of ``context`` its signature takes (e.g. ``seed``,
    ``num_classes``); ``replace`` sets arguments over the node's own (the optimizer's learning-rate schedule over
    its peak rate); ``partial`` returns the call unmade (``functools.partial``). A heavy target is checked here, and
    any argument it refuses is a ConfigError naming ``where``; a user error the target raises keeps its message."""
    spec = _plain(node)
    target = resolve(spec["_target_"], where)
    if is_heavy(spec["_target_"]):
        problems = check_node(spec, where, target)
        if problems:
            raise ConfigError("invalid config: " + "; ".join(problems))
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    given = {k: v for k, v in context.items() if k not in spec and accepts(target, k)} | dict(replace or {})
    try:
        return instantiate(spec, _convert_="all", _partial_=partial, **given)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, UserError):  # a ConfigError, or the target's own (missing data: what to do)
            raise cause from None
        if not isinstance(cause, (TypeError, ValueError, NotImplementedError)):
            raise
        raise ConfigError(f"{where} ({spec['_target_']}): {str(cause).splitlines()[0]}") from cause
