"""Command-line options that several components' commands share, written once."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

# A consumer's stop condition: tests and one-off runs drain the queue and exit.
IdleSeconds = Annotated[
    float | None,
    typer.Option(
        help="Stop after this many seconds without a message (default: run until stopped)."
    ),
]


def photo_sample(minimum: int) -> Callable[[str], int | None]:
    """The parser of a `--limit` option: a stratified sample of this many photos, or `all`.
    `all` is a value, not the option's absence, so that a CronWorkflow's parameter can ask
    for either: Argo substitutes a parameter into an argument but cannot drop one."""

    def parse(value: str) -> int | None:
        if value == "all":
            return None
        try:
            count = int(value)
        except ValueError:
            raise typer.BadParameter(f"{value!r} is neither a number of photos nor 'all'") from None
        if count < minimum:
            raise typer.BadParameter(f"{count} photos: at least {minimum} needed")
        return count

    return parse


def write_report(path: Path, report: dict) -> None:
    """A command's report as JSON at `--output` (its folder made if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
