"""Existing asyncio code needs no decorator: matching coroutines scheduled as tasks become runs."""

from __future__ import annotations

import asyncio

import jobpulse
from jobpulse.testing import capture


async def refresh_prices(n: int) -> int:
    jobpulse.heartbeat(processed=n)
    await asyncio.sleep(0)
    return n


async def unrelated() -> str:
    return "ignored"


def test_create_task_ensure_future_and_loop_create_task_become_runs() -> None:
    with capture(asyncio_jobs=["*.refresh_prices"]) as cap:

        async def main() -> list[object]:
            loop = asyncio.get_running_loop()
            return list(
                await asyncio.gather(
                    asyncio.create_task(refresh_prices(1)),
                    asyncio.ensure_future(refresh_prices(2)),
                    loop.create_task(refresh_prices(3)),
                    asyncio.create_task(unrelated()),
                )
            )

        assert asyncio.run(main()) == [1, 2, 3, "ignored"]
        runs = cap.run_spans()
        assert len(runs) == 3
        for run in runs:
            assert run.name == "tests.unit.test_asyncio_adapter.refresh_prices"
            assert run.attributes["jobpulse.system"] == "asyncio"
            assert run.attributes["jobpulse.heartbeat.count"] == 1
        assert sorted(r.attributes["jobpulse.progress.processed"] for r in runs) == [1, 2, 3]


def test_a_failing_task_is_an_error_run_and_the_task_still_fails() -> None:
    async def sync_inventory() -> None:
        raise LookupError("sku 42 missing")

    with capture(asyncio_jobs=["*sync_inventory"]) as cap:

        async def main() -> BaseException | None:
            task = asyncio.create_task(sync_inventory())
            await asyncio.wait([task])
            return task.exception()

        exc = asyncio.run(main())
        assert isinstance(exc, LookupError)
        (run,) = cap.run_spans()
        assert run.attributes["jobpulse.outcome"] == "error"
        assert run.attributes["error.type"] == "LookupError"


def test_uninstrument_restores_create_task() -> None:
    import asyncio.base_events

    original = asyncio.base_events.BaseEventLoop.create_task
    with capture(asyncio_jobs=["*"]):
        assert asyncio.base_events.BaseEventLoop.create_task is not original
    assert asyncio.base_events.BaseEventLoop.create_task is original
