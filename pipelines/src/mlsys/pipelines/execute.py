"""A workflow executed as Argo's controller would: the entrypoint's DAG or steps in order,
parameters substituted, `when` and `depends` decided, each container step retried as its
`retryStrategy` says, deadlines kept, the exit handler run last. The containers themselves
are started by a runner (runners.py: in the images, or as local processes).

Tasks of a DAG run one at a time in an order their dependencies allow (Argo would run
independent ones in parallel; the results are the same).
"""

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

from mlsys.pipelines.workflow import Unsupported, Workflow, evaluate, substitute_all

SUCCEEDED, FAILED, ERROR, SKIPPED, OMITTED = "Succeeded", "Failed", "Error", "Skipped", "Omitted"


@dataclass
class ContainerStep:
    """One attempt of a container template, its parameters substituted."""

    name: str  # the node's path, e.g. forecast.backtest-train
    template: dict
    pod_security: dict  # the workflow's pod securityContext
    deadline: float | None  # seconds this attempt may run
    log: Path


@dataclass
class Attempt:
    phase: str  # Succeeded, Failed (the process failed) or Error (it could not run)
    exit_code: int | None = None
    reason: str = ""  # OOMKilled, DeadlineExceeded, CreateContainerConfigError: ..., ...
    seconds: float = 0.0
    peak_bytes: int | None = None
    outputs: dict[str, str] = field(default_factory=dict)


class Runner(Protocol):
    def run(self, step: ContainerStep) -> Attempt: ...


@dataclass
class Row:
    """A line of the summary: one attempt of one step."""

    step: str
    attempt: int
    phase: str
    exit_code: int | None
    reason: str
    seconds: float
    peak_bytes: int | None
    limit_bytes: int | None


@dataclass
class Node:
    phase: str
    outputs: dict[str, str] = field(default_factory=dict)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


def seconds(value: str | int | float) -> float:
    """An Argo duration (`30`, `10s`, `2m`, `1h`) in seconds."""
    match = _DURATION.match(str(value).strip())
    if not match:
        raise Unsupported(f"duration {value!r}: expected seconds or 10s, 2m, 1h")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def _retries(retry: dict, phase: str) -> bool:
    policy = retry.get("retryPolicy", "OnFailure")
    return {
        "Always": phase in (FAILED, ERROR),
        "OnFailure": phase == FAILED,
        "OnError": phase == ERROR,
        "OnTransientError": False,
    }[policy]


