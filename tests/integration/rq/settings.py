"""``rq worker -c tests.integration.rq.settings``: RQ settings that turn jobpulse on."""

import os

import jobpulse

REDIS_URL = os.environ.get("RQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/2")

jobpulse.instrument()
