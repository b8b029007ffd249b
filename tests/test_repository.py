"""The repository stands alone: nothing tracked points outside it (a clone has nothing else)."""

import re
import subprocess
from pathlib import Path

from tests.helpers.paths import ROOT

# A relative path that climbs one folder or more (not the `...` of prose or code).
CLIMBING = re.compile(r"(?<![\w.])(?:\.\./)+[\w./-]*")


def tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    files = []
    for name in filter(None, names):
        path = ROOT / name.decode()
        data = path.read_bytes() if path.is_file() else b"\0"
        if b"\0" not in data[:8192]:  # text, not an image
            files.append(path)
    return files


def outside(reference: str, file: Path) -> bool:
    """Outside the repository whether read from the file's folder or from the root."""
    return all(
        not (base / reference).resolve().is_relative_to(ROOT) for base in (file.parent, ROOT)
    )


def references_outside(files: list[Path]) -> list[str]:
    found = []
    for file in files:
        for number, line in enumerate(file.read_text(errors="replace").splitlines(), 1):
            for reference in CLIMBING.findall(line):
                if outside(reference, file):
                    name = file.relative_to(ROOT) if file.is_relative_to(ROOT) else file
                    found.append(f"{name}:{number}: {reference}")
    return found


def test_no_tracked_file_refers_to_a_path_outside_the_repository():
    files = tracked_text_files()
    assert len(files) > 100 and ROOT / "README.md" in files
    assert references_outside(files) == []


def test_the_check_finds_a_path_outside(tmp_path):
    probe = tmp_path / "probe.md"
    up = ".." + "/"  # spelled apart, or this file would be a finding of its own
    probe.write_text(f"see [design]({up}shared/DESIGN.md) and `cd $(dirname $0)/{up}..`\n")
    assert outside(f"{up}shared/DESIGN.md", ROOT / "README.md")
    assert not outside(f"{up}README.md", ROOT / "docs" / "architecture.md")
    assert not outside(f"{up}..", ROOT / "infrastructure" / "scripts" / "deploy.sh")
    assert len(references_outside([probe])) == 2  # from tmp_path both climb out
