"""Run a function in a real forked child and get its result back."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest


def in_child(work: Callable[[], Any]) -> Any:
    """``work()`` in a forked child; its JSON result through a pipe (deadline 20 s)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.write(write, json.dumps(work()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    deadline = time.monotonic() + 20
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child did not finish within 20 s")
    data = os.read(read, 1 << 16)
    os.close(read)
    assert status == 0, f"child exit status {status}"
    return json.loads(data)