class Execution:
    def __init__(
        self,
        workflow: Workflow,
        runner: Runner,
        parameters: dict[str, str],
        logs: Path,
        echo: Callable[[str], None] = print,
        limit_of: Callable[[dict], int | None] = lambda template: None,
        show_logs: bool = False,
    ):
        self.workflow, self.runner, self.logs, self.echo = workflow, runner, logs, echo
        self.limit_of, self.show_logs = limit_of, show_logs
        self.values = {f"workflow.parameters.{k}": v for k, v in parameters.items()}
        self.values |= {"workflow.name": workflow.name, "workflow.namespace": workflow.namespace}
        self.rows: list[Row] = []
        deadline = workflow.spec.get("activeDeadlineSeconds")
        self.deadline = time.monotonic() + seconds(deadline) if deadline is not None else None
        self.deadline_exceeded = False

    def run(self) -> str:
        """The workflow's phase after its entrypoint and its exit handler."""
        phase = self.template(self.workflow.spec["entrypoint"], {}, self.workflow.name).phase
        if self.deadline_exceeded:
            phase = FAILED
        exit_handler = self.workflow.spec.get("onExit")
        if exit_handler:
            self.values["workflow.status"] = phase
            self.deadline = None  # Argo runs the exit handler after the deadline too
            self.template(exit_handler, {}, f"{self.workflow.name}.onExit")
        return phase

    def template(self, name: str, arguments: dict[str, str], path: str) -> Node:
        template = self.workflow.templates.get(name)
        if template is None:
            raise Unsupported(f"{path}: no template named {name}")
        inputs = {}
        for parameter in template.get("inputs", {}).get("parameters", []):
            value = arguments.get(
                parameter["name"], parameter.get("value", parameter.get("default"))
            )
            if value is None:
                raise Unsupported(f"{path}: input parameter {parameter['name']} has no value")
            inputs[f"inputs.parameters.{parameter['name']}"] = str(value)
        scope = self.values | inputs
        if "dag" in template:
            return self.dag(template, scope, path)
        if "steps" in template:
            return self.steps(template, scope, path)
        return self.container(template, scope, path)

    def _arguments(self, task: dict, scope: dict[str, str], where: str) -> dict[str, str]:
        parameters = task.get("arguments", {}).get("parameters", [])
        return {
            p["name"]: substitute_all(str(p.get("value", "")), scope, where) for p in parameters
        }

    def dag(self, template: dict, scope: dict[str, str], path: str) -> Node:
        tasks = {task["name"]: task for task in template["dag"]["tasks"]}
        expressions = {name: _depends(task, tasks, path) for name, task in tasks.items()}
        done: dict[str, Node] = {}
        handled: set[str] = set()  # failed tasks another task's `depends` expects to fail
        for expression in expressions.values():
            handled |= set(re.findall(r"([\w-]+)\.(?:Failed|Errored|Completed)", expression))
        while len(done) < len(tasks):
            ready = [
                name
                for name in tasks
                if name not in done and set(_names(expressions[name], tasks)) <= set(done)
            ]
            if not ready:
                raise Unsupported(f"{path}: the tasks' dependencies form a cycle")
            name = ready[0]
            task, where = tasks[name], f"{path}.{name}"
            states = {n: node.phase for n, node in done.items()}
            failed = {n for n, phase in states.items() if phase in (FAILED, ERROR)} - handled
            # Argo's failFast (a DAG's default): after a failure nobody handles, no new task
            if failed or not evaluate(expressions[name], word=partial(_state, states=states)):
                done[name] = Node(OMITTED)
                continue
            done[name] = self.task(task, scope, where)
            for output, value in done[name].outputs.items():
                scope[f"tasks.{name}.outputs.parameters.{output}"] = value
            scope[f"tasks.{name}.status"] = done[name].phase
        unhandled = {n for n, node in done.items() if node.phase in (FAILED, ERROR)} - handled
        return Node(FAILED if unhandled else SUCCEEDED)

    def steps(self, template: dict, scope: dict[str, str], path: str) -> Node:
        for group in template["steps"]:
            results = {}
            for step in group:
                results[step["name"]] = node = self.task(step, scope, f"{path}.{step['name']}")
                for output, value in node.outputs.items():
                    scope[f"steps.{step['name']}.outputs.parameters.{output}"] = value
                scope[f"steps.{step['name']}.status"] = node.phase
            if any(node.phase in (FAILED, ERROR) for node in results.values()):
                return Node(FAILED)
        return Node(SUCCEEDED)

    def task(self, task: dict, scope: dict[str, str], where: str) -> Node:
        """A DAG task or a step: its `when`, then its template with its arguments."""
        if self._out_of_time(where):
            return Node(FAILED)
        if "when" in task:
            condition = substitute_all(task["when"], scope, f"{where}.when")
            if not evaluate(condition):
                self.echo(f"{where}: skipped (when: {condition})")
                return Node(SKIPPED)
        arguments = self._arguments(task, scope, where)
        return self.template(task["template"], arguments, where)

    def _out_of_time(self, where: str) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            if not self.deadline_exceeded:
                self.echo(f"{where}: not started, the workflow's activeDeadlineSeconds passed")
            self.deadline_exceeded = True
            return True
        return False

    def container(self, template: dict, scope: dict[str, str], path: str) -> Node:
        resolved = substitute_all(template, scope, path)
        retry = template.get("retryStrategy")
        attempts = 1 + int(substitute_all(str(retry.get("limit", 0)), scope, path)) if retry else 1
        backoff = retry.get("backoff", {}) if retry else {}
        started = time.monotonic()
        for number in range(1, attempts + 1):
            if self._out_of_time(path):
                return Node(FAILED)
            deadlines = (
                [seconds(template["activeDeadlineSeconds"])]
                if ("activeDeadlineSeconds" in template)
                else []
            )
            if self.deadline is not None:
                deadlines.append(max(self.deadline - time.monotonic(), 0))
            step = ContainerStep(
                name=path,
                template=resolved,
                pod_security=self.workflow.spec.get("securityContext", {}),
                deadline=min(deadlines) if deadlines else None,
                log=self.logs / f"{path}.{number}.log",
            )
            self.echo(f"{path}: attempt {number} of {attempts}")
            attempt = self.runner.run(step)
            self.rows.append(
                Row(
                    path,
                    number,
                    attempt.phase,
                    attempt.exit_code,
                    attempt.reason,
                    attempt.seconds,
                    attempt.peak_bytes,
                    self.limit_of(resolved),
                )
            )
            if self.show_logs and step.log.is_file():
                for line in step.log.read_text(errors="replace").splitlines():
                    self.echo(f"  | {line}")
            detail = f" ({attempt.reason})" if attempt.reason else ""
            self.echo(f"{path}: {attempt.phase}{detail} in {attempt.seconds:.1f} s; log {step.log}")
            if attempt.phase == SUCCEEDED:
                return Node(SUCCEEDED, attempt.outputs)
            if number == attempts or not _retries(retry or {}, attempt.phase):
                return Node(attempt.phase)
            if backoff:
                wait = seconds(backoff.get("duration", 0)) * float(backoff.get("factor", 1)) ** (
                    number - 1
                )
                if "maxDuration" in backoff:
                    remaining = seconds(backoff["maxDuration"]) - (time.monotonic() - started)
                    if remaining <= wait:
                        self.echo(f"{path}: no retry, its backoff's maxDuration has passed")
                        return Node(attempt.phase)
                time.sleep(wait)
        raise AssertionError("unreachable")


