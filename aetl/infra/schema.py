"""The type and range of every config key, declared once, by the code that reads the key,
and checked before anything runs.

- A node with a `_target_` (a strategy, a backbone, a dataset's loader, an app, a logger) is
  declared by the annotations of what it calls: `Finetune(..., lr_scale: Positive = 1.0)`
  declares strategy.lr_scale (a class's bases too: their arguments arrive through **kwargs).
- Every other node is declared by a settings dataclass in the module that reads it
  (`TrainerSettings` in aetl/training/loop.py declares trainer.*), reached from the command's
  own (`Config` in aetl/commands/train.py).
- Hydra's launchers and sweepers are typed by the plugins' own dataclasses; PLUGIN_RANGES
  bounds the numbers aetl's presets set.
Annotations carry the range: `Annotated[float, Range(0, lo_open=True)]` (the aliases below:
Positive, Share, Count, ...), `Literal[...]` the choices, `X | None` that null is allowed,
`X | Y` that a value of either fits (app.box: a box, a list of boxes or auto).

`aetl/commands/cli.py` composes the config once, then checks every override's values (every
value of a sweep) and the composed config as a whole (values from config files,
interpolations, the margin against the image size); each command checks its config again in
the job, where Optuna's draws and the other values of a sweep arrive. A key nothing declares
(one a user adds with `+key=...`) is not checked; tests/test_schema.py fails for a shipped one.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import inspect
import math
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Iterator, Literal, Union

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aetl.errors import AetlError

FIX = "fix it in the override or config"


@dataclass(frozen=True)
class Range:
    """An annotation's bounds: lo (open when lo_open) to hi, with `also` accepted outside them."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    also: tuple = ()
    hint: str = FIX


@dataclass(frozen=True)
class Declared:
    """A node declared elsewhere: by its own `_target_` (and by `otherwise`, a dataclass, when it
    names none), or by another key's declaration (`by="model"`)."""

    by: str = "_target_"
    otherwise: type | None = None


@dataclass
class Named:
    """A node with only a name (app=none)."""

    name: str


Positive = Annotated[float, Range(0, lo_open=True)]
NonNegative = Annotated[float, Range(0)]
Share = Annotated[float, Range(0, 1)]  # a fraction in [0, 1]
OpenShare = Annotated[float, Range(0, 1, lo_open=True)]  # in (0, 1]
Count = Annotated[int, Range(0)]
Natural = Annotated[int, Range(1)]
LatentDim = Annotated[int, Range(1, 65536, hint="set it to the size of the code")]
Width = Annotated[int, Range(1, 65536)]  # a layer's units or channels
Depth = Annotated[int, Range(1, 64)]  # blocks or layers repeated
ImageSize = Annotated[int, Range(1, 4096)]  # pixels on a side
Seed = Annotated[int, Range(0, 2**32 - 1)]  # what numpy and torch both take
Device = Literal["auto", "cpu", "cuda", "mps"]
Target = Annotated[dict, Declared()]  # a node declared by what its `_target_` calls
App = Annotated[dict, Declared(otherwise=Named)]  # an app, or app=none (only a name)
ModelOverrides = Annotated[dict, Declared("model")]  # keys of the model config


