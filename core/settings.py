"""Service settings, read from the environment once per process (API and worker alike)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
BROKER_SCHEMES = ("redis://", "rediss://", "amqp://", "amqps://", "pyamqp://")


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


DEFAULT_MEMORY_FRACTION = 0.8


def machine_memory_mb() -> int:
    """The memory this machine (or its cgroup, when that is smaller) allows, in MiB."""
    import psutil

    total = psutil.virtual_memory().total
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if raw.isdigit():
            total = min(total, int(raw))
    return int(total >> 20)


def default_worker_memory_mb(concurrency: int) -> int:
    """Each worker child's share of ``PRUNEKIT_WORKER_MEMORY_FRACTION`` of the machine."""
    fraction = _float("PRUNEKIT_WORKER_MEMORY_FRACTION", DEFAULT_MEMORY_FRACTION)
    if not 0 < fraction <= 1:
        raise ValueError(f"PRUNEKIT_WORKER_MEMORY_FRACTION must be in (0, 1], not {fraction}")
    return max(1, int(machine_memory_mb() * fraction / max(concurrency, 1)))


def _optional_float(name: str) -> float | None:
    raw = os.environ.get(name)
    return float(raw) if raw else None


@dataclass(frozen=True)
class Settings:
    home: Path
    redis_url: str
    key_prefix: str
    queue: str
    max_upload_bytes: int
    max_archive_members: int
    max_extracted_bytes: int
    max_compression_ratio: int
    worker_concurrency: int
    task_soft_time_limit: int
    task_time_limit: int
    visibility_timeout: int
    max_attempts: int = 3
    worker_max_memory_mb: int = 0  # 0: no limit (from_env defaults to a share of the machine)
    artifact_ttl_hours: float = 0  # 0: never sweep
    reconcile_interval: float = 30
    lease_ttl: float = 30
    allow_h5: bool = False
    max_json_bytes: int = 1024 * 1024
    upload_check_threads: int = 4
    header_timeout: float = 10
    body_timeout: float = 30
    keep_alive_timeout: int = 5
    max_connections: int = 256
    tenant_max_active_jobs: int = 50  # 0: no limit
    tenant_max_stored_bytes: int = 50 * 1024**3  # 0: no limit
    inspection_time_limit: int = 600  # soft; the hard limit is 30 s later
    # seconds a job's TF latency comparison may take (inf: no limit); None: the engine's
    # default (prunekit.speedup.DEFAULT_BUDGET_S); a spec's measure.latency_budget_s wins
    latency_budget_s: float | None = None
    webhook_allow_private: bool = False  # deliver to loopback/private/link-local addresses
    webhook_timeout: float = 5  # connect and read timeout of one delivery attempt
    webhook_max_attempts: int = 6  # a delivery is given up after this many attempts
    webhook_retry_base: float = 5  # first retry after ~this, doubling, with jitter
    webhook_retry_max: float = 900  # no retry waits longer than this
    webhook_progress_interval: float = 5  # at most one progress delivery per job per this
    # artifacts: "" local disk under home; "s3://bucket/prefix" an object store (core.artifacts)
    storage_url: str = ""
    s3_endpoint_url: str = ""  # a non-AWS S3 endpoint (MinIO, Ceph, GCS interop)
    s3_presign: bool = False  # downloads redirect to a short-lived presigned URL
    broker_url: str = ""  # "" the Redis of redis_url; amqp://... RabbitMQ (core.queue)

    def __post_init__(self) -> None:
        if self.storage_url:
            from core.object_store import Location

            Location.parse(self.storage_url)  # a ValueError naming PRUNEKIT_STORAGE
        if self.broker_url and not self.broker_url.startswith(BROKER_SCHEMES):
            raise ValueError(
                f"PRUNEKIT_BROKER_URL must start with one of {', '.join(BROKER_SCHEMES)} "
                "(unset: the Redis of PRUNEKIT_REDIS_URL)"
            )
        if not 0 < self.task_soft_time_limit < self.task_time_limit < self.visibility_timeout:
            raise ValueError(
                "time limits must satisfy 0 < PRUNEKIT_TASK_SOFT_TIME_LIMIT "
                f"({self.task_soft_time_limit}) < PRUNEKIT_TASK_TIME_LIMIT "
                f"({self.task_time_limit}) < PRUNEKIT_VISIBILITY_TIMEOUT "
                f"({self.visibility_timeout}): a job must be stopped softly, then hard, "
                "before Redis would hand its message to another worker"
            )
        if not 0 < self.inspection_time_limit < self.visibility_timeout - 30:
            raise ValueError(
                "PRUNEKIT_INSPECTION_TIME_LIMIT must be > 0 and end (plus 30 s) before "
                f"PRUNEKIT_VISIBILITY_TIMEOUT ({self.visibility_timeout})"
            )
        if self.max_attempts < 1:
            raise ValueError("PRUNEKIT_MAX_ATTEMPTS must be at least 1")
        if self.webhook_timeout <= 0 or self.webhook_max_attempts < 1:
            raise ValueError(
                "PRUNEKIT_WEBHOOK_TIMEOUT must be > 0, PRUNEKIT_WEBHOOK_MAX_ATTEMPTS >= 1"
            )
        if self.lease_ttl < 1 or self.reconcile_interval <= 0:
            raise ValueError("PRUNEKIT_LEASE_TTL must be >= 1 s, PRUNEKIT_RECONCILE_INTERVAL > 0")
        if self.latency_budget_s is not None and not self.latency_budget_s > 0:
            raise ValueError("PRUNEKIT_LATENCY_BUDGET_S must be > 0 seconds (inf: no limit)")

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("PRUNEKIT_HOME", "var")).resolve()
        max_upload = _int("PRUNEKIT_MAX_UPLOAD_BYTES", 2 * 1024**3)
        soft = _int("PRUNEKIT_TASK_SOFT_TIME_LIMIT", 3600)
        concurrency = _int("PRUNEKIT_WORKER_CONCURRENCY", 2)
        hard = _int("PRUNEKIT_TASK_TIME_LIMIT", soft + 300)
        return cls(
            home=home,
            redis_url=os.environ.get("PRUNEKIT_REDIS_URL") or DEFAULT_REDIS_URL,
            key_prefix=os.environ.get("PRUNEKIT_KEY_PREFIX", "prunekit"),
            queue=os.environ.get("PRUNEKIT_QUEUE", "prunekit"),
            max_upload_bytes=max_upload,
            max_archive_members=_int("PRUNEKIT_MAX_ARCHIVE_MEMBERS", 10_000),
            max_extracted_bytes=_int("PRUNEKIT_MAX_EXTRACTED_BYTES", 4 * max_upload),
            max_compression_ratio=_int("PRUNEKIT_MAX_COMPRESSION_RATIO", 200),
            worker_concurrency=concurrency,
            task_soft_time_limit=soft,
            task_time_limit=hard,
            visibility_timeout=_int("PRUNEKIT_VISIBILITY_TIMEOUT", hard + 600),
            max_attempts=_int("PRUNEKIT_MAX_ATTEMPTS", 3),
            worker_max_memory_mb=_int(
                "PRUNEKIT_WORKER_MAX_MEMORY_MB", default_worker_memory_mb(concurrency)
            ),
            artifact_ttl_hours=_float("PRUNEKIT_ARTIFACT_TTL_HOURS", 0),
            reconcile_interval=_float("PRUNEKIT_RECONCILE_INTERVAL", 30),
            lease_ttl=_float("PRUNEKIT_LEASE_TTL", 30),
            allow_h5=os.environ.get("PRUNEKIT_ALLOW_H5", "") in ("1", "true", "yes"),
            max_json_bytes=_int("PRUNEKIT_MAX_JSON_BYTES", 1024 * 1024),
            upload_check_threads=_int("PRUNEKIT_UPLOAD_CHECK_THREADS", 4),
            header_timeout=_float("PRUNEKIT_HEADER_TIMEOUT", 10),
            body_timeout=_float("PRUNEKIT_BODY_TIMEOUT", 30),
            keep_alive_timeout=_int("PRUNEKIT_KEEP_ALIVE_TIMEOUT", 5),
            max_connections=_int("PRUNEKIT_MAX_CONNECTIONS", 256),
            tenant_max_active_jobs=_int("PRUNEKIT_TENANT_MAX_ACTIVE_JOBS", 50),
            tenant_max_stored_bytes=_int("PRUNEKIT_TENANT_MAX_STORED_BYTES", 50 * 1024**3),
            inspection_time_limit=_int("PRUNEKIT_INSPECTION_TIME_LIMIT", min(600, soft)),
            latency_budget_s=_optional_float("PRUNEKIT_LATENCY_BUDGET_S"),
            webhook_allow_private=os.environ.get("PRUNEKIT_WEBHOOK_ALLOW_PRIVATE", "")
            in ("1", "true", "yes"),
            webhook_timeout=_float("PRUNEKIT_WEBHOOK_TIMEOUT", 5),
            webhook_max_attempts=_int("PRUNEKIT_WEBHOOK_MAX_ATTEMPTS", 6),
            webhook_retry_base=_float("PRUNEKIT_WEBHOOK_RETRY_BASE", 5),
            webhook_retry_max=_float("PRUNEKIT_WEBHOOK_RETRY_MAX", 900),
            webhook_progress_interval=_float("PRUNEKIT_WEBHOOK_PROGRESS_INTERVAL", 5),
            storage_url=os.environ.get("PRUNEKIT_STORAGE", "").strip(),
            s3_endpoint_url=os.environ.get("PRUNEKIT_S3_ENDPOINT_URL", "").strip(),
            s3_presign=os.environ.get("PRUNEKIT_S3_PRESIGN", "") in ("1", "true", "yes"),
            broker_url=os.environ.get("PRUNEKIT_BROKER_URL", "").strip(),
        )

    @property
    def broker(self) -> str:
        """The Celery broker URL: ``PRUNEKIT_BROKER_URL``, else the records' Redis."""
        return self.broker_url or self.redis_url

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def tmp_dir(self) -> Path:
        return self.home / "tmp"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
