"""Command line of the A/B test proxy."""

import json
from pathlib import Path
from typing import Annotated

import typer

from mlsys.common.cli import write_report
from mlsys.common.logging import configure_logging
from mlsys.common.serving import UVICORN_OPTIONS, networks

app = typer.Typer(
    help="AIAnimals A/B test proxy: put it between the app and the API to split searches "
    "between ranking variants (an experiment file says how: random by weight, or sticky "
    "by user), then report CTR and NDCG per variant from the access logs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
ConfigFile = Annotated[
    Path,
    typer.Option(
        "--config",
        help="The experiment (YAML): name, mode (random|user), upstream (the API), "
        "variants (name, weight, and sort_by and/or upstream).",
    ),
]


def _experiment(config: Path):
    from mlsys.ab_test_proxy.config import InvalidConfig, load_experiment

    try:
        return load_experiment(config)
    except InvalidConfig as error:
        typer.echo(f"error: invalid experiment configuration: {error}", err=True)
        raise typer.Exit(2) from error


@app.command()
def serve(
    config: ConfigFile,
    upstream: Annotated[
        str | None, typer.Option(help="The API, instead of the file's `upstream`.")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    trusted_proxies: Annotated[
        str,
        typer.Option(
            help="Proxies in front of this one (an ingress controller) whose "
            "X-Forwarded-For is passed on: addresses or networks, comma separated. "
            "Empty: this proxy is the edge, and the client is who connects.",
        ),
    ] = "",
) -> None:
    """Serve the proxy (the configuration is checked first: a bad one exits 2 naming the
    key). /ab/health, /ab/metrics (searches and latency per variant), /ab/docs."""
    import uvicorn

    from mlsys.ab_test_proxy.proxy import create_app

    experiment = _experiment(config)
    if upstream:
        experiment = experiment.model_validate({**experiment.model_dump(), "upstream": upstream})
    try:
        trusted = networks(trusted_proxies)
    except ValueError as error:
        typer.echo(f"error: --trusted-proxies: {error}", err=True)
        raise typer.Exit(2) from error
    configure_logging()
    app_ = create_app(experiment, trusted=trusted)
    uvicorn.run(app_, host=host, port=port, log_config=None, **UVICORN_OPTIONS)


@app.command()
def check(config: ConfigFile) -> None:
    """Only validate an experiment file (exit 2 with the wrong key, else 0)."""
    experiment = _experiment(config)
    pairs = zip(experiment.variants, experiment.shares(), strict=True)
    typer.echo(f"{experiment.name}: {experiment.mode} split, " + ", ".join(
        f"{v.name} {share:.0%}" for v, share in pairs))  # fmt: skip


@app.command()
def report(
    config: ConfigFile,
    output: Annotated[Path | None, typer.Option(help="Write the report here as JSON.")] = None,
) -> None:
    """CTR and NDCG@10 per variant with 95% intervals, the tests between the variants
    and the sample-ratio-mismatch check, from the access logs the proxy labelled."""
    from mlsys.ab_test_proxy.report import per_search, read_logs
    from mlsys.ab_test_proxy.report import report as build
    from mlsys.aianimals.database import get_engine, upgrade_or_wait

    experiment = _experiment(config)
    configure_logging()
    engine = get_engine()
    upgrade_or_wait(engine)
    result = build(per_search(read_logs(engine, experiment)), experiment)
    typer.echo(json.dumps(result, indent=2))
    if result["sample_ratio"]["mismatch"]:
        typer.echo(
            "warning: sample ratio mismatch: the observed split departs from the configured "
            f"one (p={result['sample_ratio']['p']:.2g}); do not trust the comparison",
            err=True,
        )
    if output:
        write_report(output, result)


if __name__ == "__main__":
    app()
