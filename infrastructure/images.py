"""The images of infrastructure/images.toml: their names, and the `docker build` of each.

    python3 infrastructure/images.py names
    python3 infrastructure/images.py build NAME --registry R --tag T [--dry-run] [--push]

Standard library only: the Makefile runs it before anything is installed.
"""

import argparse
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES: dict[str, dict] = tomllib.loads((ROOT / "infrastructure" / "images.toml").read_text())


def tag(name: str, registry: str, version: str) -> str:
    return f"{registry}/mlsys-{name.replace('_', '-')}:{version}"


def build_command(name: str, registry: str, version: str) -> list[str]:
    image = IMAGES[name]
    command = ["docker", "build", "-f", image.get("dockerfile", "Dockerfile")]
    if "package" in image:
        arguments = {
            "PACKAGE": image["package"],
            "COMMAND": shlex.join(image["command"]),
            "FILES": " ".join(image.get("files", [])),
            "APT_PACKAGES": " ".join(image.get("apt", [])),
            "WRITABLE": " ".join(image.get("writable", [])),
        }
        for key, value in arguments.items():
            command += ["--build-arg", f"{key}={value}"]
    return [*command, "-t", tag(name, registry, version), "."]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="action", required=True)
    commands.add_parser("names", help="print the image names")
    build = commands.add_parser("build", help="build one image (and push it)")
    build.add_argument("name", choices=sorted(IMAGES))
    build.add_argument("--registry", default="localhost:5000")
    build.add_argument("--tag", default="latest")
    build.add_argument("--push", action="store_true")
    build.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args()
    if args.action == "names":
        print(" ".join(IMAGES))
        return 0
    steps = [build_command(args.name, args.registry, args.tag)]
    if args.push:
        steps.append(["docker", "push", tag(args.name, args.registry, args.tag)])
    for step in steps:
        if args.dry_run:
            print(shlex.join(step))
        else:
            subprocess.run(step, cwd=ROOT, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