@dataclass(frozen=True)
class Spec:
    """What one key accepts: a kind, for numbers a range, for lists the spec of each item."""

    kind: str  # int | float | bool | str | choice | list | dict | either (one of `options`)
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    nullable: bool = False
    choices: tuple = ()
    item: "Spec | None" = None
    also: tuple = ()  # values accepted outside the range (joblib's n_jobs=-1: every core)
    hint: str = FIX
    options: tuple = ()  # either: the specs of which one must fit

    def problem(self, value: Any) -> str | None:
        """None when value fits; else what the key accepts (for a value of the right type
        but out of range, just the range)."""
        if value is None:
            return None if self.nullable else self.describe()
        if self.kind == "either":
            return None if any(o.problem(value) is None for o in self.options) else self.describe()
        if not self._typed(value):
            return self.describe()
        if self.kind in ("int", "float") and value not in self.also and not self._in_range(value):
            return self.range()
        if self.kind == "list" and any(self.item.problem(v) for v in value):
            return self.describe()
        return None

    def _typed(self, value: Any) -> bool:
        if isinstance(value, bool):
            return self.kind == "bool" or any(c is value for c in self.choices)
        if self.kind == "choice":
            return any(type(value) is type(c) and value == c for c in self.choices)
        kinds = {"int": int, "float": (int, float), "bool": bool, "str": str, "list": list, "dict": dict}
        return isinstance(value, kinds[self.kind])

    def _in_range(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        low = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        return low and (self.hi is None or value <= self.hi)

    def range(self) -> str:
        if self.lo is not None and self.hi is not None and not self.lo_open:
            text = f"in [{_num(self.lo)}, {_num(self.hi)}]"
        else:
            parts = [f"{'>' if self.lo_open else '>='} {_num(self.lo)}" if self.lo is not None else "",
                     f"<= {_num(self.hi)}" if self.hi is not None else ""]
            text = " and ".join(p for p in parts if p) or "finite"
        return text + "".join(f" (or {_num(a)})" for a in self.also)

    def describe(self) -> str:
        names = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                 "dict": "a mapping ({key: value, ...})"}
        if self.kind == "either":
            return _either([o.describe() for o in self.options]) + (" or null" if self.nullable else "")
        if self.kind == "choice":
            text = _either([_num(c) if isinstance(c, (int, float)) else str(c) for c in self.choices])
        elif self.kind == "list":
            each = ("one of " if self.item.kind == "choice" else "") + self.item.describe()
            return f"a list ([a, b, ...]){' or null' if self.nullable else ''}, each item {each}"
        else:
            text = names[self.kind] + (f" {self.range()}" if self.kind in ("int", "float") else "")
        return text + (" or null" if self.nullable else "")


# Hydra's plugins type their settings; aetl bounds the numbers and names the choices its presets set.
PLUGIN_RANGES = {
    "timeout_min": Range(1), "cpus_per_task": Range(1), "gpus_per_node": Range(0), "tasks_per_node": Range(1),
    "mem_gb": Range(1), "nodes": Range(1), "cpus_per_gpu": Range(1), "gpus_per_task": Range(1),
    "signal_delay_s": Range(0), "max_num_timeout": Range(0), "array_parallelism": Range(1),
    "n_jobs": Range(1, also=(-1,)), "verbose": Range(0), "timeout": Range(0, lo_open=True),
    "max_batch_size": Range(1), "n_trials": Range(1), "max_failure_rate": Range(0, 1), "seed": Range(0, 2**32 - 1),
    "prior_weight": Range(0, lo_open=True), "n_startup_trials": Range(0), "n_ei_candidates": Range(1),
}
PLUGIN_CHOICES = {  # (None: null is allowed)
    "hydra.sweeper.direction": ("minimize", "maximize"),
    "hydra.launcher.backend": ("loky", "threading", "multiprocessing", None),
    "hydra.launcher.prefer": ("processes", "threads"), "hydra.launcher.require": ("sharedmem", None),
    "hydra.launcher.mmap_mode": ("r+", "r", "w+", "c", None)}
PLUGIN_TYPES = {"hydra.sweeper.storage": str | None}  # typed Any by the plugin
CHECKED = ("launcher", "sweeper")  # under hydra: the rest of it is Hydra's to check
SPECIAL = {"_target_": str, "_partial_": bool, "_recursive_": bool, "_convert_": str}


def spec_of(annotation: Any, hint: str = FIX) -> Spec | None:
    """The Spec of a leaf's annotation; None for one no config value can meet (a tensor, Any)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        marks = args[1:]
        if any(isinstance(m, Declared) for m in marks):
            return Spec("dict", nullable=True, hint=hint)
        bounds = next((m for m in marks if isinstance(m, Range)), None)
        spec = spec_of(args[0], bounds.hint if bounds else hint)
        if spec is None or bounds is None:
            return spec
        return dataclasses.replace(spec, lo=bounds.lo, hi=bounds.hi, lo_open=bounds.lo_open, also=bounds.also)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        options = [spec_of(a, hint) for a in rest]
        if len(rest) > 1 and all(options):  # X | Y: either fits
            return Spec("either", nullable=len(rest) < len(args), options=tuple(options), hint=hint)
        spec = options[0] if len(rest) == 1 else None
        return dataclasses.replace(spec, nullable=True) if spec is not None and len(rest) < len(args) else spec
    if origin is Literal:
        return Spec("choice", choices=args, hint=hint)
    if origin in (list, tuple, collections.abc.Sequence):
        item = spec_of(args[0], hint) if args else Spec("str")
        return Spec("list", item=item, hint=hint) if item is not None else None
    if origin in (dict, collections.abc.Mapping) or annotation is dict or dataclasses.is_dataclass(annotation):
        return Spec("dict", nullable=True, hint=hint)
    kinds = {int: "int", float: "float", bool: "bool", str: "str"}
    return Spec(kinds[annotation], hint=hint) if annotation in kinds else None


@functools.lru_cache(maxsize=None)
def declarations(target: str) -> dict[str, Any]:
    """Parameter name -> annotation of what a `_target_` calls (a class: its __init__ and its
    bases'); {} for a target that is not there (Hydra reports it) or that declares nothing."""
    try:
        called = get_object(target)
    except Exception:  # noqa: BLE001 - an unknown _target_ is Hydra's to report, in its words
        return {}
    calls = [c.__init__ for c in inspect.getmro(called) if "__init__" in vars(c)] if inspect.isclass(called) \
        else [called]
    found: dict[str, Any] = {}
    for fn in calls:
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError, NameError):  # a builtin, or annotations that do not resolve
            continue
        for name in params:
            if name in hints:
                found.setdefault(name, hints[name])
    return found


