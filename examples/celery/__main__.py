"""A worker for the example app: ``python -m examples.celery [celery worker options]``.

    OTEL_SERVICE_NAME=shop-worker OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \\
        python -m examples.celery                   # prefork pool, 2 processes
    python -m examples.celery --pool=solo           # tasks in the worker process

The same worker as ``celery -A examples.celery.app worker``; the deploy stack
(``deploy/docker-compose.yaml``) starts it this way. Importing the app runs
``jobpulse.instrument()`` before the worker starts its pool.
"""

from __future__ import annotations

import sys

from .app import app


def main() -> None:
    # options given on the command line win (the last value counts)
    app.worker_main(["worker", "--loglevel=INFO", "--concurrency=2", *sys.argv[1:]])


if __name__ == "__main__":
    main()
