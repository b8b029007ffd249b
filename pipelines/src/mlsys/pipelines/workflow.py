"""An Argo Workflow or CronWorkflow as the local runner reads it: its templates, the
constructs it supports, and a clear refusal naming any other.

Supported: `dag` (tasks with `dependencies` or `depends`) and `steps` templates, container
templates, input and output parameters (`valueFrom.path`), workflow parameters
(`spec.arguments`), `when`, `retryStrategy` (limit, retryPolicy, backoff),
`activeDeadlineSeconds` (workflow and template) and an exit handler (`onExit`). Fields
that only a cluster acts on (schedules, history limits, service accounts, requests, image
pull policy) are read and ignored; anything else is refused before a step starts.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class Unsupported(ValueError):
    """A construct the local runner does not execute, named by its path in the YAML."""


# What each object may hold. `None`: any content (handed to the runner as it is).
_CRON_SPEC = {
    "schedules", "schedule", "timezone", "concurrencyPolicy", "startingDeadlineSeconds",
    "successfulJobsHistoryLimit", "failedJobsHistoryLimit", "suspend", "workflowSpec",
    "workflowMetadata",
}  # fmt: skip
_WORKFLOW_SPEC = {
    "entrypoint", "templates", "arguments", "serviceAccountName", "securityContext",
    "activeDeadlineSeconds", "onExit", "volumes", "podGC", "ttlStrategy", "nodeSelector",
    "tolerations", "imagePullSecrets", "workflowMetadata",
}  # fmt: skip
_TEMPLATE = {
    "name", "container", "dag", "steps", "inputs", "outputs", "retryStrategy", "volumes",
    "activeDeadlineSeconds", "metadata", "nodeSelector", "tolerations", "securityContext",
}  # fmt: skip
_CONTAINER = {
    "image", "imagePullPolicy", "command", "args", "env", "envFrom", "volumeMounts",
    "resources", "securityContext", "workingDir", "name",
}  # fmt: skip
_TASK = {"name", "template", "arguments", "dependencies", "depends", "when"}
_RETRY = {"limit", "retryPolicy", "backoff"}
_BACKOFF = {"duration", "factor", "maxDuration"}
_PARAMETER = {"name", "value", "default", "valueFrom", "description", "enum"}
_VALUE_FROM = {"path", "default"}
RETRY_POLICIES = {"Always", "OnFailure", "OnError", "OnTransientError"}


def _check(obj: Any, allowed: set[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise Unsupported(f"{where}: expected a mapping")
    for key in obj:
        if key not in allowed:
            raise Unsupported(f"{where}.{key}: not supported by the local runner")


def _check_parameters(parameters: list[dict], where: str) -> None:
    for i, parameter in enumerate(parameters):
        _check(parameter, _PARAMETER, f"{where}[{i}]")
        if "valueFrom" in parameter:
            _check(parameter["valueFrom"], _VALUE_FROM, f"{where}[{i}].valueFrom")


def _check_template(template: dict, where: str) -> None:
    _check(template, _TEMPLATE, where)
    kinds = [kind for kind in ("container", "dag", "steps") if kind in template]
    if len(kinds) != 1:
        raise Unsupported(f"{where}: a template needs one of container, dag or steps")
    if "container" in template:
        _check(template["container"], _CONTAINER, f"{where}.container")
    if "dag" in template:
        _check(template["dag"], {"tasks"}, f"{where}.dag")
        for i, task in enumerate(template["dag"]["tasks"]):
            _check(task, _TASK, f"{where}.dag.tasks[{i}]")
            _check_arguments(task, f"{where}.dag.tasks[{i}]")
    if "steps" in template:
        for i, group in enumerate(template["steps"]):
            for j, step in enumerate(group):
                _check(step, _TASK - {"dependencies", "depends"}, f"{where}.steps[{i}][{j}]")
                _check_arguments(step, f"{where}.steps[{i}][{j}]")
    for side in ("inputs", "outputs"):
        if side in template:
            _check(template[side], {"parameters"}, f"{where}.{side}")
            _check_parameters(template[side]["parameters"], f"{where}.{side}.parameters")
    if "retryStrategy" in template:
        retry = template["retryStrategy"]
        _check(retry, _RETRY, f"{where}.retryStrategy")
        if retry.get("retryPolicy", "OnFailure") not in RETRY_POLICIES:
            raise Unsupported(f"{where}.retryStrategy.retryPolicy: {retry['retryPolicy']}")
        if "backoff" in retry:
            _check(retry["backoff"], _BACKOFF, f"{where}.retryStrategy.backoff")


def _check_arguments(task: dict, where: str) -> None:
    if "arguments" in task:
        _check(task["arguments"], {"parameters"}, f"{where}.arguments")
        _check_parameters(task["arguments"]["parameters"], f"{where}.arguments.parameters")


@dataclass
class Workflow:
    """The workflow spec of a Workflow or CronWorkflow, checked."""

    name: str
    namespace: str
    spec: dict

    @property
    def templates(self) -> dict[str, dict]:
        return {template["name"]: template for template in self.spec["templates"]}

    def parameters(self, overrides: dict[str, str]) -> dict[str, str]:
        """The workflow's parameters: their values in the YAML, replaced by `-p` ones."""
        declared = {
            p["name"]: str(p.get("value", p.get("default", "")))
            for p in self.spec.get("arguments", {}).get("parameters", [])
        }
        unknown = sorted(set(overrides) - set(declared))
        if unknown:
            raise Unsupported(f"-p {', '.join(unknown)}: not a parameter of {self.name}")
        return declared | overrides


