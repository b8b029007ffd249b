"""Every command line the platform runs a component with, or tells a user to type, names a
command the component has and only options that command has: the compose files, the
Kubernetes manifests, the Argo CronWorkflows, images.toml, the Makefile, the README and
docs/. A renamed or dropped option fails here, not in a container minutes into a run (the
compose test's small classifier training once passed `--epochs` to a model that had no
epochs left). Commands and options are read from the Typer apps themselves."""

import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers.manifests import MANIFESTS, NAMESPACES, local_resources
from tests.helpers.paths import ROOT
from tests.test_cli_help import group

YAML_FILES = [
    ROOT / "docker-compose.yaml",
    ROOT / "tests/containers/compose-small.yaml",
    *sorted((ROOT / "infrastructure/argo").glob("*.yaml")),
]
TEXT_FILES = [ROOT / "Makefile", ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `-m mlsys.X` and the words after it, up to what ends a shell command or a code span.
IN_TEXT = re.compile(r"-m (mlsys\.\w+)([^\n&;|`#)]*)")


def from_shell(text: str) -> Iterator[list[str]]:
    """The `python -m mlsys.X ...` commands of a shell line (`a && b; c`), also where it
    is the string of `sh -c`."""
    for part in re.split(r"&&|\|\||[;&|\n]", text):
        if "-m mlsys." in part:
            yield from from_argv(shlex.split(part))


def from_argv(argv: list[str]) -> Iterator[list[str]]:
    if "-m" in argv and argv[argv.index("-m") + 1].startswith("mlsys."):
        yield argv
    else:
        for word in argv:
            if " -m mlsys." in word:
                yield from from_shell(word)


def command_lines(document) -> Iterator[list[str]]:
    """Every component's command line in a parsed YAML or TOML document: a container's
    command and args, a compose service's command (a list, or a shell string)."""
    if isinstance(document, dict):
        command = document.get("command")
        if isinstance(command, str):
            yield from from_shell(command)
        elif isinstance(command, list):
            yield from from_argv([str(word) for word in [*command, *document.get("args", [])]])
        for value in document.values():
            yield from command_lines(value)
    elif isinstance(document, list):
        for item in document:
            yield from command_lines(item)


def problems(argv: list[str]) -> list[str]:
    """What is wrong with one command line `... -m mlsys.X [COMMAND [ARGS]]`."""
    start = argv.index("-m") + 1
    component, rest = argv[start].removeprefix("mlsys."), argv[start + 1 :]
    words = [word.strip("[]()…,.'\"") for word in rest]
    if not words or words[0].startswith("-") or not words[0]:
        return []  # the component's help, or its options alone
    command, name = group(component), f"mlsys.{component}"
    while hasattr(command, "commands") and words and not words[0].startswith("-"):
        if words[0] not in command.commands:  # a group's command (`drift classifier`) too
            return [f"{name} has no command {words[0]!r}"]
        command, name, words = command.commands[words[0]], f"{name} {words[0]}", words[1:]
    if hasattr(command, "commands"):
        return []  # a group's help, or its options alone
    known = {"--help", *(o for p in command.params for o in [*p.opts, *p.secondary_opts])}
    return [
        f"{name} has no option {word.split('=')[0]!r}"
        for word in words
        if word.startswith("--") and word.split("=")[0] not in known
    ]


def all_command_lines() -> list[tuple[str, list[str]]]:
    found = []
    for path in YAML_FILES:
        for document in yaml.safe_load_all(path.read_text()):
            found += [(path.name, argv) for argv in command_lines(document)]
    for namespace in NAMESPACES:
        for document in local_resources(MANIFESTS / namespace):
            found += [(f"manifests/{namespace}", argv) for argv in command_lines(document)]
    images = tomllib.loads((ROOT / "infrastructure/images.toml").read_text())
    found += [("images.toml", argv) for argv in command_lines(images)]
    for path in TEXT_FILES:
        text = path.read_text().replace("\\\n", " ")  # continued lines joined
        for module, words in IN_TEXT.findall(text):
            found.append((path.name, ["-m", module, *words.split()]))
    return found


COMMAND_LINES = all_command_lines()


def test_every_kind_of_file_has_command_lines():
    counts: dict[str, int] = {}
    for source, _ in COMMAND_LINES:
        counts[source.split("/")[0]] = counts.get(source.split("/")[0], 0) + 1
    assert {"docker-compose.yaml", "compose-small.yaml", "manifests", "images.toml",
            "Makefile", "running.md", "violation-retrain.yaml"} <= counts.keys()  # fmt: skip
    assert sum(counts.values()) > 100


@pytest.mark.parametrize(
    "source", sorted({source for source, _ in COMMAND_LINES}), ids=lambda source: source
)
def test_command_lines_name_real_commands_and_options(source):
    wrong = [
        f"{' '.join(argv)}: {problem}"
        for found, argv in COMMAND_LINES
        if found == source
        for problem in problems(argv)
    ]
    assert wrong == []


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("python -m mlsys.violation_detection retrain --epochs 1 --limit 200",
         "mlsys.violation_detection retrain has no option '--epochs'"),
        ("python -m mlsys.batch initial-lode --generated /tmp/g",
         "mlsys.batch has no command 'initial-lode'"),
    ],
)  # fmt: skip
def test_a_wrong_option_or_command_is_caught(line, problem, tmp_path):
    compose = tmp_path / "compose.yaml"
    compose.write_text(yaml.safe_dump({"services": {"job": {"command": f"sh -c '{line}'"}}}))
    [argv] = [argv for document in [yaml.safe_load(compose.read_text())]
              for argv in command_lines(document)]  # fmt: skip
    assert problems(argv) == [problem]


def test_text_command_lines_stop_at_the_end_of_the_shell_command():
    text = "`python -m mlsys.search train-ranker --output f.json` && echo --nope # --no"
    [(module, words)] = IN_TEXT.findall(text)
    assert problems(["-m", module, *words.split()]) == []


def test_path_of_each_file_exists():
    assert all(Path(path).exists() for path in YAML_FILES + TEXT_FILES)
