"""`aetl report DIR...`: a mean ± std table over seeds, the gain over scratch, and plots.

Every directory under DIR that holds `.hydra/` is a run (aetl/infra/jobs.py reads them and
checks every field the table uses); runs of `aetl train` and `aetl augment` with a usable
summary.json are grouped and averaged, every other run is listed under the table with what it
is or what is wrong with it. Nothing is silently dropped. Every output is made in memory
first and then moved into place, so a report is written whole or not at all.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable, NamedTuple

from aetl.errors import AetlError
from aetl.infra.jobs import FIGURES, Job, find_jobs

# Overrides that are columns of the table (or vary within a group) rather than a variant.
COLUMNS = {"run", "seed", "strategy", "data.target.labels_per_class", "data.target.n_train", "data", "data/source",
           "data/target", "trainer.transfer.steps", "trainer.pretrain.cls_weight", "experiment"}
# Run settings: how a job runs (where, how fast, what it logs, how often it saves), never what it
# computes, so runs that differ only in them are one group (tests/test_report.py checks each is a key).
HOW = {"trainer.progress", "trainer.threads", "trainer.device", "trainer.checkpoint_every", "cache_dir", "logger",
       "data.storage", "data.workers", "data.memory_share", "hydra/launcher", "objective.key",
       "objective.direction"}
IDENTITY = ("source", "target", "n_target_train", "labels_per_class", "source_labels", "strategy", "variant",
            "transfer_steps")  # a row's identity in report.csv and report_curves.csv


class GroupKey(NamedTuple):
    """What a row of the table stands for: runs that differ only in their seed."""

    source: str
    target: str
    n_target_train: int
    labels_per_class: int
    source_labels: bool
    strategy: str
    transfer_steps: int | None
    variant: tuple[str, ...]  # the other overrides, sorted

    @property
    def setting(self) -> tuple[str, ...]:
        """The variant without the strategy's own settings: what its scratch baseline must share."""
        return tuple(o for o in self.variant if not o.lstrip("+~").startswith("strategy."))


@dataclass
class Group:
    """Runs that differ only in their seed. Runs of one seed (the same job run twice) are averaged
    first, so each seed counts once in the mean and the std."""

    key: GroupKey
    jobs: list[Job] = field(default_factory=list)

    @cached_property
    def curve(self) -> dict[int, tuple[float, float]]:
        """step -> mean and std over seeds of the validation MSE (computed once: for the steps
        scratch needs to match, and for the plot)."""
        return val_curve(self)

    @property
    def seeds(self) -> int:
        return len({j.summary["seed"] for j in self.jobs})

    @property
    def used_source(self) -> bool:
        """Whether the runs read a source model (for the strategy, or to choose the target's fit)."""
        return any(j.summary.get("source_model", "?") is not None for j in self.jobs)

    def values(self, name: str) -> list[float]:
        """The figure per seed (the mean of that seed's runs), for the seeds that have it."""
        by_seed: dict[int, list[float]] = defaultdict(list)
        for j in self.jobs:
            if j.summary.get(name) is not None:
                by_seed[j.summary["seed"]].append(j.summary[name])
        return [statistics.fmean(v) for _, v in sorted(by_seed.items())]

    def mean(self, name: str) -> float:
        v = self.values(name)
        return statistics.fmean(v) if v else math.nan

    def std(self, name: str) -> float:
        v = self.values(name)
        return statistics.stdev(v) if len(v) > 1 else 0.0


def variant(job: Job) -> tuple[str, ...]:
    """The job's overrides that are not table columns or run settings: what else sets this group
    apart (Mf's settings only where the job used Mf: `scratch` with trainer.pretrain.seed=0 is scratch)."""
    kept = [o for o in job.overrides if o.split("=")[0].lstrip("+~") not in COLUMNS | HOW
            and not o.startswith("hydra")]
    if job.summary.get("source_model", "?") is None:
        kept = list(without_mf(kept))
    if job.summary.get("augment_mode"):  # an aetl augment run: its mode is a variant
        kept = [f"augment={job.summary['augment_mode']}", *(o for o in kept if not o.startswith("app.mode="))]
    return tuple(sorted(kept))


