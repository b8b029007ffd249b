"""Command line of the BI."""

import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Streamlit BI for beverage demand forecasting (sales, predictions vs actuals, models).",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8501,
) -> None:
    """Serve the BI; it reads the database and MLflow configured by the environment.

    It listens only once the database holds the schema this version reads (waiting for
    `python -m mlsys.data_registration migrate` if need be), so until then it is not ready.
    """
    from mlsys.beverage.database import upgrade_or_wait
    from mlsys.common.logging import configure_logging
    from mlsys.common.streamlit_apps import serve_streamlit

    configure_logging()
    upgrade_or_wait()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    serve_streamlit(Path(__file__).with_name("app.py"), host, port)


@app.command()
def version() -> None:
    """Print the installed versions of the BI's main libraries."""
    import streamlit

    typer.echo(f"streamlit {streamlit.__version__}")


if __name__ == "__main__":
    app()
