"""jobpulse + Celery example: ``app`` (jobpulse turned on where the app is created),
``tasks`` (steps, heartbeats, dependency calls, retries, a task that gets stuck),
``enqueue`` (the producer) and ``__main__`` (a worker: ``python -m examples.celery``).
Run everything from the repository root; see README.md here.
"""
