"""Send the example tasks (the producer side).

    CELERY_BROKER_URL=redis://127.0.0.1:6379/0 python -m examples.celery.enqueue
    python -m examples.celery.enqueue --no-stuck     # leave out the stuck task

Importing the app instruments this process too: every publish is a
``send {task}`` PRODUCER span (a child of whatever span is current, e.g. the
web request) whose context, and the enqueue time, travel in the message
headers; the runs link back to it.
"""

from __future__ import annotations

import sys

import jobpulse
from celery import chain

from .tasks import fetch_rates, nightly_export, send_report, sync_account

sent = [
    chain(nightly_export.s("2026-11-29"), send_report.s("2026-11-29")).delay(),
    sync_account.delay("acme"),
    # due in 5 s: its queue wait counts from then, not from now
    nightly_export.apply_async(("2026-11-30",), countdown=5),
]
if "--no-stuck" not in sys.argv:
    sent.append(fetch_rates.delay("EUR", hang=60))
for result in sent:
    print(f"sent {result.id}")
print(f"sent {len(sent)} messages; start a worker: python -m examples.celery")
jobpulse.flush(5)
