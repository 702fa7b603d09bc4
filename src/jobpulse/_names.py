"""The telemetry contract as one table of names.

Every span name rule, attribute key, metric name, unit and histogram boundary
that jobpulse emits lives here, so the code, the tests and the shipped assets
(alerts, dashboards, collector configs) read the same words. A change here is a
change to ``docs/telemetry.md`` and to the assets in the same commit.
"""

from __future__ import annotations

from typing import Final

SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.44.0"
INSTRUMENTATION_NAME: Final = "jobpulse"
LOGGER_NAME: Final = "jobpulse"

# -- attributes -------------------------------------------------------------
JOB_NAME: Final = "jobpulse.job.name"
JOB_ID: Final = "jobpulse.job.id"
RUN_ID: Final = "jobpulse.run.id"
ATTEMPT: Final = "jobpulse.attempt"
SYSTEM: Final = "jobpulse.system"
QUEUE_NAME: Final = "jobpulse.queue.name"
OUTCOME: Final = "jobpulse.outcome"
ACTION: Final = "jobpulse.action"
BUDGET_MAX_RUNTIME: Final = "jobpulse.budget.max_runtime"
BUDGET_HEARTBEAT_TIMEOUT: Final = "jobpulse.budget.heartbeat_timeout"
QUEUE_WAIT: Final = "jobpulse.queue.wait"
REDELIVERED: Final = "jobpulse.redelivered"
PROGRESS_PROCESSED: Final = "jobpulse.progress.processed"
PROGRESS_TOTAL: Final = "jobpulse.progress.total"
HEARTBEAT_COUNT: Final = "jobpulse.heartbeat.count"
STEP_NAME: Final = "jobpulse.step.name"
DEPENDENCY_NAME: Final = "jobpulse.dependency.name"
DEPENDENCY_TIMEOUT: Final = "jobpulse.dependency.timeout"
DEPENDENCY_OUTCOME: Final = "jobpulse.dependency.outcome"
ELAPSED: Final = "jobpulse.elapsed"
STALL_REASON: Final = "jobpulse.stall.reason"
COMPONENT: Final = "jobpulse.component"
ERROR_TYPE: Final = "error.type"
CODE_FUNCTION_NAME: Final = "code.function.name"

MESSAGING_SYSTEM: Final = "messaging.system"
MESSAGING_OPERATION_NAME: Final = "messaging.operation.name"
MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
MESSAGING_DESTINATION_NAME: Final = "messaging.destination.name"
MESSAGING_MESSAGE_ID: Final = "messaging.message.id"
MESSAGING_CLIENT_ID: Final = "messaging.client.id"

# -- span events ------------------------------------------------------------
EVENT_HEARTBEAT: Final = "jobpulse.heartbeat"
EVENT_STALLED: Final = "jobpulse.stalled"
EVENT_CANCEL_REQUESTED: Final = "jobpulse.cancel_requested"

# -- metrics: (name, unit, description) --------------------------------------
M_RUNS: Final = ("jobpulse.job.runs", "{run}", "Finished runs by outcome and next action.")
M_ERRORS: Final = ("jobpulse.job.errors", "{error}", "Failed runs by outcome and error type.")
M_DURATION: Final = ("jobpulse.job.duration", "s", "Run duration, start to end of one attempt.")
M_QUEUE_WAIT: Final = ("jobpulse.job.queue.wait", "s", "Time from when a run was due to its start.")
M_ACTIVE: Final = ("jobpulse.job.active", "{run}", "Runs in progress in this process.")
M_LAST_SUCCESS: Final = (
    "jobpulse.job.last_success.timestamp",
    "s",
    "Unix time of the last successful run seen by this process.",
)
M_HEARTBEAT_AGE: Final = (
    "jobpulse.job.heartbeat.age",
    "s",
    "Largest silence (now - last heartbeat, or start) over active runs.",
)
M_ACTIVE_AGE: Final = ("jobpulse.job.active.age", "s", "Elapsed time of the oldest active run.")
M_STALLED: Final = ("jobpulse.job.stalled", "{run}", "Active runs past a budget, by worst reason.")
M_ZOMBIES: Final = (
    "jobpulse.job.zombies",
    "{run}",
    "Runs asked to stop that are still running after the grace period.",
)
M_CAPACITY: Final = (
    "jobpulse.worker.capacity",
    "{run}",
    "How many runs this worker can run at once for the queues it consumes.",
)
M_DEP_DURATION: Final = ("jobpulse.dependency.duration", "s", "Dependency call duration.")
M_DEP_UNBOUNDED: Final = (
    "jobpulse.dependency.unbounded_calls",
    "{call}",
    "Dependency calls made with no timeout.",
)
M_QUEUE_DEPTH: Final = ("jobpulse.queue.depth", "{message}", "Messages waiting in the queue.")
M_QUEUE_OLDEST_AGE: Final = (
    "jobpulse.queue.oldest.age",
    "s",
    "Age of the oldest waiting message.",
)
M_TELEMETRY_ERRORS: Final = (
    "jobpulse.telemetry.errors",
    "{error}",
    "Failures inside jobpulse that were swallowed, and dropped spans or records.",
)

DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0,
)  # fmt: skip

# -- cardinality caps --------------------------------------------------------
OTHER: Final = "_OTHER"
MAX_ERROR_TYPES_PER_JOB: Final = 50
MAX_DEPENDENCY_NAMES: Final = 100
MAX_HEARTBEAT_EVENTS: Final = 100

# -- guardrails (docs/guardrails.md) -----------------------------------------
FAILURE_CLASS: Final = "jobpulse.failure.class"  # transient | poison | unknown
FAILURE_REASON: Final = "jobpulse.failure.reason"
ERROR_FINGERPRINT: Final = "jobpulse.error.fingerprint"
EVENT_ONCE: Final = "jobpulse.once"
ONCE_KEY: Final = "jobpulse.once.key"
ONCE_RESULT: Final = "jobpulse.once.result"
DEPENDENCY_CALL_SITE: Final = "jobpulse.dependency.call_site"