def without_mf(setting: Iterable[str]) -> tuple[str, ...]:
    """The overrides that do not choose Mf (trainer.pretrain.*, pretrained=)."""
    return tuple(o for o in setting if not o.lstrip("+~").startswith(("trainer.pretrain.", "pretrained=")))


def group_jobs(jobs: list[Job]) -> list[Group]:
    groups: dict[GroupKey, Group] = {}
    for job in jobs:
        if job.summary is None:
            continue
        s = job.summary
        key = GroupKey(s["source"], s["target"], s["n_target_train"], s["labels_per_class"],
                       bool(s.get("source_labels")), s["strategy"], s.get("transfer_steps"), variant(job))
        groups.setdefault(key, Group(key)).jobs.append(job)
    return [groups[k] for k in sorted(groups, key=lambda k: tuple(" ".join(x) if isinstance(x, tuple) else str(x)
                                                             for x in k))]


def scratch_runs(group: Group, groups: list[Group]) -> list[Group]:
    """The scratch groups of the same pair and target images with the overrides beside the
    strategy's own equal. A scratch run that used no source model at all (a target with a
    fixed fit) stands for every source."""
    k = group.key
    return [g for g in groups if g.key.strategy == "scratch"
            and (g.key.setting == k.setting if g.used_source else g.key.setting == without_mf(k.setting))
            and (g.key.source == k.source or not g.used_source)
            and (g.key.target, g.key.n_target_train) == (k.target, k.n_target_train)]


def scratch_for(group: Group, groups: list[Group]) -> Group | None:
    """The scratch baseline with every other setting equal (also labels per class and target
    steps), or None when the runs hold no such scratch."""
    k = group.key
    return next((g for g in scratch_runs(group, groups)
                 if (g.key.labels_per_class, g.key.transfer_steps) == (k.labels_per_class, k.transfer_steps)), None)


def val_curve(group: Group) -> dict[int, tuple[float, float]]:
    """Mean and std over seeds of the validation MSE at each logged target step (a seed's runs averaged first)."""
    points: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for job in group.jobs:
        kept = job.summary.get("chosen")  # auto: the curve of the model it kept
        for rec in job.records:
            model, _, phase = rec["phase"].rpartition("/")
            if phase.startswith("transfer") and model == (kept or "") and rec["step"] is not None \
                    and rec.get("val_mse") is not None:
                points[rec["step"]][job.summary["seed"]].append(rec["val_mse"])
    curve = {}
    for step, by_seed in sorted(points.items()):
        per_seed = [statistics.fmean(v) for v in by_seed.values()]
        curve[step] = (statistics.fmean(per_seed), statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0)
    return curve


def steps_to_match(group: Group, groups: list[Group]) -> str:
    """Target steps the longest scratch run at this pair and image budget needs to reach
    the group's final validation MSE ('>N' when it never does within its N steps)."""
    scratch = scratch_runs(group, groups)
    if not scratch or group.key.strategy == "scratch":
        return ""
    curve = max(scratch, key=lambda g: g.key.transfer_steps or 0).curve
    goal = group.mean("target_val_mse")
    if not curve or math.isnan(goal):
        return ""
    reached = [step for step, (mse, _) in curve.items() if mse <= goal]
    return str(reached[0]) if reached else f">{max(curve)}"


def rows(groups: list[Group]) -> list[dict]:
    table = []
    for g in groups:
        k = g.key
        strategy = k.strategy
        row = {"source": k.source, "target": k.target, "n_target_train": k.n_target_train,
               "labels_per_class": k.labels_per_class, "source_labels": k.source_labels, "strategy": strategy,
               "variant": " ".join(k.variant), "transfer_steps": k.transfer_steps, "seeds": g.seeds,
               "runs": len(g.jobs)}
        for name in FIGURES:
            row[f"{name}_mean"], row[f"{name}_std"] = g.mean(name), g.std(name)
        base = scratch_for(g, groups)
        if base is not None and strategy != "scratch":
            row["mse_gain_pct"] = 100 * (base.mean("target_mse") - g.mean("target_mse")) / base.mean("target_mse")
            row["acc_gain_pts"] = 100 * (g.mean("target_acc") - base.mean("target_acc"))
        elif strategy != "scratch":
            row["no_gain_because"] = "no scratch run with the same pair, budget, steps and settings"
        row["scratch_steps_to_match"] = steps_to_match(g, groups)
        row["target_fit_chosen"] = fit_per_seed(g)
        table.append(row)
    return table