def load(path: Path) -> Workflow:
    document = yaml.safe_load(path.read_text())
    kind = document.get("kind")
    metadata = document.get("metadata", {})
    if kind == "CronWorkflow":
        _check(document["spec"], _CRON_SPEC, "spec")
        spec, where = document["spec"]["workflowSpec"], "spec.workflowSpec"
    elif kind == "Workflow":
        spec, where = document["spec"], "spec"
    else:
        raise Unsupported(f"kind {kind}: the local runner runs a Workflow or a CronWorkflow")
    _check(spec, _WORKFLOW_SPEC, where)
    if "arguments" in spec:
        _check(spec["arguments"], {"parameters"}, f"{where}.arguments")
        _check_parameters(spec["arguments"]["parameters"], f"{where}.arguments.parameters")
    for i, template in enumerate(spec["templates"]):
        _check_template(template, f"{where}.templates[{i}]")
    names = {t["name"] for t in spec["templates"]}
    for entry in (spec["entrypoint"], spec.get("onExit")):
        if entry is not None and entry not in names:
            raise Unsupported(f"{where}: no template named {entry}")
    name = metadata.get("name") or metadata.get("generateName", "workflow").rstrip("-")
    return Workflow(name=name, namespace=metadata.get("namespace", "default"), spec=spec)


_REFERENCE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


def substitute(text: str, values: dict[str, str], where: str) -> str:
    """`{{name}}` replaced by its value; a name without one is an error naming it (Argo
    refuses such a workflow too)."""

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise Unsupported(f"{where}: {{{{{name}}}}} has no value")
        return values[name]

    return _REFERENCE.sub(replace, text)


def substitute_all(obj: Any, values: dict[str, str], where: str) -> Any:
    if isinstance(obj, str):
        return substitute(obj, values, where)
    if isinstance(obj, list):
        return [substitute_all(item, values, where) for item in obj]
    if isinstance(obj, dict):
        return {key: substitute_all(value, values, where) for key, value in obj.items()}
    return obj


# `when` and `depends`: the expressions Argo's shipped examples use, evaluated exactly:
# comparisons (== != < > <= >=) of numbers or words, `&&`, `||`, `!` and parentheses.
_TOKEN = re.compile(
    r"\s*(?:(\(|\)|&&|\|\||==|!=|<=|>=|<|>|!)|'([^']*)'|\"([^\"]*)\"|([^\s()!=<>&|'\"]+))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise Unsupported(f"expression {text!r}: cannot read it at {text[position:]!r}")
        operator, single, double, word = match.groups()
        if operator:
            tokens.append(("op", operator))
        else:
            tokens.append(("word", next(v for v in (single, double, word) if v is not None)))
        position = match.end()
    return tokens


def evaluate(text: str, word: Any = None) -> bool:
    """An Argo boolean expression. `word` maps a bare word to its value (the task states of
    `depends`); by default a word is itself (a `when` after substitution)."""
    tokens = _tokens(text)
    position = 0

    def peek() -> str | None:
        return tokens[position][1] if position < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal position
        if position >= len(tokens):
            raise Unsupported(f"expression {text!r}: ends too early")
        position += 1
        return tokens[position - 1]

    def value() -> Any:
        kind, token = take()
        if kind == "op" and token == "(":
            result = either()
            if take() != ("op", ")"):
                raise Unsupported(f"expression {text!r}: a parenthesis is not closed")
            return result
        if kind == "op" and token == "!":
            return not truth(value())
        if kind == "op":
            raise Unsupported(f"expression {text!r}: unexpected {token}")
        return word(token) if word else token

    def truth(result: Any) -> bool:
        if isinstance(result, bool):
            return result
        if str(result).lower() in ("true", "false"):
            return str(result).lower() == "true"
        raise Unsupported(f"expression {text!r}: {result!r} is not true or false")

    def comparison() -> Any:
        left = value()
        if peek() in ("==", "!=", "<", ">", "<=", ">="):
            operator = take()[1]
            right = value()
            return _compare(str(left), operator, str(right))
        return left

    def both() -> Any:
        result = comparison()
        while peek() == "&&":
            take()
            right = comparison()
            result = truth(result) and truth(right)
        return result

    def either() -> Any:
        result = both()
        while peek() == "||":
            take()
            right = both()
            result = truth(result) or truth(right)
        return result

    result = truth(either())
    if position != len(tokens):
        raise Unsupported(f"expression {text!r}: unexpected {tokens[position][1]}")
    return result


def _compare(left: str, operator: str, right: str) -> bool:
    try:
        a: Any = float(left)
        b: Any = float(right)
    except ValueError:
        a, b = left, right
    return {
        "==": a == b, "!=": a != b, "<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b,
    }[operator]  # fmt: skip
