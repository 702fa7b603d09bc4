"""``rq worker -c tests.integration.guardrails.rq_settings``: jobpulse with guardrails
(enforced unless ``JP_GUARD_ENFORCE=0``), Redis DB 4 for the attempt memory and the
quarantine store; ``jobs.fetch`` gets a jobpulse budget of 2 attempts."""

import os

import jobpulse

REDIS_URL = os.environ.get("JOBPULSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/4")
jobpulse.instrument(
    guardrails={"enforce": os.environ.get("JP_GUARD_ENFORCE", "1") == "1", "redis": REDIS_URL},
    budgets={"tests.integration.guardrails.jobs.fetch": jobpulse.Budget(max_attempts=2)},
)
