"""Command line of the local workflow runner."""

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Run the platform's Argo Workflows and CronWorkflows here, step by step, as the "
    "cluster would: in their images (docker) or as local processes (process).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """One command for now: run."""


def _parameters(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise typer.BadParameter(f"{pair!r}: expected NAME=VALUE")
        values[name] = value
    return values


def _built(record: Path) -> tuple[str, str] | None:
    """The registry and tag `make build_all` recorded, if it did."""
    if not record.is_file():
        return None
    values = dict(line.split("=", 1) for line in record.read_text().split())
    return values["REGISTRY"], values["TAG"]


def _mib(count: int | None) -> str:
    return f"{count / 2**20:.0f}" if count else "-"


@app.command()
def run(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Workflow YAML.")],
    parameter: Annotated[
        list[str] | None, typer.Option("-p", "--parameter", help="NAME=VALUE, repeatable.")
    ] = None,
    runner: Annotated[str, typer.Option(help="docker: each step in its image; process: here.")] = (
        "docker"
    ),
    manifests: Annotated[
        Path, typer.Option(help="The kustomizations whose objects the steps' pods use.")
    ] = Path("infrastructure/manifests"),
    network: Annotated[
        str | None, typer.Option(help="Docker network the steps join (default: a new one).")
    ] = None,
    images: Annotated[
        Path, typer.Option(help="REGISTRY= and TAG= of the built images (make build_all).")
    ] = Path("infrastructure/images.built.env"),
    logs: Annotated[Path | None, typer.Option(help="Folder of the steps' logs.")] = None,
    show_logs: Annotated[
        bool, typer.Option(help="Print each step's log after it, besides writing it.")
    ] = False,
) -> None:
    """Run FILE's entrypoint (and exit handler); print each step's attempts; exit 1 when the
    workflow fails, 2 when it uses what the runner does not support."""
    from rich.console import Console
    from rich.table import Table

    from mlsys.pipelines.run import run_workflow, succeeded
    from mlsys.pipelines.workflow import Unsupported

    if runner not in ("docker", "process"):
        raise typer.BadParameter("docker or process", param_hint="--runner")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    logs = logs or Path(".mlsys") / "pipelines" / f"{file.stem}-{stamp}"
    try:
        phase, rows = run_workflow(
            file,
            _parameters(parameter or []),
            runner=runner,
            logs=logs,
            manifests=manifests,
            network=network,
            images=_built(images),
            echo=typer.echo,
            show_logs=show_logs,
        )
    except Unsupported as error:
        typer.echo(f"refused: {error}", err=True)
        raise typer.Exit(2) from error
    table = Table(title=f"{file.name}: {phase}")
    for column in ("step", "attempt", "phase", "exit", "reason", "seconds", "peak MiB", "limit"):
        table.add_column(
            column, justify="left" if column in ("step", "phase", "reason") else "right"
        )
    for row in rows:
        exit_code = "-" if row.exit_code is None else str(row.exit_code)
        seconds = f"{row.seconds:.1f}"
        table.add_row(row.step, str(row.attempt), row.phase, exit_code, row.reason, seconds,
                      _mib(row.peak_bytes), _mib(row.limit_bytes))  # fmt: skip
    Console(width=160).print(table)
    typer.echo(f"logs: {logs}")
    if not succeeded(phase):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
