"""Typed settings from the environment, read once in each service's ``main`` and passed down.

Invalid values stop the service at start with the variable's name (pydantic's message).
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from common import subjects


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    nats_url: str = "nats://127.0.0.1:4222"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    router_addr: str = "127.0.0.1:50051"
    modelrouter_config: str | None = Field(default=None, description="path of the YAML config")
    log_level: str = "INFO"
    # Seconds a service keeps serving in-flight work after SIGTERM before it exits.
    drain_timeout_s: float = Field(default=20.0, ge=0)
    # Where usage events go. Overridable so a test or a second environment sharing one NATS server
    # gets a stream of its own.
    usage_stream: str = subjects.USAGE_STREAM
    usage_subject: str = subjects.USAGE
    # Where gateways publish jobs and workers take them; overridable for the same reason, so one
    # stack's jobs never reach another stack's workers (whose provider keys differ).
    jobs_subject: str = subjects.JOBS
    # Keys and teams: the bucket accounting writes and gateways watch, and the subjects of the admin
    # API and the ledger's spend queries; overridable so stacks sharing one NATS stay apart.
    keys_bucket: str = subjects.KEYS_BUCKET
    admin_subject: str = subjects.ADMIN
    ledger_subject: str = subjects.LEDGER_SPEND
    analytics_subject: str = subjects.ANALYTICS
    # Unique per process; names this process's NATS reply/cancel subjects.
    instance_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])


class GatewaySettings(CommonSettings):
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8000, ge=1, le=65535)
    api_keys: str = Field(default="", description="comma-separated client keys")
    # OpenAI takes images of up to 20 MB in a request, base64 inflating them by a third.
    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    # Longest silence from a worker (no accepted/chunk/result) before the request is failed.
    stall_timeout_s: float = Field(default=30.0, gt=0)
    # How long to wait for any worker to pick a job up.
    accept_timeout_s: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    # Seed 001's further client keys (AUTH_KEY, AUTH_KEY_01..99 are read from the environment too).
    allowed_api_keys: str = Field(default="", description="comma-separated client keys")
    # false: no key is asked for (local development only; the gateway says so loudly at start).
    enable_auth: bool = True
    # Authorises the admin API (keys, teams). No default: without it the admin API answers 401.
    modelrouter_master_key: SecretStr | None = None
    # USD budgets for every key without one of its own (seed 004's settings).
    default_daily_budget: float | None = Field(default=None, ge=0)
    default_monthly_budget: float | None = Field(default=None, ge=0)
    # Output tokens reserved against a key's tpm and budget for a request that sets no max_tokens.
    reserve_output_tokens: int = Field(default=4096, ge=0)
    # A full re-read of the keys bucket this often, besides the live watch (heals a missed update).
    keys_resync_s: float = Field(default=300.0, gt=0)
    # Usage events of this long go to JetStream as one message (0: one message per request). A
    # JetStream publish and its ack cost ~0.2 ms of CPU; gathered, a request pays a fraction of it.
    usage_linger_s: float = Field(default=0.01, ge=0, le=1.0)
    # The model of a request that names none (seed 004's DEFAULT_MODEL); overrides the config's
    # default_model. "auto" routes it by its prompt's class.
    default_model: str = ""
    # Which gateway.prompt_class classifier sorts auto requests.
    prompt_classifier: str = "heuristic"
    # The internal port serving Prometheus metrics without a key (and /health, /ready) for the
    # cluster's scraper, away from the public application; unset: none (GET /metrics on the public
    # port still answers an ops key or the master key).
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)


class RouterSettings(CommonSettings):
    router_listen: str = "127.0.0.1:50051"
    # The internal HTTP port serving /health, /ready and Prometheus /metrics; unset: none (its probes
    # use gRPC health on ROUTER_LISTEN, and several routers on one host must not fight over a port).
    health_host: str = "127.0.0.1"
    health_port: int | None = Field(default=None, ge=0, le=65535)


class WorkerSettings(CommonSettings):
    worker_concurrency: int = Field(default=256, ge=1)
    # A job that has sent no chunk or result this long after it started sends Reply{accepted}; a
    # faster job's first reply names the worker instead, saving a NATS message. Keep it well below
    # the gateway's ACCEPT_TIMEOUT_S (5 s: a job silent that long counts as taken by no worker) and
    # its 2 s wait for partial usage after a client leaves (a Cancel can only go out once the worker
    # has named itself), hence the 1 s cap.
    accept_delay_s: float = Field(default=0.1, ge=0, le=1.0)
    # Once a job has named its worker, it sends something at least this often (a heartbeat when the
    # upstream is quiet), so a gateway notices a dead worker after three silent intervals (1.5 s).
    heartbeat_s: float = Field(default=0.5, gt=0, le=5.0)
    health_host: str = "127.0.0.1"
    health_port: int = Field(default=8081, ge=0, le=65535)


class AccountingSettings(CommonSettings):
    accounting_batch: int = Field(default=64, ge=1)
    # After a fetch that came back short of a batch, let more usage events gather this long before
    # one INSERT stores them all (0: store each fetch at once). Billing lags by up to this much.
    accounting_linger_s: float = Field(default=0.1, ge=0, le=1.0)
    accounting_durable: str = subjects.ACCOUNTING_DURABLE
    # How often the key-value bucket of keys and teams is compared with Postgres and mended (a
    # lost, stale or hand-edited bucket heals within this long).
    keys_sync_interval_s: float = Field(default=30.0, gt=0)
    # Longest an admin request or a spend query waits for Postgres (connect, statements) before it
    # answers that the database is unreachable.
    admin_db_timeout_s: float = Field(default=3.0, gt=0, le=30.0)
    # Usage rows (and stored texts) are kept this many days, then dropped a whole month at a time
    # (0: kept for ever). The daily rollup of a dropped month goes with it.
    usage_retention_days: int = Field(default=0, ge=0)
    # How often the monthly partitions are made ahead and the retention applied.
    analytics_upkeep_interval_s: float = Field(default=3600.0, gt=0)
    # Longest an analytics query may take before it answers that the database is unreachable.
    analytics_db_timeout_s: float = Field(default=10.0, gt=0, le=60.0)
    health_host: str = "127.0.0.1"
    health_port: int = Field(default=8082, ge=0, le=65535)


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S]) -> S:
    """Build settings or exit with a readable message naming the bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()]
        sys.stderr.write("invalid environment:\n" + "\n".join(lines) + "\n")
        raise SystemExit(2) from None


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
