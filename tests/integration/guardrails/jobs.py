"""Jobs the guardrails tests run in real workers (importable by worker processes)."""

from __future__ import annotations

from rq import get_current_job


def resize(image: int) -> str:
    """Fails the same way on every attempt until ``fixed:{image}`` is set in Redis."""
    job = get_current_job()
    assert job is not None
    if not job.connection.get(f"fixed:{image}"):
        raise ValueError(f"image {image} is corrupt at offset 4096")
    return "resized"
