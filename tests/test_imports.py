"""The import rule (issue 33), on the source: a member imports only the mlsys packages its
own pyproject.toml declares, and declares only shared packages (mlsys.common, and a
product's package: mlsys.beverage or mlsys.aianimals), never another component; a
product's package declares only mlsys.common. The workspace installs every member into one
environment, so an undeclared import passes every other test and fails only in the
member's image."""

import ast
import re
import shutil
import tomllib
from pathlib import Path

from tests.helpers.paths import ROOT

# Each shared package and the shared packages it may use.
SHARED = {"common": set(), "beverage": {"common"}, "aianimals": {"common"}}


def members(root: Path) -> dict[str, Path]:
    """Package name (mlsys.<name>) -> its member's folder."""
    found = {}
    for project in sorted(root.glob("*/pyproject.toml")):
        for package in (project.parent / "src" / "mlsys").glob("*/"):
            found[package.name] = project.parent
    return found


def declared(folder: Path) -> set[str]:
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    names = [re.match(r"mlsys-([a-z-]+)", d) for d in project.get("dependencies", [])]
    return {name.group(1).replace("-", "_") for name in names if name}


def imported(folder: Path) -> list[tuple[str, str]]:
    """(mlsys package, file:line) for every absolute import of one, nested ones included."""
    found = []
    for path in sorted((folder / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            for module in modules:
                parts = module.split(".")
                if parts[0] == "mlsys" and len(parts) > 1:
                    found.append((parts[1], f"{path.relative_to(folder.parent)}:{node.lineno}"))
    return found


def import_faults(root: Path) -> list[str]:
    faults = []
    for name, folder in members(root).items():
        uses = declared(folder) - {name}
        allowed = SHARED.get(name, set(SHARED))
        faults += [f"{name} declares {other}, which it may not use" for other in
                   sorted(uses - allowed)]  # fmt: skip
        for package, where in imported(folder):
            if package != name and package not in uses & allowed:
                faults.append(f"{where}: {name} imports mlsys.{package}")
    return faults


def test_every_member_imports_only_the_shared_packages_it_declares():
    assert import_faults(ROOT) == []


def test_a_component_importing_another_is_caught(tmp_path):
    for member in ("common", "aianimals", "search", "api"):
        shutil.copytree(ROOT / member, tmp_path / member,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    assert import_faults(tmp_path) == []
    probe = tmp_path / "api/src/mlsys/api/probe.py"
    probe.write_text("def load():\n    from mlsys.search.train import train\n")
    project = tmp_path / "aianimals/pyproject.toml"
    project.write_text(
        project.read_text().replace('"mlsys-common', '"mlsys-api", "mlsys-common', 1)
    )
    assert import_faults(tmp_path) == [
        "aianimals declares api, which it may not use",
        "api/src/mlsys/api/probe.py:2: api imports mlsys.search",
    ]
