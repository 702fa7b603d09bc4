"""A tiny in-process worker that exports to OTLP from the OTEL_* environment (run by tests)."""

from __future__ import annotations

import os
import sys
import time

import jobpulse


@jobpulse.job("WireExport", max_runtime=60, heartbeat_timeout=30)
def export(n: int) -> int:
    with jobpulse.step("ExportOrders"):
        for i in range(1, n + 1):
            jobpulse.heartbeat(processed=i, total=n)
    with jobpulse.dependency("http:VendorApi", timeout=5):
        pass
    return n


@jobpulse.job("WireFail")
def fail() -> None:
    raise ValueError("bad record 17")


def main() -> None:
    mode = sys.argv[1]
    jobpulse.instrument(log_format="json")
    export(3)
    try:
        fail()
    except ValueError:
        pass
    if mode == "fork":
        pid = os.fork()
        if pid == 0:
            export(2)
            started = time.monotonic()
            import faulthandler

            # a flush this slow is stuck: show where (the test prints this stderr)
            faulthandler.dump_traceback_later(12.0, exit=False)
            flushed = jobpulse.flush(15)  # a loaded CI box: the test is about export, not speed
            print(f"child flush: {flushed} in {time.monotonic() - started:.2f}s", file=sys.stderr)
            os._exit(0)
        os.waitpid(pid, 0)
    print("done", flush=True)


if __name__ == "__main__":
    main()
