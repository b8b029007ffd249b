"""One logging setup for every component: structured key=value lines on stderr."""

import logging
import sys


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="time=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s",
        force=True,
    )
    # Third-party libraries chatter at INFO; keep our own lines readable.
    for noisy in ("alembic", "elastic_transport", "urllib3", "mlflow", "numexpr", "pika"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
