"""``jobpulse quarantine list | show ID | release ID | drop ID | log``: review poison jobs.

Reads the Redis quarantine store (``--redis URL`` or ``JOBPULSE_REDIS_URL``).
``release`` re-enqueues with the original job id: RQ jobs on the RQ Redis
(``--rq-redis``, default the store's), Celery tasks through the broker
(``--broker``, default ``CELERY_BROKER_URL``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
from typing import Any

from ..guardrails.config import REDIS_URL_ENV


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "quarantine",
        help="review quarantined (poison) jobs: list, show, release, drop",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--redis",
        default=os.environ.get(REDIS_URL_ENV),
        help=f"Redis URL of the quarantine store (default: ${REDIS_URL_ENV})",
    )
    actions = parser.add_subparsers(dest="quarantine_command", metavar="ACTION")
    ls = actions.add_parser("list", help="quarantined jobs, newest first")
    ls.add_argument("--all", action="store_true", help="include released entries")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.add_argument("--limit", type=int, default=100)
    show = actions.add_parser("show", help="the operator payload of one job")
    show.add_argument("id")
    rel = actions.add_parser("release", help="re-enqueue a job with its original id")
    rel.add_argument("id")
    rel.add_argument("--rq-redis", help="Redis URL of the RQ queues (default: --redis)")
    rel.add_argument(
        "--broker",
        default=os.environ.get("CELERY_BROKER_URL"),
        help="Celery broker URL (default: $CELERY_BROKER_URL)",
    )
    drop = actions.add_parser("drop", help="delete an entry; the job will not run again")
    drop.add_argument("id")
    log = actions.add_parser("log", help="the review log: every quarantine, release, drop")
    log.add_argument("--limit", type=int, default=50)
    parser.set_defaults(handler=handle, _parser=parser)


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _store(url: str) -> Any:
    from ..guardrails._quarantine import RedisStore
    from ..guardrails.config import client_for_url

    return RedisStore(client_for_url(url))


def handle(args: argparse.Namespace) -> int:
    command = getattr(args, "quarantine_command", None)
    if command is None:
        args._parser.print_help()
        return 2
    if not args.redis:
        print(
            f"jobpulse quarantine: no store; pass --redis URL or set {REDIS_URL_ENV}",
            file=sys.stderr,
        )
        return 2
    from ..guardrails._release import ReleaseError, drop, release

    store = _store(args.redis)
    try:
        if command == "list":
            return _list(store, args)
        if command == "show":
            payload = store.get(args.id)
            if payload is None:
                print(f"no quarantined job with id {args.id!r}", file=sys.stderr)
                return 1
            print(json.dumps(payload.public(), indent=2, sort_keys=True, default=str))
            return 0
        if command == "release":
            rq_conn = None
            if (entry := store.get(args.id)) is not None and entry.system == "rq":
                from ..guardrails.config import client_for_url

                rq_conn = client_for_url(args.rq_redis) if args.rq_redis else store.client
            payload = release(args.id, store, rq_connection=rq_conn, broker=args.broker)
            print(f"released {payload.id} ({payload.job}): {store.history(1)[0]['detail']}")
            return 0
        if command == "drop":
            payload = drop(args.id, store)
            print(f"dropped {payload.id} ({payload.job})")
            return 0
        if command == "log":
            for entry in store.history(args.limit):
                detail = entry.get("detail") or entry.get("reason") or ""
                print(
                    f"{_when(entry['ts'])}  {entry['action']:<10} {entry['id']}  "
                    f"{entry['job']}  {detail}"
                )
            return 0
    except ReleaseError as exc:
        print(f"jobpulse quarantine {command}: {exc}", file=sys.stderr)
        return 1
    return 2


def _list(store: Any, args: argparse.Namespace) -> int:
    entries = [p for p in store.entries(args.limit) if args.all or p.status == "quarantined"]
    if args.json:
        for p in entries:
            print(json.dumps(p.public(), sort_keys=True, default=str))
        return 0
    if not entries:
        print("no quarantined jobs")
        return 0
    rows = [("ID", "JOB", "SYSTEM", "ATTEMPTS", "ERROR", "STATUS", "LAST SEEN")]
    for p in entries:
        rows.append(
            (p.id, p.job, p.system, str(p.attempts), p.error_type, p.status, _when(p.last_seen))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0
