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


def fetch(vendor: str) -> str:
    """Fails transiently on every attempt; counts its runs in ``runs:{job id}``."""
    job = get_current_job()
    assert job is not None
    job.connection.incr(f"runs:{job.id}")
    raise ConnectionError(f"vendor {vendor} reset the connection")
