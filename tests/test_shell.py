"""What the shell asks of aetl: tab completion for `aetl <command>` and each command's own help."""

from aetl.commands import cli


def test_tab_completion_answers_for_aetl_and_each_command(monkeypatch, capsys):
    """`eval "$(aetl -sc install=bash)"` binds a function to `aetl` that asks `aetl -sc
    query=bash`; the answer is a command, or Hydra's for that command's config."""
    cli.main(["train", "-sc", "install=bash"])  # what `aetl train --hydra-help` advertises
    script = capsys.readouterr().out
    assert "complete -o nospace -o default -F _aetl_completion aetl" in script and "aetl -sc query=bash" in script
    cli.main(["-sc", "install=zsh"])
    assert capsys.readouterr().out.startswith("autoload -Uz bashcompinit && bashcompinit")
    for line, expected in (("aetl tr", {"train"}), ("aetl ", {"train", "stylize", "augment", "report", "rank"}),
                           ("aetl train strat", {"strategy="}), ("aetl train strategy=con", {"strategy=concat"}),
                           ("aetl rank data.target.n_t", {"data.target.n_test=", "data.target.n_train="})):
        monkeypatch.setenv("COMP_LINE", line)
        cli.main(["-sc", "query=bash"])
        assert expected <= set(capsys.readouterr().out.split()), line


def test_each_commands_help_lists_only_its_own_config_groups(capsys):
    for command, has, lacks in (("rank", {"data", "model", "trainer"}, {"strategy", "hparams_search", "app"}),
                                ("stylize", {"app", "model"}, {"strategy", "data", "hparams_search"}),
                                ("train", {"strategy", "data", "app", "hparams_search"}, set())):
        cli.main([command, "--help"])
        text = capsys.readouterr().out
        groups = {line.split(":")[0].strip() for line in
                  text.split("Config groups of")[1].split("\n\n")[0].splitlines()[1:]}
        assert has <= groups and not (lacks & groups), (command, groups)
        assert f"aetl {command}:" in text and "Examples:" in text
