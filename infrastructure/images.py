"""The images of infrastructure/images.toml: their names, and the `docker build` of each.

    python3 infrastructure/images.py names
    python3 infrastructure/images.py bases
    python3 infrastructure/images.py build NAME --registry R --tag T [--bases debian]
        [--dry-run] [--push]
    python3 infrastructure/images.py record --registry R --tag T [--output FILE]
    python3 infrastructure/images.py standins [--dry-run]

Standard library only: the Makefile runs it before anything is installed.
"""

import argparse
import hashlib
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES: dict[str, dict] = tomllib.loads((ROOT / "infrastructure" / "images.toml").read_text())
# What `make build_all` built last (git-ignored): `make deploy_*` deploy this tag.
BUILT = ROOT / "infrastructure" / "images.built.env"
# The Dockerfile's base images, by build argument: its defaults are the official pinned
# images; BASES=debian names the equivalents `make base_images` builds from Debian's archive.
OFFICIAL_BASES = dict(
    re.findall(r"^ARG (\w+_IMAGE)=(\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
)
# The Python base's tag names the recipe (a digest of base_images.sh): a changed recipe is a
# new base, never an old image kept under the same name.
_RECIPE = hashlib.sha256((ROOT / "infrastructure/scripts/base_images.sh").read_bytes())
DEBIAN_BASES = {
    "PYTHON_IMAGE": f"mlsys-base/python:3.11-bookworm-{_RECIPE.hexdigest()[:8]}",
    "UV_IMAGE": "mlsys-base/uv:" + OFFICIAL_BASES["UV_IMAGE"].rsplit(":", 1)[1],
}

# Third-party service images rebuilt from Debian's packages (standins.toml).
STANDINS: dict[str, dict] = tomllib.loads(
    (ROOT / "infrastructure" / "standins" / "standins.toml").read_text()
)


def docker() -> str:
    """The client: /usr/bin/docker where it is (Debian's builds with BuildKit without the
    buildx plugin; Docker's own packages pair it with buildx), else `docker` on PATH."""
    if os.environ.get("DOCKER"):
        return os.environ["DOCKER"]
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


def run_docker(step: list[str]) -> None:
    """A `docker ...` step with this machine's client, BuildKit on."""
    environment = os.environ | {"DOCKER_BUILDKIT": "1"}
    subprocess.run([docker(), *step[1:]], cwd=ROOT, check=True, env=environment)


def tag(name: str, registry: str, version: str) -> str:
    return f"{registry}/mlsys-{name.replace('_', '-')}:{version}"


def buildable(name: str, bases: str) -> bool:
    """A third-party service's Dockerfile starts from its vendor's image, which only a
    registry has: it is built with the official bases only."""
    return bases == "official" or "package" in IMAGES[name]


def build_command(name: str, registry: str, version: str, bases: str = "official") -> list[str]:
    image = IMAGES[name]
    command = ["docker", "build", "-f", image.get("dockerfile", "Dockerfile")]
    if "package" in image:
        arguments = {
            "PACKAGE": image["package"],
            "COMMAND": shlex.join(image["command"]),
            "FILES": " ".join(image.get("files", [])),
            "APT_PACKAGES": " ".join(image.get("apt", [])),
            "WRITABLE": " ".join(image.get("writable", [])),
            "BYTECODE": " ".join(image.get("bytecode", [])),
        }
        if image.get("extras"):
            arguments["EXTRAS"] = " ".join(image["extras"])
        if bases == "debian":
            arguments |= DEBIAN_BASES
        for key, value in arguments.items():
            command += ["--build-arg", f"{key}={value}"]
        # PyPI through a TLS-intercepting proxy: its CA reaches uv as a BuildKit secret,
        # never a layer (only when SSL_CERT_FILE names one).
        if os.environ.get("SSL_CERT_FILE") and Path(os.environ["SSL_CERT_FILE"]).is_file():
            command += ["--secret", f"id=ca_bundle,src={os.environ['SSL_CERT_FILE']}"]
    return [*command, "-t", tag(name, registry, version), "."]


def size_mb(reference: str) -> int | None:
    result = subprocess.run(
        [docker(), "image", "inspect", "--format", "{{.Size}}", reference],
        capture_output=True,
        text=True,
    )
    return int(result.stdout) // 1_000_000 if result.returncode == 0 else None


def build(args: argparse.Namespace) -> int:
    if not buildable(args.name, args.bases):
        print(
            f"{args.name}: not built with BASES={args.bases}: its Dockerfile starts from "
            f"its vendor's image ({IMAGES[args.name]['dockerfile']}), which needs a registry"
        )
        return 0
    steps = [build_command(args.name, args.registry, args.tag, args.bases)]
    if args.push:
        steps.append(["docker", "push", tag(args.name, args.registry, args.tag)])
    for step in steps:
        if args.dry_run:
            print(shlex.join(step))
            continue
        run_docker(step)
    if not args.dry_run:
        print(f"{tag(args.name, args.registry, args.tag)}: {size_mb(steps[0][-2])} MB")
    return 0


def record(args: argparse.Namespace) -> int:
    """Write what was built, for `make deploy_*`: the same registry and tag, never drifted."""
    text = f"REGISTRY={args.registry}\nTAG={args.tag}\n"
    if args.dry_run:
        print(f"would write {args.output}: {text!r}")
    else:
        (ROOT / args.output).write_text(text)
    return 0


def standins(args: argparse.Namespace) -> int:
    """Build the stand-ins of standins.toml on the Debian base (`make base_images`)."""
    for name, standin in STANDINS.items():
        folder = f"infrastructure/standins/{name}"
        step = ["docker", "build", "--build-arg", f"DEBIAN_IMAGE={DEBIAN_BASES['PYTHON_IMAGE']}",
                "-t", standin["image"], folder]  # fmt: skip
        if args.dry_run:
            print(shlex.join(step))
            continue
        run_docker(step)
        print(f"{standin['image']} (for {standin['replaces']}): {size_mb(standin['image'])} MB")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="action", required=True)
    commands.add_parser("names", help="print the image names")
    commands.add_parser("bases", help="print the Debian-built bases: NAME=IMAGE lines")
    build_parser = commands.add_parser("build", help="build one image (and push it)")
    build_parser.add_argument("name", choices=sorted(IMAGES))
    build_parser.add_argument("--push", action="store_true")
    build_parser.add_argument("--bases", choices=["official", "debian"], default="official")
    record_parser = commands.add_parser("record", help="record the registry and tag built")
    record_parser.add_argument("--output", default=str(BUILT.relative_to(ROOT)))
    commands.add_parser("standins", help="build the service stand-ins of standins.toml")
    for command in commands.choices.values():
        command.add_argument("--registry", default="localhost:5000")
        command.add_argument("--tag", default="latest")
        command.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args()
    if args.action == "names":
        print(" ".join(IMAGES))
        return 0
    if args.action == "bases":
        print("\n".join(f"{key}={value}" for key, value in DEBIAN_BASES.items()))
        return 0
    actions = {"build": build, "record": record, "standins": standins}
    return actions[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
