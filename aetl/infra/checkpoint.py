"""Every .pt file aetl writes, and the one function that reads any of them.

A checkpoint is a plain dict of tensors and plain values, written through a temp file and
os.replace (aetl.infra.rundir: a kill leaves the old file or the new one) and read with
torch.load(weights_only=True), so a crafted file can run no code. Every one carries
- `kind`: `source` (Mf: a run's source.pt, a source-model cache entry), `target` (a run's
  transferred model), `candidate` (strategy=auto: each candidate's model) or `last` (where an
  interrupted run resumes: aetl.infra.resume);
- `format`: FORMAT. Files an older aetl wrote are upgraded when read, so old run dirs and
  caches keep loading (format 1: aetl 0.1, before checkpoints said their kind);
- `model`: the state dict, and `recipe`: how to rebuild the model without the run's config
  (aetl.models.rebuild; None only in a target.pt older than recipes).
What else a kind holds is written where it is made (`pack`): a source's name, classes and
levels; a target's run record, data config and fit; last.pt's run and loop state.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from aetl.errors import AetlError
from aetl.infra.runconfig import respelled
from aetl.infra.schema import ImageSize, Spec, declarations, spec_of

FORMAT = 2
KINDS = ("source", "target", "candidate", "last")
LOOP_KEYS = ("phase", "first_step", "step", "optimizer", "generator", "perm", "running", "since_log", "rng")


def pack(kind: str, model: dict[str, torch.Tensor], recipe: dict | None, **fields: Any) -> dict:
    """A checkpoint of `kind` for the state dict `model` built by `recipe`, with the kind's fields."""
    assert kind in KINDS, kind
    return {"kind": kind, "format": FORMAT, "model": model, "recipe": recipe, **fields}


def load_checkpoint(path: str | Path, kind: str | None = None) -> dict:
    """Any checkpoint aetl wrote, in the current format; with `kind`, only one of that kind.
    A missing, truncated, unsafe or foreign file, one of another kind, or one whose weights
    are not finite (a diverged run's) is an AetlError."""
    path = Path(path).expanduser()
    state = _read(path)
    model = state.get("model") if isinstance(state, dict) else None
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise AetlError(f"checkpoint {path} has no 'model' state dict; use a checkpoint written by aetl")
    broken = [k for k, v in model.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise AetlError(f"checkpoint {path} holds weights that are nan or inf ({', '.join(broken[:3])}"
                        f"{', ...' if len(broken) > 3 else ''}): the run that wrote it diverged; use another "
                        "checkpoint, or train again with a lower learning rate")
    state = upgrade(state, path)
    check_recipe(state.get("recipe"), path)
    if kind is not None and state["kind"] != kind:
        raise AetlError(f"{path} is a {state['kind']} checkpoint, not a {kind} one; pass the {kind} checkpoint "
                        f"({_NAMES[kind]})")
    return state


DAMAGED = "the file is damaged or not a checkpoint aetl wrote"
SHAPE = {"channels": Spec("choice", choices=(1, 3)), "image size": spec_of(ImageSize)}
CLASSES = Spec("int", lo=0, hi=65536)
FEATURES = Spec("int", lo=1, hi=3 * 4096 * 4096)


def check_recipe(recipe: Any, path: Path) -> None:
    """Every size in a recipe, checked by type and range before a model is built from it: the
    model config's values by the ranges the model's signature declares (aetl.infra.schema), the
    input shape by data.channels' and data.image_size's, the classes by CLASSES."""
    if recipe is None:
        return
    if not isinstance(recipe, dict):
        raise AetlError(f"{path}: its recipe is {type(recipe).__name__}, not a mapping; {DAMAGED}")
    if "class" in recipe:  # a composite model: its parts' recipes
        for part in recipe.values():
            if isinstance(part, dict):
                check_recipe(part, path)
        return
    cfg, shape, n_classes = recipe.get("model_cfg"), recipe.get("in_shape"), recipe.get("n_classes")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("_target_"), str):
        raise AetlError(f"{path}: its recipe names no model (model_cfg._target_); {DAMAGED}")
    declared = declarations(cfg["_target_"]) if cfg["_target_"].startswith("aetl.") else {}  # imports only aetl
    checks = [(f"model.{k}", v, spec_of(declared[k])) for k, v in cfg.items() if k in declared]
    if isinstance(shape, list) and len(shape) == 1:  # a part fed with codes (concat's decoder)
        checks += [("in_shape features", shape[0], FEATURES)]
    elif isinstance(shape, list) and len(shape) == 3:
        checks += [("in_shape channels", shape[0], SHAPE["channels"]),
                   ("in_shape height", shape[1], SHAPE["image size"]), ("in_shape width", shape[2], SHAPE["image size"])]
    else:
        raise AetlError(f"{path}: its recipe's in_shape is {shape!r}, not [channels, height, width]; {DAMAGED}")
    checks.append(("n_classes", n_classes, CLASSES))
    for key, value, spec in checks:
        need = spec.problem(value) if spec is not None else None
        if need:
            raise AetlError(f"{path}: its recipe's {key} must be {need}, got {value!r}; {DAMAGED}")


