"""RQ settings for ``rq worker -c settings``: importing them turns jobpulse on.

    OTEL_SERVICE_NAME=shop-rq OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \\
        rq worker -c settings --with-scheduler

``instrument()`` runs once in the worker process, before RQ forks any work
horse; each horse inherits it. Telemetry settings come from the usual
``OTEL_*`` and ``JOBPULSE_*`` variables (see the project README).
"""

import os

import jobpulse

jobpulse.instrument()

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUES = ["default"]
