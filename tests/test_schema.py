"""Every config key has a type and, for numbers, a range, declared by the code that reads it
(aetl/infra/schema.py), checked before anything runs. The bad values are GENERATED from the
composed configs of every command and every option of every config group: a key added to a
YAML file later is covered without editing this test, and fails it until the code that reads
the key declares what it accepts."""

from __future__ import annotations

import pytest
from conftest import options, run_cli
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from aetl.commands import cli
from aetl.errors import AetlError
from aetl.infra import schema
from aetl.infra.runconfig import config_nodes


def root(command: str) -> type:
    """The command's declaration of its config."""
    import importlib

    return importlib.import_module(f"aetl.commands.{command}").Config


def spec(key: str, command: str, cfg: DictConfig):
    if key.startswith("hydra."):
        parent = OmegaConf.select(cfg, key.rpartition(".")[0])
        return schema.plugin_spec(key, OmegaConf.get_type(parent), parent.get("_target_"))
    return schema.spec_for(key, cfg, root(command))

# What each command needs to compose; what an option needs besides its name.
COMMANDS = {"train": [], "stylize": ["run=/runs/a"], "augment": ["run=/runs/a"], "rank": []}
NEEDS = {"data/source=folder": "data.source.root=/images", "data/target=folder": "data.target.root=/images"}
HYDRA_GROUPS = ("hydra/launcher",)  # hparams_search brings the sweepers; the rest of hydra/ is Hydra's own


