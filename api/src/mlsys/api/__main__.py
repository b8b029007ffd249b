"""Command line of the AIAnimals API."""

from typing import Annotated

import typer

from mlsys.common.logging import configure_logging
from mlsys.common.serving import UVICORN_OPTIONS

app = typer.Typer(
    help="The AIAnimals API (FastAPI, /v0). Local profile by default: SQLite, in-process "
    "cache and the local search engine under .mlsys/; MLSYS_PROFILE=services uses PostgreSQL, "
    "Redis, RabbitMQ and Elasticsearch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (the local profile needs 1).")
    ] = 1,
) -> None:
    """Serve the API with uvicorn; Swagger UI at /v0/docs, Prometheus metrics at /metrics."""
    import uvicorn

    configure_logging()
    typer.echo(f"AIAnimals API: http://{host}:{port}/v0/docs")
    uvicorn.run(
        "mlsys.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=None,
        **UVICORN_OPTIONS,
    )


@app.command("openapi")
def openapi() -> None:
    """Print the OpenAPI schema (JSON) of the API."""
    import json

    from mlsys.api.app import create_app

    typer.echo(json.dumps(create_app().openapi(), ensure_ascii=False, indent=2))


if __name__ == "__main__":
    app()
