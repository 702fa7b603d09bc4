"""``rq worker -c tests.integration.guardrails.rq_settings``: jobpulse with enforced guardrails,
Redis DB 4 for the attempt memory and the quarantine store."""

import os

import jobpulse

REDIS_URL = os.environ.get("JOBPULSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/4")

jobpulse.instrument(guardrails={"enforce": True, "redis": REDIS_URL})