def fields_of(declared: type) -> dict[str, Any]:
    """A settings dataclass's field name -> annotation."""
    return typing.get_type_hints(declared, include_extras=True)


def annotation_of(cfg: DictConfig, key: str, root: type) -> Any:
    """The annotation that declares the dotted key of cfg (a composed config declared by root),
    or None when nothing does."""
    node: Any = cfg
    declared: Any = root
    parts = key.split(".")
    for i, part in enumerate(parts):
        child = node.get(part) if isinstance(node, DictConfig) else None
        if isinstance(child, DictConfig) and "_target_" in child:
            found: Any = Target  # a node that names what it calls is declared by it, whatever holds it
        else:
            found = _member(node, declared, part, cfg, root)
        if found is None or i == len(parts) - 1:
            return found
        node, declared = child, found
    return None


def _member(node: Any, declared: Any, part: str, cfg: DictConfig, root: type) -> Any:
    """The annotation of `part` in a node that `declared` declares."""
    if part in SPECIAL:
        return SPECIAL[part]
    declared = _unwrap(declared)
    mark = _mark(declared)
    if mark is not None and mark.by != "_target_":  # another key's declaration (strategy.target_model: model's)
        return annotation_of(cfg, f"{mark.by}.{part}", root) if isinstance(cfg.get(mark.by), DictConfig) else None
    if isinstance(node, DictConfig) and "_target_" in node:
        return declarations(str(node._get_node("_target_")._value())).get(part)
    if mark is not None:
        return fields_of(mark.otherwise).get(part) if mark.otherwise else None
    if typing.get_origin(declared) in (dict, collections.abc.Mapping):
        return typing.get_args(declared)[1] if typing.get_args(declared) else None
    if not dataclasses.is_dataclass(declared):
        return None
    found = fields_of(declared).get(part)
    by = getattr(declared, "OTHER_KEYS", None)  # keys of a node that one of its children reads (a domain's loader)
    if found is None and by and isinstance(node, DictConfig) and isinstance(node.get(by), DictConfig):
        found = _member(node.get(by), Target, part, cfg, root)
    return found


def _unwrap(declared: Any) -> Any:
    """X | None -> X."""
    if typing.get_origin(declared) in (Union, types.UnionType):
        rest = [a for a in typing.get_args(declared) if a is not type(None)]
        return rest[0] if len(rest) == 1 else declared
    return declared


def _mark(declared: Any) -> Declared | None:
    if typing.get_origin(declared) is not Annotated:
        return None
    return next((m for m in typing.get_args(declared)[1:] if isinstance(m, Declared)), None)


def spec_for(key: str, cfg: DictConfig, root: type) -> Spec | None:
    """The spec of a dotted key of cfg (declared by root), or None for a key nothing declares."""
    annotation = annotation_of(cfg, key, root)
    return None if annotation is None else spec_of(annotation)


