"""Which fit `fit: auto` chooses for each seed, without training: for every folder, each seed's
source model (Mf) scores the candidates (aetl.data.fit) on the images the rule in force uses,
and once more with the first seed's Mf for every seed: what `aetl train` does now (the Mf of
data.split_seed, 0, or of trainer.pretrain.seed, chooses for every seed; aetl.strategies.pretrain). `--before` also applies the rule
before issue 23 (each seed's own training images, up to 512; candidates within 5% or two
standard errors of the lowest score tie, and a tie goes to the simplest) for comparison.

    python scripts/fit_seeds.py --mf run/0/checkpoints/source.pt --mf run/1/checkpoints/source.pt \\
        --mf run/2/checkpoints/source.pt --before /tmp/sheet_d28 /tmp/sheet_d8

Mf's checkpoints are those of `aetl train` runs on mnist -> folder with seeds 0, 1, 2 (in that
order); the folders are mapped into 1x28x28 frames, with the default data settings.
"""

from __future__ import annotations

import argparse

import torch
from hydra import compose, initialize_config_module

from aetl.data.fit import MAPPED_AT_MOST, MAX_IMAGES, candidates, image_errors, spread, unbeaten_by_evidence
from aetl.data.framing import Levels, to_channels
from aetl.data.pair import load_source, load_target
from aetl.infra.checkpoint import load_checkpoint
from aetl.models import AutoEncoder, rebuild
from aetl.models.weights import load_weights

SHAPE = [1, 28, 28]


def source_model(path: str) -> AutoEncoder:
    state = load_checkpoint(path)
    head = state["model"]["head.weight"].shape[0] if "head.weight" in state["model"] else 0
    model = rebuild({"model_cfg": state["model_cfg"], "in_shape": SHAPE, "n_classes": head})
    load_weights(model, state["model"], path)
    return model.eval()


def choice(mf: AutoEncoder, x: torch.Tensor, spec, reference: Levels, before: bool = False) -> str:
    """The label of the candidate the rule in force (or the rule before, `before`) chooses for x."""
    options = candidates(spec, SHAPE[1], Levels.of(to_channels(x, 1)), reference)
    errors = torch.stack([image_errors(mf, x, SHAPE[1], 1, fit) for fit in options])
    scores = errors.sum(1) / spread(x, 1)
    if scores.min() > MAPPED_AT_MOST:
        return options[0].label()
    if not before:
        return options[unbeaten_by_evidence(errors)[0]].label()
    diff = errors - errors[scores.argmin()]
    tied = diff.mean(1) <= torch.maximum(2 * diff.std(1) / len(x) ** 0.5, 0.05 * errors[scores.argmin()].mean())
    return options[int(torch.nonzero(tied)[0])].label()


def folder(root: str, mfs: list[AutoEncoder], before: bool) -> list[str]:
    """Lines saying what each seed's Mf chose for the folder at root, and the first Mf for every seed."""
    with initialize_config_module("aetl.configs", version_base="1.3"):
        cfg = compose("train", overrides=["data/target=folder", f"data.target.root={root}",
                                          "data.target.labels_per_class=1"])
    reference = load_source(cfg.data, torch.device("cpu")).levels()
    targets = [load_target(cfg.data, seed) for seed in range(len(mfs))]
    shared = targets[0].unlabelled_images(MAX_IMAGES)  # (the same for every seed: aetl.data.pair)
    rows = {"each seed's own Mf (until issue 25)": [choice(mf, shared, cfg.data.target, reference) for mf in mfs],
            "seed 0's Mf for all (in force)": [choice(mfs[0], shared, cfg.data.target, reference)] * len(mfs)}
    if before:
        rows["before, own Mf"] = [choice(mf, t.train_images(512), cfg.data.target, reference, True)
                                  for mf, t in zip(mfs, targets)]
        rows["before, seed 0's Mf"] = [choice(mfs[0], t.train_images(512), cfg.data.target, reference, True)
                                       for t in targets]
    return [f"{root}"] + [f"  {name}: {' / '.join(got)}" + ("  (the same)" if len(set(got)) == 1 else "")
                          for name, got in rows.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="image folders (one sub-folder per class)")
    parser.add_argument("--mf", action="append", required=True, help="source.pt of seed 0, 1, ... in order")
    parser.add_argument("--before", action="store_true", help="also the rule before issue 23")
    args = parser.parse_args()
    torch.set_num_threads(1)
    mfs = [source_model(path) for path in args.mf]
    for root in args.folders:
        print("\n".join(folder(root, mfs, args.before)), flush=True)


if __name__ == "__main__":
    main()
