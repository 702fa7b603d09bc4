"""The app a test worker loads: ``celery -A tests.integration.celery.worker_app worker``.

Configured from the environment the fixtures set (``JP_CELERY_BROKER``,
``JP_CELERY_QUEUE``); jobpulse is instrumented here, where the app is created,
as the docs tell users to. ``JP_CELERY_CONTRIB=1`` also turns on
opentelemetry-instrumentation-celery (after jobpulse: the harder order).
"""

from __future__ import annotations

import os

import jobpulse

from .tasks import create_app

jobpulse.instrument()
if os.environ.get("JP_CELERY_CONTRIB") == "1":
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    CeleryInstrumentor().instrument()  # type: ignore[no-untyped-call]

_conf = {}
if os.environ.get("JP_CELERY_MAX_TASKS_PER_CHILD"):
    _conf["worker_max_tasks_per_child"] = int(os.environ["JP_CELERY_MAX_TASKS_PER_CHILD"])

app = create_app(os.environ["JP_CELERY_BROKER"], os.environ["JP_CELERY_QUEUE"], **_conf)