def compositions() -> list[tuple[str, list[str], DictConfig]]:
    """(command, overrides, composed config): each command as it is, then train with the k-th
    option of every group at once, for k up to the longest group: every option composed once
    (a `data` pair on its own: its preset sets its own domains' settings, which another domain
    chosen on top of it does not take)."""
    found = []
    with initialize_config_module("aetl.configs", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for command, base in COMMANDS.items():
            found.append((command, base, compose(command, base, return_hydra_config=True)))
        groups = [g for g in found[0][2].hydra.runtime.choices if not g.startswith("hydra/") or g in HYDRA_GROUPS]
        options = {g: loader.get_group_options(g) for g in groups if g != "data"}
        found += [("train", [f"data={pair}"], compose("train", [f"data={pair}"], return_hydra_config=True))
                  for pair in loader.get_group_options("data")]
        for k in range(max(map(len, options.values()))):
            chosen = [f"{g}={o[k]}" for g, o in options.items() if k < len(o)]
            overrides = [*chosen, *(NEEDS[c] for c in chosen if c in NEEDS)]
            cfg = compose("train", overrides, return_hydra_config=True)
            for choice in chosen:  # each option really was in the defaults list
                group, option = choice.split("=")
                assert cfg.hydra.runtime.choices[group] == option, choice
            found.append(("train", overrides, cfg))
    return found


def leaves(cfg: DictConfig) -> dict[str, object]:
    """Every leaf key (a list is one value; an empty mapping is a leaf) and its unresolved value."""
    found = {}
    for key, node in config_nodes(cfg):
        if "[" in key or (key.startswith("hydra.") and not key.startswith(("hydra.launcher.", "hydra.sweeper.")))\
                or key.startswith("hydra.sweeper.params"):
            continue
        if isinstance(node, DictConfig) and len(node) and not node._is_none():
            continue
        found[key] = OmegaConf.to_container(node) if isinstance(node, (DictConfig, ListConfig)) \
            and not node._is_none() else node._value()
    return found


@pytest.fixture(scope="module")
def composed() -> list[tuple[str, list[str], DictConfig]]:
    return compositions()


@pytest.fixture(scope="module")
def keys(composed) -> dict[str, tuple[str, list[str], object, schema.Spec | None]]:
    """key -> (command, overrides of a composition that has it, its value there, its spec)."""
    found: dict[str, tuple[str, list[str], object, schema.Spec | None]] = {}
    for command, overrides, cfg in composed:
        for key, value in leaves(cfg).items():
            if key not in found:
                found[key] = (command, overrides, value, spec(key, command, cfg))
    return found


def bad_values(key: str, value: object, spec: schema.Spec) -> list[str]:
    """Override values the key must refuse: one of the wrong type (chosen by the type of its
    value in the shipped config, by its spec where that is null or an interpolation), and for
    numbers one below and one above the range."""
    kind = spec.kind if value is None or (isinstance(value, str) and "${" in value) else \
        {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}[type(value)]
    wrong = {"bool": "maybe", "int": "abc", "float": "abc", "list": "abc", "dict": "abc",
             "either": "{a:1}"}.get(kind, "[1,2]")
    numbers = spec if spec.kind in ("int", "float") else spec.item if spec.kind == "list" else None
    bad = [wrong]
    if numbers is not None and numbers.kind in ("int", "float"):
        assert numbers.lo is not None or numbers.hi is not None, f"{key} is a number with no range"
        out = ([numbers.lo if numbers.lo_open else numbers.lo - 1] if numbers.lo is not None else []) + \
              ([numbers.hi + 1] if numbers.hi is not None else [])
        bad += [f"[{x}]" if spec.kind == "list" else str(x) for x in out]
    return bad


def test_every_key_has_a_spec_and_the_shipped_configs_pass_it(keys, composed):
    missing = sorted(k for k, (*_, found) in keys.items() if found is None)
    assert not missing, f"declare these keys where they are read (aetl/infra/schema.py says how): {missing}"
    for command, _, cfg in composed:
        schema.check_config(cfg, root(command))
        schema.check_hydra(cfg.hydra)


def test_a_wrong_type_or_an_out_of_range_value_of_any_key_is_one_line_before_anything_runs(
        keys, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    failures, checked = [], 0
    for key, (command, overrides, value, found) in sorted(keys.items()):
        for bad in bad_values(key, value, found):
            with pytest.raises(SystemExit) as stopped:
                cli.check_overrides(command, [*overrides, f"{key}={bad}"])
            lines = capsys.readouterr().err.strip().splitlines()
            checked += 1
            if stopped.value.code != 2 or len(lines) != 1 or not lines[0].startswith(f"aetl {command}: {key} must be "):
                failures.append(f"{key}={bad}: exit {stopped.value.code}, {lines}")
    assert not failures, "\n".join(failures)
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert len(keys) > 200
    print(f"{len(keys)} keys, {checked} bad values: each one line and exit status 2")


def test_the_job_refuses_them_too(keys, composed):
    """What a sweeper hands a job (Optuna's draws, a sweep's later values) is checked in the job."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, failures = OverridesParser.create(), []
    for key, (command, overrides, value, found) in sorted(keys.items()):
        if key.startswith("hydra."):
            continue  # Hydra's plugins type their own settings in the job
        cfg = next(c for name, o, c in composed if (name, o) == (command, overrides))
        for bad in bad_values(key, value, found):
            OmegaConf.update(cfg, key, parser.parse_override(f"k={bad}").value(), merge=False)
            try:
                schema.check_config(cfg, root(command))
                failures.append(f"{key}={bad} passed")
            except AetlError as err:
                if not str(err).startswith(f"{key} must be "):
                    failures.append(f"{key}={bad}: {err}")
            finally:
                OmegaConf.update(cfg, key, value, merge=False)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("args, line", [
    (["trainer.transfer.lr=abc"], "trainer.transfer.lr must be a number > 0, got 'abc'; fix it in the override or config"),
    (["seed=abc"], "seed must be an integer in [0, 4294967295], got 'abc'; fix it in the override or config"),
    (["eval.probe_l2=-1"], "eval.probe_l2 must be >= 0, got -1; fix it in the override or config"),
    (["eval.n_images=0"], "eval.n_images must be >= 1, got 0; fix it in the override or config"),
    (["data.target.root=5", "data/target=folder"],
     "data.target.root must be a string, got 5; quote it to pass it as a string: \"data.target.root='5'\""),
    (["-m", "strategy=scratch", "trainer.transfer.lr=0.001,abc"],  # every value of a sweep, not only the first
     "trainer.transfer.lr must be a number > 0, got 'abc'; fix it in the override or config"),
    (["-m", "strategy=scratch,concatt"],  # the same line as without -m
     f"unknown strategy 'concatt' (did you mean concat?); choose one of {options('strategy')}"),
    (["data.target.margin=20"], "data.target.margin=20 leaves no room in a 28x28 image with data.target.fit=frame; "
                                "choose a margin in [0, 13] or raise data.image_size"),
    (["data/target=folder", "data.target.root=/tmp/my", "images"],  # a path with a space the shell split
     "cannot parse the overrides: 'images' is not key=value; if it is the rest of a value with a space, quote the "
     "whole override as one argument: \"data.target.root=/tmp/my images\""),
    (["data.target.root=/tmp/a(b)"], "cannot parse the overrides: mismatched input '(' expecting <EOF> in "
                                     "'data.target.root=/tmp/a(b)'; a value with characters Hydra's grammar reserves "
                                     "is quoted for Hydra (and the whole override for the shell): "
                                     "\"data.target.root='/tmp/a(b)'\""),
    (["hydra/launcher=local", "hydra.launcher.timout_min=5"],
     "hydra.launcher.timout_min is not a config key (did you mean hydra.launcher.timeout_min?)"),
    (["hydra/launcher=paralel"], "unknown hydra/launcher 'paralel' (did you mean parallel?); choose one of"),
])
def test_the_issues_config_rows_are_one_line_before_anything_runs(tmp_path, monkeypatch, capsys, args, line):
    status, lines = run_cli(tmp_path, monkeypatch, capsys, "train", *args)
    assert status == 2 and len(lines) == 1 and lines[0].startswith(f"aetl train: {line}")
    assert list(tmp_path.iterdir()) == []


def test_a_value_out_of_range_stops_the_job_before_it_writes(make_cfg, tmp_path):
    """The job checks its config too: train() as a library call, or a sweeper's draw."""
    from aetl.commands.train import train

    with pytest.raises(AetlError, match=r"^seed must be an integer in \[0, 4294967295\], got 'abc'"):
        train(make_cfg("seed=abc"), tmp_path / "run")
    with pytest.raises(AetlError, match=r"^data.source.margin=8 leaves no room in a 16x16 image"):
        train(make_cfg("data.source.fit=crop", "data.source.margin=8"), tmp_path / "run")
    assert not (tmp_path / "run").exists()