def _depends(task: dict, tasks: dict[str, dict], path: str) -> str:
    """A task's dependencies as one `depends` expression (`dependencies: [a, b]` is `a && b`)."""
    if "depends" in task and "dependencies" in task:
        raise Unsupported(f"{path}.{task['name']}: both depends and dependencies")
    expression = task.get("depends") or " && ".join(task.get("dependencies", [])) or "true"
    for name in _names(expression, tasks):
        if name not in tasks:
            raise Unsupported(f"{path}.{task['name']}: depends on {name}, not a task of it")
    return expression


def _names(expression: str, tasks: dict[str, dict]) -> list[str]:
    words = re.findall(r"[A-Za-z0-9][\w-]*(?:\.\w+)?", expression)
    return [word.split(".")[0] for word in words if word not in ("true", "false")]


_RESULTS = {
    "Succeeded": {SUCCEEDED},
    "Failed": {FAILED},
    "Errored": {ERROR},
    "Skipped": {SKIPPED},
    "Omitted": {OMITTED},
    "Completed": {SUCCEEDED, FAILED},
    "Daemoned": set(),
}


def _state(word: str, states: dict[str, str]) -> bool:
    """`a` (succeeded or skipped, as Argo reads a bare task name) or `a.Failed` and kin."""
    if word in ("true", "false"):
        return word == "true"
    name, _, result = word.partition(".")
    if result and result not in _RESULTS:
        raise Unsupported(f"depends: {word}: no task result {result}")
    accepted = _RESULTS[result] if result else {SUCCEEDED, SKIPPED}
    return states[name] in accepted
