"""Command-line options that several components' commands share, written once."""

from typing import Annotated

import typer

# A consumer's stop condition: tests and one-off runs drain the queue and exit.
IdleSeconds = Annotated[
    float | None,
    typer.Option(
        help="Stop after this many seconds without a message (default: run until stopped)."
    ),
]
