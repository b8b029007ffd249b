"""The weekly schedule simulated locally with the very commands the deployment runs
(issue 11, item 5 and its check): the image's initial registration, then each week the
register-next-week CronWorkflow's command followed by the forecasting DAG's steps in
their order, the trained version handed to the gate as the DAG's parameter does. Each week
registers a new week of sales and produces predictions for the week after it."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.helpers.cli import run_cli
from tests.helpers.paths import ROOT

pytestmark = pytest.mark.slow
ARGO = ROOT / "infrastructure" / "argo"


def local(argv: list[str]) -> list[str]:
    """A container's command on this machine: the image's /app is the repository."""
    return [arg.replace("/app/dataset", str(ROOT / "dataset")) for arg in argv]


def module_and_args(container: dict) -> tuple[str, list[str]]:
    command = container.get("command", [])
    assert command[:2] == ["python", "-m"]
    return command[2], local(container["args"])


def dag_steps() -> list[dict]:
    workflow = yaml.safe_load((ARGO / "forecasting.yaml").read_text())["spec"]["workflowSpec"]
    templates = {t["name"]: t for t in workflow["templates"]}
    dag = templates[workflow["entrypoint"]]["dag"]["tasks"]
    return [templates[task["template"]] for task in dag]  # in the DAG's order


def run_the_dag(tmp_path) -> str:
    parameters: dict[str, str] = {}
    predicted = ""
    for template in dag_steps():
        module, args = module_and_args(template["container"])
        for name, value in parameters.items():
            args = [a.replace(f"{{{{inputs.parameters.{name}}}}}", value) for a in args]
        # Output files go where the step's /tmp would be.
        args = [a.replace("/tmp/", f"{tmp_path}/") for a in args]
        output = run_cli(module, *args).stdout
        for parameter in template.get("outputs", {}).get("parameters", []):
            path = Path(parameter["valueFrom"]["path"].replace("/tmp/", f"{tmp_path}/"))
            parameters[parameter["name"]] = path.read_text().strip()
        if args[0] == "promote":
            assert f"version {parameters['version']} " in output  # the one it trained
        if args[0] == "predict":
            predicted = output
    return predicted


def test_each_week_registers_the_next_week_and_predicts_the_one_after(tmp_path):
    images = tomllib.loads((ROOT / "infrastructure" / "images.toml").read_text())
    initial = local(images["data_registration"]["command"])
    assert initial[:3] == ["python", "-m", "mlsys.data_registration"]
    assert "written: " in run_cli(*initial[2:]).stdout
    weekly = yaml.safe_load((ARGO / "register-next-week.yaml").read_text())
    (template,) = [t for t in weekly["spec"]["workflowSpec"]["templates"] if "container" in t]
    module, args = module_and_args(template["container"])
    predicted_weeks = []
    for _ in range(3):  # weeks 49, 50 and 51
        registered = run_cli(module, *args).stdout
        assert registered.rstrip().endswith("written: 700"), registered  # 7 days x 100 series
        predicted = run_the_dag(tmp_path)
        found = re.search(r"week (\d{4}-\d{2}): 100 predictions by version (\d+)", predicted)
        assert found, predicted
        predicted_weeks.append(found.group(1))
    assert predicted_weeks == ["2021-50", "2021-51", "2021-52"]