def fit_per_seed(group: Group) -> str:
    """The target fit `fit: auto` chose in each of the group's runs ('' where the config fixed it)."""
    chosen = {j.summary.get("seed"): _fit_label(j.summary) for j in group.jobs if j.summary.get("target_fit_scores")}
    if len(set(chosen.values())) == 1:
        return f"{next(iter(chosen.values()))} (every seed)"
    return "; ".join(f"seed {seed}: {label}" for seed, label in sorted(chosen.items(), key=lambda kv: str(kv[0])))


def _fit_label(s: dict) -> str:
    """Fit.label() from summary keys (aetl.data.framing would import torch into the report)."""
    where = "resize" if s["target_fit"] == "resize" else f"{s['target_fit']} m{s.get('target_margin')}"
    return where if s.get("target_tone", "keep") == "keep" else f"{where} {s['target_tone']}"


def curve_records(groups: list[Group], table: list[dict]) -> list[dict]:
    """Each group's validation curve with the row's identity (augmentation runs have none)."""
    return [{**{k: row[k] for k in IDENTITY}, "seeds": row["seeds"], "points": g.curve}
            for g, row in zip(groups, table) if g.curve and math.isnan(row["target_acc_augmented_mean"])]


def markdown(table: list[dict], jobs: list[Job]) -> str:
    augmented = any(not math.isnan(r["target_acc_augmented_mean"]) for r in table)
    head = ["pair", "target imgs", "labels/class", "source labels", "strategy", "steps", "seeds",
            "target_mse", "target_psnr", "target_acc (%)", *(["acc with augmentation (%)"] if augmented else []),
            "MSE gain vs scratch", "acc gain (pts)", "scratch steps to match", "pretrain_s", "transfer_s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        name = r["strategy"] + (f" ({r['variant']})" if r["variant"] else "")
        seeds = str(r["seeds"]) + (f" ({r['runs']} runs)" if r["runs"] != r["seeds"] else "")
        cells = [f"{r['source']} → {r['target']}", r["n_target_train"], r["labels_per_class"],
                 "yes" if r["source_labels"] else "no", name, r["transfer_steps"], seeds,
                 _pm(r, "target_mse", ".5f"), _pm(r, "target_psnr", ".2f"), _pm(r, "target_acc", ".1f", 100),
                 *([_pm(r, "target_acc_augmented", ".1f", 100)] if augmented else []), _signed(r.get("mse_gain_pct"), "%"), _signed(r.get("acc_gain_pts"), ""),
                 r["scratch_steps_to_match"], _pm(r, "pretrain_s", ".1f"), _pm(r, "transfer_s", ".1f")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines + _notes(table, jobs)) + "\n"


def _notes(table: list[dict], jobs: list[Job]) -> list[str]:
    """What the table leaves out, and why: gains without a baseline, runs it cannot use, other commands' runs."""
    lines = []
    fitted = [r for r in table if r["target_fit_chosen"]]
    if fitted:
        lines += ["", "Target fit chosen by `fit: auto`:", ""]
        lines += [f"- {r['source']} → {r['target']}, {r['strategy']}" + (f" ({r['variant']})" if r["variant"] else "")
                  + f": {r['target_fit_chosen']}" for r in fitted]
    if any(r["runs"] != r["seeds"] for r in table):
        lines += ["", "\"N (M runs)\": M runs of N seeds; the runs of one seed are averaged first, so each seed "
                  "counts once in the mean and the std."]
    blank = [r for r in table if r.get("no_gain_because")]
    if blank:
        lines += ["", "No gain is shown where the runs hold no `scratch` with every other setting equal "
                  "(pair, target images, labels per class, target steps and the other overrides):", ""]
        lines += [f"- {r['source']} → {r['target']}, {r['n_target_train']} images, {r['labels_per_class']} "
                  f"labels/class, {r['strategy']}" + (f" ({r['variant']})" if r["variant"] else "") for r in blank]
    if not table and any(j.tabulated for j in jobs):
        lines += ["", "No run finished: there is nothing to tabulate or plot."]
    elif not table:
        lines += ["", "No aetl train or aetl augment run here: there is nothing to tabulate or plot."]
    sections = [("Runs not in the table:", [j for j in jobs if j.tabulated and j.summary is None]),
                ("Runs of other aetl commands (nothing to average):", [j for j in jobs if not j.tabulated])]
    for title, listed in sections:
        if listed:
            lines += ["", title, ""]
            lines += [f"- `{j.path}` ({' '.join(j.overrides) or 'no overrides'}): {j.problem}" for j in listed]
    damaged = [j for j in jobs if j.damage]
    if damaged:
        lines += ["", "Runs in the table with damaged files:", ""]
        lines += [f"- `{j.path}`: {'; '.join(dict.fromkeys(j.damage))}" for j in damaged]
    return lines


def _pm(row: dict, name: str, fmt: str, scale: float = 1) -> str:
    mean, std = row[f"{name}_mean"], row[f"{name}_std"]
    if math.isnan(mean):
        return "n/a"
    return f"{mean * scale:{fmt}} ± {std * scale:{fmt}}"


def _signed(value: float | None, unit: str) -> str:
    return "" if value is None or math.isnan(value) else f"{value:+.1f}{unit}"


def table_csv(table: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for r in table for k in r)))
    writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue()


