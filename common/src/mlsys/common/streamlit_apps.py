"""How the platform's Streamlit apps (the BI, the review portal) are served: Streamlit's
own `streamlit run`, in the command's process, after that process started serving its
metrics on METRICS_PORT. Started there and not from the app's script, which Streamlit
runs only when a browser connects: Prometheus would see the app down until then."""

from pathlib import Path

from mlsys.common.metrics import serve_worker_metrics


def serve_streamlit(script: Path, host: str, port: int) -> None:
    """Run `script` with Streamlit on host:port until the server stops (headless, no usage
    statistics, no development mode); the pages' metrics on METRICS_PORT beside it."""
    from streamlit.web import cli  # the app's dependency, not every user's of common

    serve_worker_metrics()
    cli.main(
        ["run", str(script), "--server.address", host, "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--global.developmentMode", "false"],
        prog_name="streamlit",
    )  # fmt: skip
