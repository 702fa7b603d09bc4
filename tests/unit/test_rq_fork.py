"""Forking an RQ work horse: the horse keeps its worker's identity and starts cheaply.

Each fork here is a real ``os.fork``; the child reports through a pipe.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from jobpulse import _runtime
from jobpulse.adapters.rq import _fork
from jobpulse.testing import capture
from tests.support.forking import in_child
from tests.support.waiting import wait_until

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")

INSTANCE = "worker-7f3a"


def providers() -> tuple[TracerProvider, MeterProvider, LoggerProvider]:
    resource = Resource({"service.name": "billing", "service.instance.id": INSTANCE})
    return (
        TracerProvider(resource=resource),
        MeterProvider(resource=resource),
        LoggerProvider(resource=resource),
    )


def resources(tp: TracerProvider, mp: MeterProvider, lp: LoggerProvider) -> list[Resource]:
    return [tp.resource, mp._sdk_config.resource, lp.resource]


def test_a_horse_keeps_its_workers_instance_id_without_rebuilding_the_resources() -> None:
    tp, mp, lp = providers()
    before = resources(tp, mp, lp)
    saved = _fork.keep_instance(INSTANCE, (tp, mp, lp))
    try:

        def child() -> Any:
            after = resources(tp, mp, lp)
            return {
                "same": [a is b for a, b in zip(after, before, strict=True)],
                "ids": [r.attributes.get("service.instance.id") for r in after],
            }

        found = in_child(child)
    finally:
        _fork.restore(saved)
    # The SDK's fork handlers ran in the child; the merge that changes nothing was skipped.
    assert found == {"same": [True, True, True], "ids": [INSTANCE] * 3}
    for provider in (tp, mp, lp):
        assert "_update_resource" not in vars(provider)  # the worker's providers as they were


def test_a_resource_that_says_something_new_is_still_merged() -> None:
    tp, mp, lp = providers()
    saved = _fork.keep_instance(INSTANCE, (tp, mp, lp))
    try:
        tp._update_resource(Resource({"service.instance.id": INSTANCE}))
        assert tp.resource.attributes["service.instance.id"] == INSTANCE
        tp._update_resource(Resource({"host.name": "box-2"}))
        lp._update_resource(Resource({"service.instance.id": "other"}))
    finally:
        _fork.restore(saved)
    assert tp.resource.attributes["host.name"] == "box-2"
    assert tp.resource.attributes["service.name"] == "billing"
    assert lp.resource.attributes["service.instance.id"] == "other"


def test_without_an_instance_id_the_sdk_does_its_own_detection() -> None:
    tp, mp, lp = providers()
    assert _fork.keep_instance(None, (tp, mp, lp)) == []
    assert all("_update_resource" not in vars(p) for p in (tp, mp, lp))


def test_a_forked_childs_watchdog_runs_its_timers_and_stops() -> None:
    with capture(watchdog_interval=0.02):
        rt = _runtime.get()
        assert rt is not None

        def child() -> Any:
            fired: list[str] = []
            assert rt.watchdog is not None
            rt.watchdog.after(0.01, lambda: fired.append(threading.current_thread().name))
            deadline = time.monotonic() + 10
            while not fired and time.monotonic() < deadline:
                time.sleep(0.005)
            started = time.monotonic()
            rt.watchdog.stop()
            return {"fired": fired, "stop_seconds": time.monotonic() - started}

        found = in_child(child)
        assert found["fired"] == ["jobpulse-watchdog"]  # the child has a watchdog of its own
        assert found["stop_seconds"] < 1.0  # and it stops on request, not at its 2 s limit
        # the parent's watchdog is untouched by the child's
        fired: list[int] = []
        assert rt.watchdog is not None
        rt.watchdog.after(0.0, lambda: fired.append(1))
        wait_until(lambda: fired == [1], 10, what="a timer on the parent's watchdog")


# -- the job's name, in the worker, without unpickling its payload ---------------------
UNPICKLED: list[str] = []


class Loud:
    """An argument that says when it is unpickled (its __setstate__ runs user code)."""

    def __init__(self) -> None:
        self.rows = 17

    def __setstate__(self, state: dict[str, Any]) -> None:
        UNPICKLED.append("Loud")
        self.__dict__.update(state)


def nightly_export(arg: Any) -> None:  # pragma: no cover - never run, only named
    pass


def restored(serializer: Any = None, func: Any = nightly_export, args: tuple[Any, ...] = ()) -> Any:
    """A job as the worker holds it after ``Job.fetch``: payload not yet unpickled."""
    from redis import Redis
    from rq.job import Job

    connection = Redis()  # never connected: nothing here talks to Redis
    job = Job.create(func, args=args, connection=connection, serializer=serializer)
    fetched = Job(job.id, connection=connection, serializer=serializer)
    fetched.restore({k.encode(): v for k, v in job.to_dict().items()})
    return fetched


def test_the_worker_names_a_job_without_unpickling_its_arguments() -> None:
    from jobpulse.adapters.rq._attrs import job_name_without_unpickling

    UNPICKLED.clear()
    job = restored(args=(Loud(),))
    with capture():  # the RQ adapter installed, as in a worker
        name = job_name_without_unpickling(job)
    assert name == f"{__name__}.nightly_export"
    assert UNPICKLED == []  # no argument's code ran in the worker
    assert job.func_name == name  # what RQ itself says, once the horse unpickles
    assert UNPICKLED == ["Loud"]


def test_a_job_another_serializer_wrote_is_left_to_the_horse() -> None:
    from rq.serializers import JSONSerializer

    from jobpulse.adapters.rq._attrs import job_name_without_unpickling

    job = restored(serializer=JSONSerializer, args=(1,))
    with capture():
        assert job_name_without_unpickling(job) is None
    assert job.func_name == f"{__name__}.nightly_export"
