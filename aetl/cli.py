"""The `aetl` command: `aetl <command> [Hydra overrides and flags]`."""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path

COMMANDS = {
    "train": "pretrain on S (or load pretrained=...), transfer to T with a strategy, evaluate, write the run dir",
    "stylize": "style transfer with a trained run's autoencoder: run=<run dir> [content=<img>] [style=<img>]",
    "augment": "latent-space data augmentation with a trained run's autoencoder: run=<run dir> [app.mode=...]",
    "report": "aggregate run dirs and sweeps into a mean ± std table (Markdown, CSV) and plots",
}

USAGE = """usage: aetl <command> [overrides] [hydra flags]

Transfer learning with autoencoders: pretrain on a source image domain, transfer
to a target domain with a strategy, and measure whether it helped.

commands:
{commands}

Every command takes Hydra overrides and flags, e.g.
  aetl train strategy=scratch data.target.labels_per_class=1
  aetl train -m strategy=scratch,finetune seed=0,1,2
  aetl train --help          (config groups and options)
  aetl train --cfg job       (print the composed config)
Set AETL_DEBUG=1 to see the traceback behind an error message.
"""


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        width = max(map(len, COMMANDS))
        print(USAGE.format(commands="\n".join(f"  {c:<{width}}  {d}" for c, d in COMMANDS.items())))
        return
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        sys.exit(f"aetl: unknown command {command!r}; choose one of {', '.join(COMMANDS)} (aetl --help)")
    if command == "report":
        from aetl.report import main as report_main

        sys.exit(report_main(rest))
    rest = [expand_home(arg) for arg in rest]
    if command == "train":
        rest = resume_overrides(rest)
    module = importlib.import_module(f"aetl.{command}")
    sys.argv = [f"aetl {command}", *rest, *quiet_rank_overrides()]
    module.main()


def resume_overrides(args: list[str]) -> list[str]:
    """`resume=<dir>` -> the overrides that run started with, then the other args, then
    hydra.run.dir=<dir>. Refuses, before Hydra writes into it, a run dir that holds a
    finished run or one that another set of overrides started."""
    import yaml

    given = [a for a in args if a.startswith("resume=")]
    rest = [a for a in args if not a.startswith("resume=")]
    dirs = [a.split("=", 1)[1] for a in rest if a.startswith("hydra.run.dir=")]
    if given:
        root = Path(given[-1].split("=", 1)[1]).expanduser()
        saved = root / ".hydra" / "overrides.yaml"
        if not saved.is_file():
            sys.exit(f"aetl train: resume={root} is not the dir of an aetl train run (it has no "
                     ".hydra/overrides.yaml); pass the run dir an interrupted run wrote")
        started = [str(o) for o in yaml.safe_load(saved.read_text()) or []]
        rest, dirs = [*started, *rest, f"hydra.run.dir={root}"], [str(root)]
    for root in map(Path, dirs[-1:]):
        if (root / "summary.json").is_file():
            sys.exit(f"aetl train: {root} already holds a finished run; leave hydra.run.dir out (or choose "
                     "a new dir) to start another")
        saved = root / ".hydra" / "overrides.yaml"
        if saved.is_file() and (root / "checkpoints" / "last.pt").is_file():
            changed = set(identity_overrides(rest)) ^ set(identity_overrides(yaml.safe_load(saved.read_text()) or []))
            if changed:
                sys.exit(f"aetl train: {root} was started with other overrides (they differ in "
                         f"{', '.join(sorted(changed))}); resume it with `aetl train resume={root}` "
                         "or choose a new run dir")
    return rest


def identity_overrides(overrides: list[str]) -> list[str]:
    """The overrides that change what a run computes (not hydra's, not how it runs)."""
    from aetl.resume import NOT_IDENTITY

    return [str(o) for o in overrides if not str(o).startswith(("hydra.", "hydra/", "-"))
            and str(o).split("=", 1)[0].lstrip("+~") not in NOT_IDENTITY]


def quiet_rank_overrides() -> list[str]:
    """Under torchrun only rank 0 makes and writes the run dir; the other ranks get a
    throwaway Hydra dir and log warnings only."""
    if int(os.environ.get("RANK", "0")) == 0:
        return []
    import atexit
    import shutil
    import tempfile

    scratch = tempfile.mkdtemp(prefix="aetl-rank")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return ["hydra.output_subdir=null", f"hydra.run.dir={scratch}",
            "hydra.job_logging.root.level=WARNING"]


def expand_home(arg: str) -> str:
    """`key=~/path` -> `key=/home/me/path`: the shell leaves a `~` after `key=` alone,
    and Hydra's override grammar cannot parse it."""
    match = re.fullmatch(r"([\w.@/+~-]+)=(~[^,\[\]{}]*)", arg)
    if not match:
        return arg
    path = os.path.expanduser(match.group(2))
    return f"{match.group(1)}={path}" if re.fullmatch(r"[\w/.\-]+", path) else f"{match.group(1)}='{path}'"
