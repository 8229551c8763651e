"""What the shell asks of `aetl` besides running a command: tab completion (bash and zsh) and
each command's help.

`aetl -sc install=bash` (also `aetl train -sc install=bash`, as Hydra's --hydra-help says)
prints a completion function bound to `aetl` itself; on TAB the shell calls
`aetl -sc query=bash` with the line in COMP_LINE, and the answer is a command name, or what
Hydra's completion gives for that command's config (groups, options, keys), without
loading PyTorch. `aetl <command> --help` lists only the config groups that command uses.
"""

from __future__ import annotations

import os
from typing import Sequence

SHELLS = ("bash", "zsh")

BASH = """_aetl_completion()
{
    local choices
    choices=$(COMP_POINT=$COMP_POINT COMP_LINE=$COMP_LINE aetl -sc query=bash 2> /dev/null)
    COMPREPLY=($(compgen -o nospace -o default -W "$choices" -- "${COMP_WORDS[$COMP_CWORD]}"))
}
COMP_WORDBREAKS=${COMP_WORDBREAKS//=}
complete -o nospace -o default -F _aetl_completion aetl
"""
ZSH = "autoload -Uz bashcompinit && bashcompinit\n" + BASH  # zsh runs bash's completion functions


def completion(flag: str, commands: Sequence[str]) -> str:
    """The answer to `-sc install=SHELL`, `-sc uninstall=SHELL` or `-sc query=SHELL`."""
    action, _, shell = flag.partition("=")
    if shell not in SHELLS or action not in ("install", "uninstall", "query"):
        raise ValueError(f"-sc takes install=, uninstall= or query= with {' or '.join(SHELLS)}, got {flag!r}")
    if action == "install":
        return ZSH if shell == "zsh" else BASH
    if action == "uninstall":
        return "complete -r aetl 2> /dev/null; unset -f _aetl_completion"
    return " ".join(query(os.environ.get("COMP_LINE", "aetl "), commands))


def query(line: str, commands: Sequence[str]) -> list[str]:
    """Completions for the word under the cursor at the end of `line` ("aetl train strat")."""
    words = line.split()
    done = line.endswith(" ")
    if len(words) < 2 or (len(words) == 2 and not done):  # the command itself
        typed = words[1] if len(words) == 2 else ""
        return [c for c in commands if c.startswith(typed)]
    command, rest = words[1], line.split(None, 2)[2] if len(words) > 2 else ""
    if command not in commands or command == "report":
        return []  # (report takes run dirs: the shell's own file completion)
    from hydra import initialize_config_module
    from hydra._internal.core_plugins.bash_completion import BashCompletion
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_module("aetl.configs", version_base="1.3"):
        plugin = BashCompletion(GlobalHydra.instance().config_loader())
        return plugin._query(config_name=command, line=rest)  # Hydra's own answer for this config


def command_help(command: str, args: Sequence[str]) -> str:
    """`aetl <command> --help`: its description, the config groups it uses with their options,
    its config, Hydra's flags, its examples."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf, open_dict

    with initialize_config_module("aetl.configs", version_base="1.3"):
        cfg = compose(command, overrides=[a for a in args if not a.startswith("-")], return_hydra_config=True)
        loader = GlobalHydra.instance().config_loader()
        groups = sorted(g for g in cfg.hydra.runtime.choices if not g.startswith("hydra/") or g == "hydra/launcher")
        lines = [f"  {g}: {', '.join(loader.get_group_options(g))}" for g in groups]
    header, footer = cfg.hydra.help.header.strip(), cfg.hydra.help.footer.strip()
    with open_dict(cfg):
        cfg.pop("hydra")
    return "\n".join([
        header, "", f"Config groups of aetl {command} (choose one with group=option):", *lines, "",
        f"The config (set any key with key=value; `aetl {command} --cfg job` prints it as composed):",
        OmegaConf.to_yaml(cfg).rstrip(), "",
        "Hydra's flags: -m/--multirun (a sweep), --cfg job|hydra|all, --hydra-help, hydra.run.dir=...,",
        "hydra/launcher=local|parallel|slurm; tab completion: eval \"$(aetl -sc install=bash)\" (zsh: install=zsh)",
        "", footer])
