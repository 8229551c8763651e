"""The `aetl` command: `aetl <command> [Hydra overrides and flags]`."""

from __future__ import annotations

import difflib
import importlib
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

# Configs that Hydra plugins bring, and the aetl extra that installs each plugin.
PLUGINS = {"hydra/sweeper/optuna": "optuna", "hydra/launcher/joblib": "cluster",
           "hydra/launcher/submitit_local": "cluster", "hydra/launcher/submitit_slurm": "cluster"}

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
Set AETL_DEBUG=1 to see the traceback behind an error message.
"""


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        width = max(map(len, COMMANDS))
        print(USAGE.format(commands="\n".join(f"  {c:<{width}}  {d}" for c, d in COMMANDS.items())))
        return
    if args[0] in ("-V", "--version"):
        from aetl import __version__

        print(f"aetl {__version__}")
        return
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        sys.exit(f"aetl: unknown command {command!r}; choose one of {', '.join(COMMANDS)} (aetl --help)")
    if command == "report":
        from aetl.report import main as report_main

        sys.exit(report_main(rest))
    if command == "train":
        rest = resume_overrides(rest)
    rest = [expand_home(group_choice(arg)) for arg in rest]
    cfg = check_overrides(command, rest)
    if command == "train" and cfg is not None:
        check_run_dir(rest, cfg)
    module = importlib.import_module(f"aetl.{command}")
    sys.argv = [f"aetl {command}", *rest, *quiet_rank_overrides()]
    module.main()


def group_choice(arg: str) -> str:
    """`+experiment=X` -> `experiment=X`: experiment is in the defaults list (as null), where
    Hydra refuses a `+`; both the template's spelling and the appending one then work."""
    return arg[1:] if arg.startswith("+experiment=") else arg


def refuse(command: str, message: str) -> NoReturn:
    """Bad input found before Hydra runs: one line on stderr, exit status 2."""
    print(f"aetl {command}: {message}", file=sys.stderr)
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
    started = last_checkpoint(root).get("context", {}).get("overrides")
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
    from aetl.rundir import load_checkpoint

    try:
        return load_checkpoint(root / "checkpoints" / "last.pt")
    except AetlError:
        return {}


def check_run_dir(args: list[str], cfg: DictConfig) -> None:
    """Refuse, before Hydra writes into it, a hydra.run.dir that holds a finished run, or
    an interrupted one that another config started. (Rank 0 only: under torchrun the
    other ranks write elsewhere.)"""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from aetl.errors import AetlError
    from aetl.resume import changed_config, differences, finished_run, identity

    parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
    dirs = [str(o.value()) for o in parsed if o.key_or_group == "hydra.run.dir"]
    if not dirs or os.environ.get("RANK", "0") != "0":
        return
    root = Path(dirs[-1])
    if (root / "summary.json").is_file():
        refuse("train", finished_run(root))
    saved = last_checkpoint(root).get("identity")
    try:
        changed = differences(saved, identity(cfg)) if saved is not None else []
    except AetlError:
        return  # the job reports it
    if changed:
        refuse("train", changed_config(root, changed))


def check_overrides(command: str, args: list[str]) -> DictConfig | None:
    """Compose the config once before Hydra runs, so that an unknown option or a misspelled
    key is one line with the fix (Hydra's own report spans a screen) and nothing is
    written. A sweep is checked with its first value; Hydra's own settings (but for its
    search path), and commands with Hydra flags other than -m, are left to Hydra. Returns
    the composed config of a single run, else None."""
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in args):
        return None
    # an hparams_search preset sets hydra.mode=MULTIRUN itself
    multirun = any(a in ("-m", "--multirun") or a.startswith("hparams_search=") for a in args)
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, MissingConfigException

    from aetl.resume import missing_values, needs_value

    def fail(message: str) -> NoReturn:
        refuse(command, message)

    try:
        parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
    except HydraException as err:
        fail(f"cannot parse the overrides: {str(err).strip().splitlines()[0]}")
    plain = []
    for o in parsed:
        sweep = o.is_sweep_override()
        untried = sweep and (not o.is_discrete_sweep() or o.value_type.name == "GLOB_CHOICE_SWEEP")
        if sweep and not multirun and not o.is_hydra_override():
            fail(f"{o.input_line} is a sweep: add -m to run one job per value, or quote the value "
                 f"({o.key_or_group}='...') to pass it as one string")
        if o.key_or_group == "hydra.searchpath":  # where configs of the user's own are found
            plain.append(o.input_line)
        elif o.is_hydra_override() or untried:
            continue  # Hydra's own settings; sweeps with no first value to try (interval, glob)
        elif sweep:
            plain.append(f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}")
        else:
            plain.append(o.input_line)

    try:
        with initialize_config_module("aetl.configs", version_base="1.3"):
            cfg = compose(command, overrides=plain)
    except MissingConfigException as err:
        wanted = str(err.missing_cfg_file or "")
        if wanted in PLUGINS:
            fail(f'{wanted} comes from a Hydra plugin that is not installed: pip install "aetl[{PLUGINS[wanted]}]"')
        group, _, name = wanted.rpartition("/")
        options = sorted(err.options or [])
        if not options:
            fail(one_line(str(err)))
        fail(f"unknown {group} '{name}'{suggest(name, options)}; choose one of {', '.join(options)}")
    except HydraException as err:
        message = str(err).strip()
        key = re.match(r"Could not override '([^']+)'", message)
        if key and "not in struct" in f"{message} {err.__cause__}":
            name = key.group(1)
            others = [o for o in plain if not o.lstrip("+~").startswith(f"{name}=")]
            keys = config_keys(command, others)
            parent = name.rpartition(".")[0]
            siblings = [k for k in keys if k.rpartition(".")[0] == parent]  # the keys beside it, if any
            fail(f"{name} is not a config key{suggest(name, siblings or keys)}; "
                 f"`aetl {command} --cfg job` shows the keys, and +{name}=... adds a new one")
        fail(one_line(message))
    missing = missing_values(cfg)
    if missing:
        fail(needs_value(missing[0]))
    if command == "train":
        from aetl.errors import AetlError
        from aetl.objective import check_objective

        try:
            check_objective(cfg.objective)
        except AetlError as err:
            fail(str(err))
    return None if multirun else cfg


def one_line(message: str) -> str:
    """Hydra's message on one line, its hint ("To append to your config use +foo=1") kept;
    the config search path it lists after that is left out."""
    lines = message.strip().split("Config search path:")[0].splitlines()
    return " ".join(line.strip() for line in lines if line.strip())


def suggest(name: str, candidates: list[str]) -> str:
    """' (did you mean X?)' for the closest candidate (or one name is the start of), else ''."""
    close = difflib.get_close_matches(name, candidates, n=1) or [c for c in candidates if c.startswith(name)][:1]
    return f" (did you mean {close[0]}?)" if close else ""


def config_keys(command: str, overrides: list[str]) -> list[str]:
    """Every dotted key of the composed config (empty if it does not compose)."""
    from hydra import compose, initialize_config_module

    from aetl.resume import config_nodes

    try:
        with initialize_config_module("aetl.configs", version_base="1.3"):
            cfg = compose(command, overrides=overrides)
    except Exception:  # noqa: BLE001 - only a suggestion is lost
        return []
    return [key for key, _ in config_nodes(cfg)]


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
