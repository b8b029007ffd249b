"""Every CLI explains itself, exactly as the images and Argo steps will call it."""

import pytest

from tests.helpers.cli import run_cli

COMMANDS = {
    "mlsys.data_registration": ["register", "generate"],
    "mlsys.ml": ["validate", "backtest", "train", "promote", "predict"],
    "mlsys.bi": ["serve"],
    "mlsys.api": ["serve", "openapi"],
    "mlsys.batch": ["generate", "initial-load", "relay", "search-index", "replay-dead-letters"],
    "mlsys.search": ["features", "features-consumer", "train-ranker", "promote-ranker", "simulate"],
    "mlsys.ab_test_proxy": ["serve", "check", "report"],
    "mlsys.pipelines": ["run"],
}


@pytest.mark.parametrize("component", COMMANDS)
def test_help_lists_the_commands(component):
    result = run_cli(component, "--help")
    for command in COMMANDS[component]:
        assert command in result.stdout


@pytest.mark.parametrize(
    ("component", "command"), [(c, k) for c, ks in COMMANDS.items() for k in ks]
)
def test_each_command_has_help(component, command):
    result = run_cli(component, command, "--help")
    assert "Usage" in result.stdout and "--help" in result.stdout
