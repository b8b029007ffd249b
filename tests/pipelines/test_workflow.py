"""The runner reads every shipped workflow, refuses what it does not execute naming it,
and decides `when` and `depends` as Argo does."""

from pathlib import Path

import pytest
import yaml

from mlsys.pipelines.execute import FAILED, OMITTED, SKIPPED, SUCCEEDED, _state
from mlsys.pipelines.workflow import Unsupported, evaluate, load, substitute
from tests.helpers.paths import ROOT

SHIPPED = sorted((ROOT / "infrastructure" / "argo").glob("*.yaml"))


def write(tmp_path: Path, spec: dict, kind: str = "Workflow") -> Path:
    path = tmp_path / "workflow.yaml"
    document = {"apiVersion": "argoproj.io/v1alpha1", "kind": kind,
                "metadata": {"name": "w", "namespace": "n"}, "spec": spec}  # fmt: skip
    path.write_text(yaml.safe_dump(document))
    return path


CONTAINER = {"image": "i", "command": ["python", "-c", "pass"]}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_workflow_is_read(path):
    workflow = load(path)
    assert workflow.spec["entrypoint"] in workflow.templates


@pytest.mark.parametrize(
    ("template", "named"),
    [
        ({"name": "a", "script": {"image": "i", "source": "x"}}, "templates[0].script"),
        ({"name": "a", "container": {**CONTAINER, "lifecycle": {}}},
         "templates[0].container.lifecycle"),
        ({"name": "a", "dag": {"tasks": [{"name": "t", "template": "a", "withItems": [1]}]}},
         "templates[0].dag.tasks[0].withItems"),
        ({"name": "a", "container": CONTAINER, "retryStrategy": {"limit": 1, "affinity": {}}},
         "templates[0].retryStrategy.affinity"),
    ],
)  # fmt: skip
def test_an_unsupported_construct_is_refused_naming_it(tmp_path, template, named):
    with pytest.raises(Unsupported, match=f"spec.templates.*{named.split('.')[-1]}") as error:
        load(write(tmp_path, {"entrypoint": "a", "templates": [template]}))
    assert named in str(error.value)


def test_a_parameter_the_workflow_does_not_declare_is_refused(tmp_path):
    spec = {"entrypoint": "a", "templates": [{"name": "a", "container": CONTAINER}],
            "arguments": {"parameters": [{"name": "limit", "value": "100"}]}}  # fmt: skip
    workflow = load(write(tmp_path, spec))
    assert workflow.parameters({"limit": "5"}) == {"limit": "5"}
    with pytest.raises(Unsupported, match="-p weeks: not a parameter of w"):
        workflow.parameters({"weeks": "3"})


def test_an_unresolved_reference_is_an_error_naming_it():
    assert substitute("--v {{inputs.parameters.v}}", {"inputs.parameters.v": "3"}, "x") == "--v 3"
    with pytest.raises(Unsupported, match=r"x: \{\{tasks.a.outputs.parameters.v\}\} has no value"):
        substitute("{{tasks.a.outputs.parameters.v}}", {}, "x")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("heads == heads", True),
        ("heads == tails", False),
        ("'a b' != 'a c'", True),
        ("10 > 9", True),  # numbers compare as numbers
        ("2.5 <= 2", False),
        ("true && !(1 == 2)", True),
        ("false || 3 >= 3", True),
    ],
)
def test_when_expressions(expression, expected):
    assert evaluate(expression) is expected


@pytest.mark.parametrize("expression", ["1 ==", "(true", "maybe", "true true"])
def test_an_expression_it_cannot_decide_is_refused(expression):
    with pytest.raises(Unsupported):
        evaluate(expression)


def test_depends_reads_task_results_as_argo_does():
    states = {"a": SUCCEEDED, "b": FAILED, "c": SKIPPED, "d": OMITTED}

    def decide(expression: str) -> bool:
        return evaluate(expression, word=lambda w: _state(w, states))

    assert decide("a && c")  # a bare name: succeeded or skipped
    assert not decide("b")
    assert decide("b.Failed && a.Succeeded")
    assert decide("b.Completed")
    assert not decide("d || b")
    with pytest.raises(Unsupported, match="no task result Finished"):
        decide("a.Finished")
