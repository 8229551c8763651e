"""A run's config as aetl reads it, apart from Hydra: the keys left at ??? (a value the user
must give), its identity (what must not change for a run dir to resume) and how two configs
differ. The command line checks these before Hydra starts; `aetl train` again in its job."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from aetl.errors import AetlError

# Settings that change how a job runs, not what it computes: they may differ on resume.
NOT_IDENTITY = ("trainer.progress", "trainer.threads", "trainer.checkpoint_every", "cache_dir", "logger", "objective",
                "data.storage", "data.memory_share", "data.workers")


# Module paths that moved since aetl 0.1, which wrote them into configs: a run's identity in
# last.pt, a target.pt's data config, the specs behind cache keys.
MOVED = {"aetl.domains.shape.": "aetl.data.framing.", "aetl.domains.": "aetl.data.domains."}


def respelled(obj: Any, moved: dict[str, str] = MOVED) -> Any:
    """obj (plain values) with every string that starts with a key of `moved` respelled by it."""
    if isinstance(obj, dict):
        return {k: respelled(v, moved) for k, v in obj.items()}
    if isinstance(obj, list):
        return [respelled(v, moved) for v in obj]
    if isinstance(obj, str):
        return next((new + obj[len(old):] for old, new in moved.items() if obj.startswith(old)), obj)
    return obj


def as_released(obj: Any) -> Any:
    """obj in aetl 0.1's module paths: what cache keys are computed on, so that the entries an
    earlier release wrote keep being found."""
    return respelled(obj, {new: old for old, new in reversed(MOVED.items())})


def identity(cfg: DictConfig) -> dict:
    """The resolved config minus NOT_IDENTITY: a run resumes only under the config it started with."""
    missing = missing_values(cfg)
    if missing:
        raise AetlError(needs_value(missing[0]))
    plain = OmegaConf.to_container(cfg, resolve=True)
    for dotted in NOT_IDENTITY:
        *parents, leaf = dotted.split(".")
        node = plain
        for key in parents:
            node = node.get(key, {})
        node.pop(leaf, None)
    return plain


def config_nodes(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, node) for every node below a DictConfig or ListConfig, unresolved."""
    found = []
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    for key in keys:
        child = node._get_node(key)
        dotted = f"{prefix}{key}" if isinstance(node, DictConfig) else f"{prefix.rstrip('.')}[{key}]"
        found.append((dotted, child))
        if isinstance(child, (DictConfig, ListConfig)):
            found.extend(config_nodes(child, f"{dotted}."))
    return found


def missing_values(cfg: DictConfig) -> list[str]:
    """The keys left at ??? (a value the user must give)."""
    return [key for key, node in config_nodes(cfg) if node._is_missing()]


def needs_value(key: str) -> str:
    return f"{key} needs a value (it is ??? in the config); add {key}=... to the command"


def differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The dotted keys where two plain configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def finished_run(root: Path) -> str:
    return f"{root} already holds a finished run; leave hydra.run.dir out (or choose a new dir) to start another"


def changed_config(root: Path, changed: list[str]) -> str:
    return (f"{root} was started with another config (it differs in {', '.join(changed[:5])}); resume it with "
            f"`aetl train resume={shlex.quote(str(root))}` or choose a new run dir")
