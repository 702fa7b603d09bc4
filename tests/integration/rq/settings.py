"""``rq worker -c tests.integration.rq.settings``: RQ settings that turn jobpulse on."""

import os

import jobpulse

REDIS_URL = os.environ.get("RQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/2")

jobpulse.instrument()

if os.environ.get("RQ_TEST_FORK_FAILS"):
    # The OS refuses the worker's next fork() (as root, no resource limit makes a real
    # fork fail): test_outcomes.py's failed-fork test. Everything else stays real.
    import errno

    _fork = os.fork

    def _refuse() -> int:
        os.fork = _fork
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    os.fork = _refuse
