"""Workflows executed by the process runner (the docker runner's are in
tests/containers/test_pipelines_docker.py): order, parameters, `when`, `depends`,
retries, deadlines and the exit handler, as Argo's controller executes them."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlsys.pipelines.run import run_workflow
from tests.helpers.monitoring import pushgateway, scrape
from tests.helpers.paths import ROOT


def step(code: str, **extra) -> dict:
    """A container template running Python `code` (its arguments: sys.argv[1:])."""
    container = {"image": "localhost:5000/mlsys-ml:latest", "command": ["python", "-c", code]}
    container |= extra.pop("container", {})
    return {"container": container, **extra}


def workflow(tmp_path: Path, templates: dict[str, dict], entrypoint: str = "main",
             **spec) -> Path:  # fmt: skip
    document = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "test", "namespace": "n"},
        "spec": {"entrypoint": entrypoint,
                 "templates": [{"name": n, **t} for n, t in templates.items()], **spec},
    }  # fmt: skip
    path = tmp_path / "workflow.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def run(path: Path, tmp_path: Path, **parameters):
    lines: list[str] = []
    phase, rows = run_workflow(path, parameters, runner="process", logs=tmp_path / "logs",
                               echo=lines.append)  # fmt: skip
    return phase, rows, lines


APPEND = "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')"


def test_a_dag_runs_in_dependency_order_and_passes_output_parameters(tmp_path):
    journal = tmp_path / "journal"
    path = workflow(
        tmp_path,
        {
            "write": step(
                "import sys; open(sys.argv[1], 'w').write('42')",
                container={"args": ["/tmp/version"],
                           "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]},
                volumes=[{"name": "tmp", "emptyDir": {}}],
                outputs={"parameters": [
                    {"name": "version", "valueFrom": {"path": "/tmp/version"}}]},
            ),
            "record": step(APPEND, container={"args": [str(journal), "{{inputs.parameters.v}}"]},
                           inputs={"parameters": [{"name": "v"}]}),
            "main": {"dag": {"tasks": [
                {"name": "last", "template": "record", "depends": "first",
                 "arguments": {"parameters": [
                     {"name": "v", "value": "v{{tasks.first.outputs.parameters.version}}"}]}},
                {"name": "first", "template": "write"},
            ]}},
        },
    )  # fmt: skip
    phase, rows, _ = run(path, tmp_path)
    assert phase == "Succeeded"
    assert [row.step for row in rows] == ["test.first", "test.last"]
    assert journal.read_text() == "v42\n"
    assert all(row.peak_bytes and row.peak_bytes > 1_000_000 for row in rows)


def test_when_and_workflow_parameters_decide_what_runs(tmp_path):
    journal = tmp_path / "journal"
    say = step(APPEND, container={"args": [str(journal), "{{inputs.parameters.word}}"]},
               inputs={"parameters": [{"name": "word"}]})  # fmt: skip

    def call(name, word, when):
        return {"name": name, "template": "say", "when": when,
                "arguments": {"parameters": [{"name": "word", "value": word}]}}  # fmt: skip

    path = workflow(
        tmp_path,
        {"say": say, "main": {"steps": [
            [call("big", "big", "{{workflow.parameters.size}} > 100")],
            [call("small", "small", "{{workflow.parameters.size}} <= 100")],
        ]}},
        arguments={"parameters": [{"name": "size", "value": "1000"}]},
    )  # fmt: skip
    assert run(path, tmp_path)[0] == "Succeeded"
    assert run(path, tmp_path, size="10")[0] == "Succeeded"
    assert journal.read_text() == "big\nsmall\n"


def test_a_failing_step_is_retried_as_its_strategy_says_then_fails_the_run(tmp_path):
    counter = tmp_path / "attempts"
    flaky = ("import sys, pathlib; p = pathlib.Path(sys.argv[1]); "
             "n = len(p.read_text()) if p.exists() else 0; p.write_text('x' * (n + 1)); "
             "sys.exit(0 if n + 1 >= int(sys.argv[2]) else 3)")  # fmt: skip
    retry = {"limit": 2, "retryPolicy": "OnFailure", "backoff": {"duration": "0.1s", "factor": 2}}
    templates = {
        "flaky": step(flaky, container={"args": [str(counter), "{{workflow.parameters.needs}}"]},
                      retryStrategy=retry),
        "after": step("pass"),
        "main": {"dag": {"tasks": [{"name": "flaky", "template": "flaky"},
                                   {"name": "after", "template": "after", "depends": "flaky"}]}},
    }  # fmt: skip
    parameters = {"arguments": {"parameters": [{"name": "needs", "value": "3"}]}}
    phase, rows, _ = run(workflow(tmp_path, templates, **parameters), tmp_path)
    assert phase == "Succeeded"
    assert [(r.attempt, r.phase, r.exit_code) for r in rows] == [
        (1, "Failed", 3), (2, "Failed", 3), (3, "Succeeded", 0), (1, "Succeeded", 0)]  # fmt: skip

    counter.unlink()
    phase, rows, lines = run(workflow(tmp_path, templates, **parameters), tmp_path, needs="4")
    assert phase == "Failed"
    assert [(r.step, r.attempt, r.phase) for r in rows] == [
        ("test.flaky", 1, "Failed"),
        ("test.flaky", 2, "Failed"),
        ("test.flaky", 3, "Failed"),
    ]
    assert "test.flaky: Failed (exit 3)" in "\n".join(lines)  # `after` never started


def test_a_failure_another_task_handles_does_not_fail_the_dag(tmp_path):
    templates = {
        "fail": step("raise SystemExit(1)"),
        "cleanup": step("pass"),
        "main": {"dag": {"tasks": [
            {"name": "train", "template": "fail"},
            {"name": "cleanup", "template": "cleanup", "depends": "train.Failed"},
            {"name": "publish", "template": "cleanup", "depends": "train"},
        ]}},
    }  # fmt: skip
    phase, rows, _ = run(workflow(tmp_path, templates), tmp_path)
    assert phase == "Succeeded"
    assert [row.step for row in rows] == ["test.train", "test.cleanup"]  # publish omitted


def test_after_a_failure_nobody_handles_no_new_task_starts(tmp_path):
    templates = {
        "fail": step("raise SystemExit(1)"),
        "ok": step("pass"),
        "main": {"dag": {"tasks": [{"name": "first", "template": "fail"},
                                   {"name": "independent", "template": "ok"}]}},
    }  # fmt: skip
    phase, rows, _ = run(workflow(tmp_path, templates), tmp_path)
    assert phase == "Failed"
    assert [row.step for row in rows] == ["test.first"]  # Argo's failFast


def test_deadlines_stop_a_step_and_the_exit_handler_sees_the_outcome(tmp_path):
    journal = tmp_path / "journal"
    templates = {
        "sleep": step("import time; time.sleep(30)", activeDeadlineSeconds=1),
        "exit": step(APPEND, container={"args": [str(journal), "{{workflow.status}}"]}),
        "main": {"steps": [[{"name": "sleep", "template": "sleep"}]]},
    }
    phase, rows, _ = run(workflow(tmp_path, templates, onExit="exit"), tmp_path)
    assert phase == "Failed"
    assert (rows[0].phase, rows[0].reason) == ("Failed", "DeadlineExceeded")
    assert rows[0].seconds < 10
    assert journal.read_text() == "Failed\n"


def test_the_command_line_prints_the_summary_and_exits_as_the_workflow_ends(tmp_path):
    ok = workflow(tmp_path, {"main": step("print('hello')")})
    done = subprocess.run([sys.executable, "-m", "mlsys.pipelines", "run", str(ok), "--runner",
                           "process", "--logs", str(tmp_path / "logs")],
                          cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "workflow.yaml: Succeeded" in done.stdout and "test" in done.stdout
    assert (tmp_path / "logs" / "test.1.log").read_text() == "hello\n"

    (tmp_path / "bad.yaml").write_text(
        ok.read_text().replace("command:", "lifecycle: {}\n      command:")
    )
    refused = subprocess.run([sys.executable, "-m", "mlsys.pipelines", "run",
                              str(tmp_path / "bad.yaml"), "--runner", "process"],
                             cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert refused.returncode == 2
    assert "container.lifecycle: not supported by the local runner" in refused.stderr

    failing = workflow(tmp_path, {"main": step("raise SystemExit(5)")})
    failed = subprocess.run([sys.executable, "-m", "mlsys.pipelines", "run", str(failing),
                             "--runner", "process", "--logs", str(tmp_path / "logs2")],
                            cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert failed.returncode == 1
    assert "workflow.yaml: Failed" in failed.stdout


@pytest.mark.slow  # registers the real file: 7 s
def test_the_shipped_weekly_registration_runs_as_local_processes(tmp_path, monkeypatch):
    """Without a container engine: register-next-week as written for the cluster, its
    /app paths (the files the image carries) read from the repository. Its step pushes
    its run to the Pushgateway, as on the cluster (job `data-registration-register`)."""
    monkeypatch.chdir(ROOT)
    registered = subprocess.run(
        [sys.executable, "-m", "mlsys.data_registration", "register", "--master-dir",
         "dataset/beverage", "--sales", "dataset/beverage/item_sale_records_202107_202112.csv",
         "--until-week", "2021-48"], capture_output=True, text=True,
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    shipped = ROOT / "infrastructure" / "argo" / "register-next-week.yaml"
    with pushgateway(tmp_path / "pushgateway.log") as gateway:
        monkeypatch.setenv("METRICS_PUSHGATEWAY_URL", gateway)
        phase, _, _ = run(shipped, tmp_path)
        pushed = scrape(f"{gateway}/metrics")
    assert phase == "Succeeded", (tmp_path / "logs" / "register-next-week.1.log").read_text()
    log = (tmp_path / "logs" / "register-next-week.1.log").read_text()
    assert "selected: 700, written: 700" in log  # week 49: 7 days x 10 stores x 10 items
    group = frozenset({("job", "data-registration-register"), ("instance", "")})
    assert pushed[("job_success", group)] == 1
    assert pushed[("job_items", group)] == 700
