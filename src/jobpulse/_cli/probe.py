"""``jobpulse probe``: the queue-health sidecar.

Samples queue depth and oldest-message age for RQ and Celery queues and
exports them like every jobpulse metric (OTLP from the ``OTEL_*`` variables,
and ``/metrics`` with ``--prometheus-port``). See ``docs/probe.md``.
"""

from __future__ import annotations

import argparse
import codecs
import logging
import os
import signal
import sys
from types import FrameType
from typing import Any

from .. import _names as n

EPILOG = """\
brokers (when neither --redis-url nor --amqp-url is given):
  RQ_REDIS_URL, else REDIS_URL            RQ queues on Redis
  CELERY_BROKER_URL, else REDIS_URL       Celery queues on Redis or RabbitMQ (by scheme)
  RABBITMQ_MANAGEMENT_URL                 the management API (default: broker host, port 15672)
  RQ_KEY_PREFIX                           RQ's key prefix (default: rq)
export: OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_METRIC_EXPORT_INTERVAL, OTEL_SERVICE_NAME
(default service name here: jobpulse-probe). Credentials never appear in output.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "probe",
        help="sample queue depth and oldest-message age (RQ, Celery on Redis or RabbitMQ)",
        description=(
            "Sample jobpulse.queue.depth and jobpulse.queue.oldest.age for every configured "
            "or discovered queue, O(1) broker round trips per queue, and export them."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b = p.add_argument_group("brokers and queues")
    b.add_argument("--redis-url", metavar="URL", help="Redis with RQ and/or Celery queues")
    b.add_argument("--amqp-url", metavar="URL", help="RabbitMQ with Celery queues")
    b.add_argument(
        "--system", dest="systems", action="append", choices=("rq", "celery"),
        help="sample only this system's queues (repeatable; default: both)",
    )  # fmt: skip
    b.add_argument(
        "-q", "--queue", dest="queues", action="append", default=[], metavar="NAME",
        help="a queue to sample for every system (repeatable, or comma-separated)",
    )  # fmt: skip
    b.add_argument("--rq-queue", dest="rq_queues", action="append", default=[], metavar="NAME")
    b.add_argument(
        "--celery-queue", dest="celery_queues", action="append", default=[], metavar="NAME",
        help="(RabbitMQ default, when no queue is named: celery)",
    )  # fmt: skip
    b.add_argument(
        "--no-discover", dest="discover", action="store_false",
        help="sample only the named queues (default: also RQ's registry of queues and "
        "kombu's bindings on Redis)",
    )  # fmt: skip
    b.add_argument("--rq-key-prefix", metavar="PREFIX", help="default: $RQ_KEY_PREFIX or rq")
    b.add_argument(
        "--celery-priority-steps", default="0,3,6,9", metavar="N,N,...",
        help="kombu's priority_steps transport option (default: 0,3,6,9)",
    )  # fmt: skip
    b.add_argument(
        "--celery-sep", default=None, metavar="SEP",
        help=r"kombu's sep transport option (default: \x06\x16; escapes allowed)",
    )  # fmt: skip
    b.add_argument("--celery-key-prefix", default="", metavar="PREFIX",
                   help="kombu's global_keyprefix transport option")  # fmt: skip
    b.add_argument("--management-url", metavar="URL",
                   help="RabbitMQ management API (default: $RABBITMQ_MANAGEMENT_URL, "
                   "else http://<amqp host>:15672 with the AMQP credentials)")  # fmt: skip
    b.add_argument("--no-management", dest="management", action="store_false",
                   help="RabbitMQ: depth only, never call the management API")  # fmt: skip

    s = p.add_argument_group("sampling and export")
    s.add_argument("--interval", type=float, default=15.0, metavar="SECONDS",
                   help="seconds between samples (default: 15)")  # fmt: skip
    s.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="broker connect/read timeout (default: 5)")  # fmt: skip
    s.add_argument("--prometheus-port", type=int, metavar="PORT",
                   help="also serve /metrics on this port (0: any free port)")  # fmt: skip
    s.add_argument("--prometheus-host", default="0.0.0.0", metavar="HOST")
    s.add_argument("--log-format", choices=("text", "json"), default="text")
    s.add_argument("--once", action="store_true",
                   help="sample once, print the values, export them and exit "
                   "(exit 1 when a broker was unreachable)")  # fmt: skip
    p.set_defaults(handler=run)


def _fail(message: str) -> int:
    print(f"jobpulse probe: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    import jobpulse

    from .. import _otel
    from .._config import ConfigurationError
    from ..probe import ProbeConfig, Sampler, Scrubber, build_sources
    from ..probe._sampler import describe

    scrub = Scrubber(
        [args.redis_url, args.amqp_url, args.management_url]
        + [os.environ.get(v) for v in ("RQ_REDIS_URL", "REDIS_URL", "CELERY_BROKER_URL",
                                       "RABBITMQ_MANAGEMENT_URL")]
    )  # fmt: skip
    try:
        options: dict[str, Any] = {
            "redis_url": args.redis_url,
            "amqp_url": args.amqp_url,
            "systems": args.systems or (),
            "queues": args.queues,
            "rq_queues": args.rq_queues,
            "celery_queues": args.celery_queues,
            "discover": args.discover,
            "interval": args.interval,
            "timeout": args.timeout,
            "rq_key_prefix": args.rq_key_prefix,
            "celery_priority_steps": [
                int(x) for x in args.celery_priority_steps.split(",") if x.strip()
            ],
            "celery_key_prefix": args.celery_key_prefix,
            "management": args.management,
            "management_url": args.management_url,
        }
        if args.celery_sep is not None:
            options["celery_sep"] = codecs.decode(args.celery_sep, "unicode_escape")
        config = ProbeConfig.from_options(**options)
        sources = build_sources(config)
    except (ConfigurationError, ValueError) as exc:
        return _fail(scrub(exc))
    if not sources:
        return _fail(
            "no broker to sample: give --redis-url and/or --amqp-url, or set RQ_REDIS_URL, "
            "REDIS_URL or CELERY_BROKER_URL"
        )

    if not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        os.environ["OTEL_SERVICE_NAME"] = "jobpulse-probe"
    try:
        jobpulse.instrument(
            log_format=args.log_format,
            adapters="none",
            prometheus_port=args.prometheus_port,
            prometheus_host=args.prometheus_host if args.prometheus_port is not None else None,
        )
    except (ConfigurationError, OSError) as exc:
        return _fail(scrub(exc))

    log = logging.getLogger(n.LOGGER_NAME + ".probe")
    sampler = Sampler(sources, interval=config.interval)
    log.info(
        "jobpulse probe: sampling every %.3g s: %s",
        config.interval,
        "; ".join(f"{src.system} on {src.broker}" for src in sources),
    )
    port = _otel.prometheus_port()
    if port is not None:
        log.info(
            "jobpulse probe: serving /metrics on http://%s:%d/metrics", args.prometheus_host, port
        )

    if args.once:
        results = sampler.sample_once()
        for line in describe(results):
            print(line)
        jobpulse.flush()
        sampler.stop()
        return 1 if any(samples is None for _src, samples in results) else 0

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        sampler.request_stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        sampler.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sampler.stop()
        log.info("jobpulse probe: stopped")
        jobpulse.flush()
    return 0