def plugin_spec(key: str, declared: type | None, target: str | None = None) -> Spec | None:
    """The spec of a key of Hydra's launcher or sweeper, from the plugin's dataclass that holds
    its leaf (`declared`), or from what that node's `_target_` calls (Optuna's sampler), and
    aetl's bounds."""
    leaf = key.rpartition(".")[2]
    if key in PLUGIN_CHOICES:
        choices = PLUGIN_CHOICES[key]
        return Spec("choice", choices=tuple(c for c in choices if c is not None), nullable=None in choices)
    if leaf in SPECIAL:
        return spec_of(SPECIAL[leaf])
    annotation = fields_of(declared).get(leaf) if dataclasses.is_dataclass(declared) else None
    if annotation is None and target:
        annotation = declarations(target).get(leaf)
    spec = spec_of(PLUGIN_TYPES.get(key, annotation))
    bounds = PLUGIN_RANGES.get(leaf)
    if spec is not None and bounds is not None and spec.kind in ("int", "float"):
        spec = dataclasses.replace(spec, lo=bounds.lo, hi=bounds.hi, lo_open=bounds.lo_open, also=bounds.also)
    return spec


def problem(key: str, value: Any, spec: Spec | None) -> str | None:
    """The one line for a value the key does not accept (None when it does, or nothing declares it)."""
    need = spec.problem(value) if spec else None
    if need is None:
        return None
    hint = spec.hint
    if spec.kind == "str" and isinstance(value, (int, float)) and not isinstance(value, bool):
        hint = f"quote it to pass it as a string: \"{key}='{value}'\""
    return f"{key} must be {need}, got {_show(value)}; {hint}"


def check_value(key: str, value: Any, cfg: DictConfig, root: type) -> None:
    """An override's value, in the config composed with it (a mapping: each of its entries too)."""
    for dotted, v in _flatten(key, value):
        message = None if _unset(v) else problem(dotted, v, spec_for(dotted, cfg, root))
        if message:
            raise AetlError(message)


def check_config(cfg: DictConfig, root: type) -> None:
    """Every value of a composed config (Hydra's settings aside: check_hydra), interpolations
    resolved, then the margins against the image size. The first problem is an AetlError."""
    plain = _plain(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))
    for key, value in plain.items():
        check_value(str(key), value, cfg, root)
    _check_margins(plain.get("data") or {})


def check_hydra(hydra: DictConfig) -> None:
    """The launcher's and the sweeper's settings, unresolved (their interpolations name run
    dirs); the rest of Hydra's settings are Hydra's to check."""
    for name in CHECKED:
        if hydra.get(name) is None:
            continue
        for key, value in _flatten(f"hydra.{name}", OmegaConf.to_container(hydra[name], resolve=False)):
            if key.startswith("hydra.sweeper.params") or isinstance(value, dict) or _unset(value):
                continue
            check_plugin_value(key, value, hydra)


def check_plugin_value(key: str, value: Any, hydra: DictConfig) -> None:
    """A value of a key of Hydra's launcher or sweeper (hydra.launcher.*, hydra.sweeper.*)."""
    parent = OmegaConf.select(hydra, key.removeprefix("hydra.").rpartition(".")[0])
    if isinstance(parent, DictConfig) and not _unset(value):
        message = problem(key, value, plugin_spec(key, OmegaConf.get_type(parent), parent.get("_target_")))
        if message:
            raise AetlError(message)


def _plain(cfg: DictConfig) -> dict:
    """cfg as plain values, resolved; with an interpolation that does not resolve here (it
    may need the Hydra job), unresolved: _unset skips it, and the job reports it."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:
        return OmegaConf.to_container(cfg, resolve=False)


def _check_margins(data: dict) -> None:
    """A frame or crop margin must leave room for the content in data.image_size."""
    size = data.get("image_size")
    for role in ("source", "target"):
        side = data.get(role) or {}
        margin, fit = side.get("margin"), side.get("fit")
        if fit in ("frame", "crop") and isinstance(size, int) and isinstance(margin, int) and 2 * margin >= size:
            raise AetlError(f"data.{role}.margin={margin} leaves no room in a {size}x{size} image with data.{role}."
                            f"fit={fit}; choose a margin in [0, {(size - 1) // 2}] or raise data.image_size")


def _flatten(key: str, value: Any) -> Iterator[tuple[str, Any]]:
    """key and value, then each entry's; a domain's `load` (the loader's arguments, mostly
    interpolations of the keys beside it) last, so that a bad value is named as the user set it."""
    yield key, value
    if isinstance(value, dict):
        for k, v in sorted(value.items(), key=lambda kv: kv[0] == "load"):
            yield from _flatten(f"{key}.{k}", v)


def _unset(value: Any) -> bool:
    """A value left for later: ??? (reported on its own) or an interpolation."""
    return isinstance(value, str) and (value == "???" or "${" in value)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)


def _num(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