def curves_csv(curves: list[dict]) -> str:
    """One line per curve and logged step: the row's identity, the step, the mean and std over seeds."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*IDENTITY, "seeds", "step", "val_mse_mean", "val_mse_std"])
    for c in curves:
        for step, (mean, std) in c["points"].items():
            writer.writerow([*(c[k] for k in IDENTITY), c["seeds"], step, mean, std])
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aetl report", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run dirs and multirun sweep dirs")
    parser.add_argument("--out", type=Path, help="where report.md, report.csv and the plots go (default: the first DIR)")
    args = parser.parse_args(argv)
    missing = [d for d in args.dirs if not d.is_dir()]
    if missing:
        print(f"aetl report: error: {missing[0]} is not a directory; pass run or sweep dirs", file=sys.stderr)
        return 2
    jobs = find_jobs(args.dirs)
    if not jobs:
        print(f"aetl report: error: no runs under {', '.join(map(str, args.dirs))} (looked for .hydra/ folders)",
              file=sys.stderr)
        return 2
    out = args.out or args.dirs[0]
    outputs = build(jobs)
    try:
        write_all(outputs, out)
    except AetlError as err:
        print(f"aetl report: error: {err}", file=sys.stderr)
        return 2
    print(outputs["report.md"].decode(), end="")
    print(f"aetl report: {sum(j.summary is not None for j in jobs)} of {len(jobs)} runs in the table; wrote "
          f"{', '.join(outputs)} to {out}", file=sys.stderr)
    return 0


def build(jobs: list[Job]) -> dict[str, bytes]:
    """Every file of the report, in memory: report.md, report.csv, report_curves.csv and the figures."""
    from aetl.infra.plots import render

    groups = group_jobs(jobs)
    table = rows(groups)
    curves = curve_records(groups, table)
    return {"report.md": markdown(table, jobs).encode(), "report.csv": table_csv(table).encode(),
            "report_curves.csv": curves_csv(curves).encode(), **render(table, curves)}


def write_all(outputs: dict[str, bytes], out: Path) -> None:
    """Every file to a temporary name first, then all moved into place; a figure an earlier report
    drew that this one does not (nothing to draw) is removed, so no picture outlives its table.
    Files get the umask's permissions, as every tool's do."""
    from aetl.infra.plots import FIGURES as PLOTS
    from aetl.infra.plots import RETIRED
    from aetl.infra.rundir import stage

    staged: dict[Path, Path] = {}
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, data in outputs.items():
            staged[stage(out / name, lambda f, data=data: f.write(data))] = out / name
        for temp, path in staged.items():
            os.replace(temp, path)
        for name in (*PLOTS, *RETIRED):
            if name not in outputs:
                (out / name).unlink(missing_ok=True)
    except OSError as err:
        raise AetlError(f"cannot write to {err.filename or out} ({err.strerror or err}); choose a writable --out "
                        "(nothing of the report was written)") from None
    finally:
        for temp in staged:
            temp.unlink(missing_ok=True)
