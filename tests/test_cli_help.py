"""Every command of every component explains itself: the component's help, run exactly as
the images and Argo steps run it (`python -m mlsys.<component> --help`), lists each of its
commands, and each command's help lists each of its own options (in this process: the same
Typer app, without a Python start per command). The commands are read from the Typer apps
themselves, so a new one is covered without editing this."""

import importlib
import os

import pytest
import typer
from typer.testing import CliRunner

from tests.helpers.cli import run_cli
from tests.helpers.paths import ROOT

COMPONENTS = ["ab_test_proxy", "api", "batch", "bi", "data_registration", "ml", "monitoring",
              "pipelines", "search", "violation_detection"]  # fmt: skip


def app(component: str) -> typer.Typer:
    return importlib.import_module(f"mlsys.{component}.__main__").app


def group(component: str):
    """The component's Typer app as the command group it runs as."""
    return typer.main.get_command(app(component))


COMMANDS = [(c, name) for c in COMPONENTS for name in sorted(group(c).commands)]
WIDE = {"COLUMNS": "200"}  # no option name cut by the terminal's width


def help_of(*args: str) -> str:
    return run_cli(*args, "--help", env=os.environ | WIDE).stdout


def test_every_component_with_a_command_line_is_covered():
    mains = sorted(path.parent.name for path in ROOT.glob("*/src/mlsys/*/__main__.py"))
    assert mains == COMPONENTS


@pytest.mark.parametrize("component", COMPONENTS)
def test_help_lists_the_commands(component):
    output = help_of(f"mlsys.{component}")
    assert [name for name in group(component).commands if name not in output] == []


@pytest.mark.parametrize(("component", "command"), COMMANDS)
def test_each_command_lists_its_options(component, command):
    helped = CliRunner().invoke(app(component), [command, "--help"], env=WIDE)
    assert helped.exit_code == 0, helped.output
    output = helped.output
    params = group(component).commands[command].params
    options = [p.opts[-1] for p in params if p.param_type_name == "option"]
    arguments = [p.name for p in params if p.param_type_name == "argument"]
    assert [name for name in options + arguments if name not in output] == []
