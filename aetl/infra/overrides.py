"""The command line's overrides, checked before Hydra runs (`aetl/commands/cli.py` calls `check`).

Hydra reports a bad override only once it runs: as a screen of text, or as a traceback from
deep in the job for a value of the wrong type. Here the overrides are parsed and composed
once, so that an unknown option, a misspelled key, an unparsable override or a value that
aetl.infra.schema refuses is one AetlError line with the fix, and nothing is written. Every value
of a sweep is checked, and every option it names must exist; the config is composed with
the first value of each.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Any

from aetl.errors import AetlError

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override
    from omegaconf import DictConfig

# Configs that Hydra plugins bring, and the aetl extra that installs each plugin.
PLUGINS = {"hydra/sweeper/optuna": "optuna", "hydra/launcher/joblib": "cluster",
           "hydra/launcher/submitit_local": "cluster", "hydra/launcher/submitit_slurm": "cluster"}


def check(command: str, args: list[str], root: type) -> DictConfig | None:
    """Check the overrides of `aetl <command>`, whose config `root` declares (Hydra flags other
    than -m are left to Hydra). Returns the composed config of a single run (without Hydra's
    settings), else None."""
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in args):
        return None
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from aetl.infra import schema
    from aetl.infra.objective import check_objective
    from aetl.infra.runconfig import missing_values, needs_value

    multirun = is_multirun(args)
    parsed = parse([a for a in args if not a.startswith("-")])
    plain = first_values(parsed, multirun)
    values = [(o.key_or_group, value) for o in parsed for value in every_value(o)]
    searchpath = [o for o in plain if o.startswith("hydra.searchpath=")]
    with initialize_config_module("aetl.configs", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        groups = {key for key, value in values if check_option(command, key, value, loader, searchpath)}
        cfg = compose_config(command, plain)
    with open_dict(cfg):  # Hydra's settings apart: its run dir is an ${aetl.unique:...} that makes a dir
        hydra = cfg.pop("hydra")
    for key, value in values:  # every value of a sweep, in the config composed with the first
        if key.startswith(("hydra.launcher.", "hydra.sweeper.")) and not key.startswith("hydra.sweeper.params"):
            schema.check_plugin_value(key, value, hydra)
        elif key not in groups and not key.startswith("hydra."):
            schema.check_value(key, value, cfg, root)
    missing = missing_values(cfg)
    if missing:
        raise AetlError(needs_value(missing[0]))
    if command == "train":
        check_objective(cfg.objective)
    schema.check_config(cfg, root)
    schema.check_hydra(hydra)
    return None if multirun else cfg


def is_multirun(args: list[str]) -> bool:
    # an hparams_search preset sets hydra.mode=MULTIRUN itself
    return any(a in ("-m", "--multirun") or a.startswith("hparams_search=") for a in args)


def override_value(args: list[str], key: str) -> str | None:
    """The last value the command line gives a key (None when it gives none, or a sweep)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
    values = [str(o.value()) for o in parsed if o.key_or_group == key and not o.is_sweep_override()]
    return values[-1] if values else None


def parse(args: list[str]) -> list[Override]:
    """Hydra's parse of the overrides; an unparsable one is refused with the way to quote it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for i, arg in enumerate(args):
        try:
            parser.parse_override(arg)
        except HydraException as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else "a syntax error"
            key, equals, value = arg.partition("=")
            if not equals:
                before = args[i - 1] if i and "=" in args[i - 1] else None
                fix = (f'if it is the rest of a value with a space, quote the whole override as one argument: '
                       f'"{before} {arg}"' if before else "overrides are key=value")
                raise AetlError(f"cannot parse the overrides: {arg!r} is not key=value; {fix}") from None
            raise AetlError(f"cannot parse the overrides: {reason} in {arg!r}; a value with characters Hydra's "
                            "grammar reserves is quoted for Hydra (and the whole override for the shell): "
                            f"\"{key}='{value}'\"") from None
    return parser.parse_overrides(args)


def first_values(parsed: list[Override], multirun: bool) -> list[str]:
    """The overrides to compose the config with: each sweep at its first value (interval and
    glob sweeps, which have none to try, left out); a sweep without -m is refused."""
    plain = []
    for o in parsed:
        sweep = o.is_sweep_override()
        if sweep and not multirun and not o.is_hydra_override():
            raise AetlError(f"{o.input_line} is a sweep: add -m to run one job per value, or quote the value "
                            f"({o.key_or_group}='...') to pass it as one string")
        if o.key_or_group.startswith("hydra.sweeper.params"):
            continue  # a search space, read by the sweeper
        if not sweep:
            plain.append(o.input_line)
        elif _tried(o):
            plain.append(f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}")
    return plain


def every_value(override: Override) -> list[Any]:
    """The values an override gives its key: one, or each of a discrete sweep's (typed)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if override.is_delete():
        return []
    if not override.is_sweep_override():
        return [override.value()]
    if not _tried(override):
        return []  # interval and glob sweeps: the job checks what the sweeper draws
    parser = OverridesParser.create()
    return [parser.parse_override(f"v={text}").value() for text in override.sweep_string_iterator()]


