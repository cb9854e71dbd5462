"""NATS subject, queue and stream names: the only place they are spelled."""

JOBS = "mr.v1.jobs"
"""Gateway -> workers; workers subscribe in queue group WORKERS_QUEUE so each job goes to one."""
WORKERS_QUEUE = "workers"

_REPLY_PREFIX = "mr.v1.reply"
_CANCEL_PREFIX = "mr.v1.cancel"
_BODY_PREFIX = "mr.v1.body"

USAGE = "mr.v1.usage"
"""Gateway -> accounting, through the JetStream stream USAGE_STREAM."""
USAGE_STREAM = "MR_USAGE"
ACCOUNTING_DURABLE = "accounting"

KEYS_BUCKET = "MR_KEYS"
"""JetStream key-value bucket accounting writes and every gateway watches: ``key.<id>`` holds a
``keys.v1.KeyRecord``, ``team.<id>`` a ``keys.v1.TeamRecord`` (never a secret)."""

ADMIN = "mr.v1.admin"
"""Gateway -> accounting, request/reply: the admin API (keys, teams), answered from Postgres. The
request is JSON ``{"method", "path", "query", "body"}`` as the gateway received it (``path`` starts
with ``/admin/``; ``query`` a mapping of strings; ``body`` the parsed JSON or null); the reply is
JSON ``{"status": <HTTP status>, "body": <JSON>}``, errors in OpenAI's shape."""
ADMIN_QUEUE = "accounting-admin"

LEDGER_SPEND = "mr.v1.ledger.spend"
"""Router -> accounting, request/reply: ``keys.v1.SpendQuery`` -> ``keys.v1.SpendAnswer``."""
LEDGER_QUEUE = "accounting-ledger"

ANALYTICS = "mr.v1.analytics"
"""Gateway -> accounting, request/reply: the analytics API and /user/stats, answered from Postgres
(JSON envelopes, see ``common.analytics``)."""
ANALYTICS_QUEUE = "accounting-analytics"

MSG_ID_HEADER = "Nats-Msg-Id"
USAGE_BATCH_HEADER = "Mr-Usage-Batch"
"""Present (value "1") on a USAGE message whose payload is a UsageBatch rather than one UsageEvent."""


def replies_wildcard(gateway_id: str) -> str:
    """The one subscription a gateway process holds for every reply it is waiting for."""
    return f"{_REPLY_PREFIX}.{gateway_id}.*"


def reply(gateway_id: str, request_id: str) -> str:
    return f"{_REPLY_PREFIX}.{gateway_id}.{request_id}"


def request_id_of_reply(subject: str) -> str:
    return subject.rsplit(".", 1)[1]


def cancel(worker_id: str) -> str:
    """Each worker process listens on its own cancel subject."""
    return f"{_CANCEL_PREFIX}.{worker_id}"


def bodies_wildcard(gateway_id: str) -> str:
    """Where a gateway process answers workers' fetches of request bodies too large for a Job."""
    return f"{_BODY_PREFIX}.{gateway_id}.*"


def body(gateway_id: str, request_id: str) -> str:
    return f"{_BODY_PREFIX}.{gateway_id}.{request_id}"