_NAMES = {"source": "a run's checkpoints/source.pt or a source-model cache entry",
          "target": "a run's checkpoints/target.pt", "candidate": "checkpoints/candidate_<name>.pt",
          "last": "a run's checkpoints/last.pt"}


def _read(path: Path) -> Any:
    """torch.load(weights_only=True) of a file that must be a torch.save archive."""
    if not path.is_file():
        raise AetlError(f"checkpoint {path} does not exist; pass the path of a .pt file a run wrote")
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError as err:
        raise AetlError(f"cannot read checkpoint {path} ({err.strerror or err}); fix its permissions") from None
    if head != b"PK" and head[:1] != b"\x80":  # torch.save's zip archive, or its older pickle format
        raise AetlError(f"{path} is not a PyTorch checkpoint (torch.save writes a zip archive, and this file is "
                        "not one); pass a .pt file a run wrote")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unsafe content"
        raise AetlError(f"refusing to load {path}: it holds more than tensors and plain values ({first}); "
                        "use a checkpoint written by aetl") from None
    except Exception as err:  # noqa: BLE001 - whatever a damaged archive raises, it is one line
        raise AetlError(f"checkpoint {path} is truncated or corrupt ({type(err).__name__}); "
                        "use another checkpoint or rerun the job that wrote it") from None


def upgrade(state: dict, path: Path) -> dict:
    """A checkpoint in the current format (one an older aetl wrote, rewritten in memory)."""
    version = state.get("format", 1)
    if not isinstance(version, int) or version > FORMAT:
        raise AetlError(f"{path} was written by a newer aetl (checkpoint format {version}, this aetl reads up to "
                        f"{FORMAT}); upgrade aetl to use it")
    if version == 1:
        state = _from_format_1(state)
    if state.get("kind") not in KINDS:
        raise AetlError(f"{path} is not a checkpoint aetl wrote (its kind is {state.get('kind')!r}); pass a .pt "
                        "file a run wrote")
    return state


def _from_format_1(state: dict) -> dict:
    """aetl 0.1: no kind, no format; last.pt flat; source.pt and cache entries without a recipe."""
    rest = dict(state)
    if "identity" in rest:  # last.pt: the loop's state in one place, the pipeline's context as the run's
        loop = {k: rest.pop(k, None) for k in LOOP_KEYS}
        run = rest.pop("context", {})
        return {**rest, "kind": "last", "format": FORMAT, "recipe": None, "run": run, "loop": loop,
                "identity": respelled(rest["identity"])}
    if "run" in rest or "strategy" in rest:
        data = {"data": respelled(rest["data"])} if "data" in rest else {}
        return {"recipe": None, **rest, **data, "kind": "target", "format": FORMAT}
    if "model_cfg" in rest:  # source.pt, a cache entry
        head = rest["model"].get("head.weight")
        recipe = {"model_cfg": rest["model_cfg"], "in_shape": list(rest.get("shape", [])),
                  "n_classes": int(head.shape[0]) if head is not None else 0}
        return {**rest, "kind": "source", "format": FORMAT, "recipe": recipe}
    return {**rest, "kind": "candidate", "format": FORMAT, "recipe": None}