def _tried(sweep: Override) -> bool:
    """A sweep whose values can be listed before it runs (choices and ranges)."""
    return sweep.is_discrete_sweep() and sweep.value_type.name != "GLOB_CHOICE_SWEEP"


def check_option(command: str, group: str, value: Any, loader: Any, searchpath: list[str]) -> bool:
    """Whether `group` is a config group (else a key: seed=1); a group's option (each of a list
    of them) must exist, with or without -m."""
    if "." in group:
        return False
    options = loader.get_group_options(group, config_name=command, overrides=searchpath)
    if not options and "/" not in group:
        return False
    for name in [] if value is None else value if isinstance(value, list) else [value]:
        if options and str(name) not in options:
            raise AetlError(unknown_option(group, str(name), options))
    return True


def unknown_option(group: str, name: str, options: list[str]) -> str:
    if f"{group}/{name}" in PLUGINS:
        extra = PLUGINS[f"{group}/{name}"]
        return f'{group}/{name} comes from a Hydra plugin that is not installed: pip install "aetl[{extra}]"'
    return f"unknown {group} '{name}'{suggest(name, sorted(options))}; choose one of {', '.join(sorted(options))}"


def compose_config(command: str, plain: list[str]) -> DictConfig:
    """The command's config with these overrides, Hydra's settings included; a failure is one line."""
    from hydra import compose
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf import DictConfig
    from omegaconf.errors import ConfigAttributeError, ValidationError

    from aetl.infra import schema

    try:
        return compose(command, overrides=plain, return_hydra_config=True)
    except MissingConfigException as err:
        wanted = str(err.missing_cfg_file or "")
        group, _, name = wanted.rpartition("/")
        if wanted in PLUGINS or err.options:
            raise AetlError(unknown_option(group, name, list(err.options or []))) from None
        raise AetlError(one_line(str(err))) from None
    except HydraException as err:
        cause = err.__cause__
        if isinstance(cause, ValidationError) and str(cause.full_key).startswith("hydra."):  # a plugin's typed key
            parent = cause.parent_node
            target = parent.get("_target_") if isinstance(parent, DictConfig) else None
            spec = schema.plugin_spec(cause.full_key, cause.object_type, target)
            line = schema.problem(cause.full_key, cause.value, spec)
            if line:
                raise AetlError(line) from None
        message = str(err).strip()
        key = re.match(r"Could not override '([^']+)'", message)
        if key and isinstance(err.__cause__, ConfigAttributeError):  # not in struct, or in a plugin's dataclass
            name = key.group(1)
            others = [o for o in plain if not o.lstrip("+~").startswith(f"{name}=")]
            keys = config_keys(command, others)
            parent = name.rpartition(".")[0]
            siblings = [k for k in keys if k.rpartition(".")[0] == parent]  # the keys beside it, if any
            raise AetlError(f"{name} is not a config key{suggest(name, siblings or keys)}; `aetl {command} --cfg "
                            f"job` shows the keys, and +{name}=... adds a new one") from None
        raise AetlError(one_line(message)) from None


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
    """Every dotted key of the composed config (empty if it does not compose); called where
    Hydra's config module is initialised."""
    from hydra import compose

    from aetl.infra.runconfig import config_nodes

    try:
        cfg = compose(command, overrides=overrides, return_hydra_config=True)
    except Exception:  # noqa: BLE001 - only a suggestion is lost
        return []
    return [key for key, _ in config_nodes(cfg)]
