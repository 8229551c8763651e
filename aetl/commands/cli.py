"""The `aetl` command: `aetl <command> [Hydra overrides and flags]`."""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from omegaconf import DictConfig

COMMANDS = {
    "train": "pretrain on S (or load pretrained=...), transfer to T with a strategy, evaluate, write the run dir",
    "stylize": "style transfer with a trained run's autoencoder: run=<run dir> [content=<img>] [style=<img>]",
    "augment": "latent-space data augmentation with a trained run's autoencoder: run=<run dir> [app.mode=...]",
    "report": "aggregate run dirs and sweeps into a mean ± std table (Markdown, CSV) and plots",
    "rank": "score candidate sources for a target before any transfer: which one to use, and whether it helps",
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
  aetl --version             (aetl's version)
  eval "$(aetl -sc install=bash)"   (tab completion in bash; zsh: install=zsh)
Set AETL_DEBUG=1 to see the traceback behind an error message.
"""


def main(argv: list[str] | None = None) -> None:
    try:
        _main(argv)
    except BrokenPipeError:  # `aetl --help | head -3`: the reader left early; no traceback, as any Unix tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (the exit's flush would fail again)
        sys.exit(1)


def _main(argv: list[str] | None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        width = max(map(len, COMMANDS))
        print(USAGE.format(commands="\n".join(f"  {c:<{width}}  {d}" for c, d in COMMANDS.items())))
        return
    if args[0] in ("-V", "--version"):
        from aetl import __version__

        print(f"aetl {__version__}")
        return
    if shell_request(args):
        return
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        sys.exit(f"aetl: unknown command {command!r}; choose one of {', '.join(COMMANDS)} (aetl --help)")
    if command != "report" and any(a in ("-h", "--help") for a in rest):
        from aetl.commands.shell import command_help

        print(command_help(command, [a for a in rest if a not in ("-h", "--help")]))
        return
    if command == "report":
        from aetl.commands.report import main as report_main

        sys.exit(report_main(rest))
    if command == "train":
        rest = resume_overrides(rest)
    rest = [expand_home(group_choice(arg)) for arg in rest]
    cfg = check_overrides(command, rest)
    if command == "train" and cfg is not None:
        check_run_dir(rest, cfg)
    check_output(command, rest)
    logging.raiseExceptions = False  # a full disk under run.log: the job's own one line says so, not a traceback
    module = importlib.import_module(f"aetl.commands.{command}")
    sys.argv = [f"aetl {command}", *rest, *quiet_rank_overrides()]
    module.main()


def shell_request(args: list[str]) -> bool:
    """Answer `-sc install=bash|zsh`, `-sc uninstall=...` and `-sc query=...` (tab completion),
    before or after a command's name: completion is for `aetl` and every command at once."""
    flags = ("-sc", "--shell-completion")
    at = next((i for i, a in enumerate(args) if a in flags), None)
    if at is None:
        return False
    from aetl.commands.shell import completion

    try:
        print(completion(args[at + 1] if at + 1 < len(args) else "", list(COMMANDS)))
    except ValueError as err:
        refuse(args[0] if args[0] in COMMANDS else "", str(err))
    return True


def group_choice(arg: str) -> str:
    """`+experiment=X` -> `experiment=X`: experiment is in the defaults list (as null), where
    Hydra refuses a `+`; both the template's spelling and the appending one then work."""
    return arg[1:] if arg.startswith("+experiment=") else arg


def refuse(command: str, message: str) -> NoReturn:
    """Bad input found before Hydra runs: one line on stderr, exit status 2."""
    print(f"aetl{' ' + command if command else ''}: {message}", file=sys.stderr)
    sys.exit(2)


def resume_overrides(args: list[str]) -> list[str]:
    """`resume=<dir>` -> the overrides that run started with (kept in its last.pt, else
    in .hydra/overrides.yaml), then the other args, then hydra.run.dir=<dir>."""
    import yaml

    given = [a for a in args if a.startswith("resume=")]
    if not given:
        return args
    if any(a in ("-m", "--multirun") for a in args):
        refuse("train", "resume= carries on one run; to resume a sweep, run it again with hydra.sweep.dir=<its dir>")
    root = Path(given[-1].split("=", 1)[1]).expanduser()
    started = last_checkpoint(root).get("run", {}).get("overrides")
    if started is None:
        saved = root / ".hydra" / "overrides.yaml"
        if not saved.is_file():
            refuse("train", f"resume={root} is not the dir of an aetl train run (it has no .hydra/overrides.yaml); "
                   "pass the run dir an interrupted run wrote")
        started = yaml.safe_load(saved.read_text()) or []
    rest = [a for a in args if not a.startswith("resume=")]
    return [*map(str, started), *rest, f"hydra.run.dir={hydra_value(str(root))}"]


def last_checkpoint(root: Path) -> dict:
    """The last.pt of a run dir ({} when there is none or it does not load)."""
    from aetl.errors import AetlError
    from aetl.infra.checkpoint import load_checkpoint

    try:
        return load_checkpoint(root / "checkpoints" / "last.pt")
    except AetlError:
        return {}


def check_run_dir(args: list[str], cfg: DictConfig) -> None:
    """Refuse, before Hydra writes into it, a hydra.run.dir that holds a finished run, that
    another process is running in, or that holds an interrupted run another config started;
    else hold it for this process. (Rank 0 only: under torchrun the other ranks write elsewhere.)"""
    from aetl.errors import AetlError
    from aetl.infra.lock import claim
    from aetl.infra.overrides import override_value
    from aetl.infra.runconfig import changed_config, differences, finished_run, identity

    given = override_value(args, "hydra.run.dir")
    if given is None or os.environ.get("RANK", "0") != "0":
        return
    root = Path(given)
    if (root / "summary.json").is_file():
        refuse("train", finished_run(root))
    try:
        claim(root)  # before Hydra writes into it: one process per run dir
    except AetlError as err:
        refuse("train", str(err))
    saved = last_checkpoint(root).get("identity")
    try:
        changed = differences(saved, identity(cfg)) if saved is not None else []
    except AetlError:
        return  # the job reports it
    if changed:
        refuse("train", changed_config(root, changed))


def check_output(command: str, args: list[str]) -> None:
    """Before Hydra writes: a single run holds its hydra.run.dir (one process per run dir; the
    job holds it on), and the place a run or sweep dir is made in must take a write."""
    from aetl.errors import AetlError
    from aetl.infra.lock import claim, writable
    from aetl.infra.overrides import is_multirun, override_value

    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in args) or os.environ.get("RANK", "0") != "0":
        return  # Hydra's flags (--cfg, --help) write nothing; ranks > 0 write nothing of their own
    multirun = is_multirun(args)
    setting = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = override_value(args, setting)
    try:
        if given is not None and not multirun:
            claim(given)
        else:
            writable(given or ".", f"choose a writable {setting}")  # (a timestamped dir is made below it)
    except AetlError as err:
        refuse(command, str(err))


def check_overrides(command: str, args: list[str]) -> DictConfig | None:
    """aetl.infra.overrides.check before Hydra runs: a bad override or value is one line and exit
    status 2, and nothing is written. Returns the composed config of a single run, else None."""
    from aetl.errors import AetlError
    from aetl.infra.overrides import check

    try:
        return check(command, args, importlib.import_module(f"aetl.commands.{command}").Config)
    except AetlError as err:
        refuse(command, str(err))


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
    return f"{match.group(1)}={hydra_value(os.path.expanduser(match.group(2)))}"


def hydra_value(path: str) -> str:
    """A path as an override value: as it is when Hydra's grammar takes it, else quoted."""
    if re.fullmatch(r"[\w/.\-]+", path):
        return path
    return "'" + path.replace("'", "\\'") + "'"
