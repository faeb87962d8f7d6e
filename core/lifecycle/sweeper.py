"""Retention: delete what is older than ``PRUNEKIT_ARTIFACT_TTL_HOURS``.

* finished jobs (by ``finished_at``): record, events and pruned model, as ``DELETE`` would;
* models and datasets (by ``created_at``) that no unfinished job uses: record and files;
* orphans: directories under ``artifacts/{models,datasets,jobs}`` (or object prefixes in
  the object store) with no record
  (a crash between deleting a record and its files), and scratch directories under ``tmp``
  older than the TTL (a crash mid-upload or mid-job).

The worker's maintenance process runs it periodically; :func:`sweep` is a plain function.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psutil

from core import artifacts, storage
from core.datasets import store as datasets
from core.jobs import store as jobs
from core.lifecycle.deletion import active_jobs_using, remove_artifacts
from core.models import store as models
from core.settings import get_settings

log = logging.getLogger("prunekit.sweeper")


@dataclass
class SweepReport:
    jobs: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def _older(record: Mapping[str, Any], field_name: str, cutoff: float) -> bool:
    at = _epoch(record.get(field_name))
    return at is not None and at < cutoff


def sweep(ttl_hours: float | None = None, now: float | None = None) -> SweepReport:
    """Delete everything older than ``ttl_hours`` (default: the setting; 0 sweeps nothing)."""
    ttl = get_settings().artifact_ttl_hours if ttl_hours is None else ttl_hours
    report = SweepReport()
    if ttl <= 0:
        return report
    now = time.time() if now is None else now
    cutoff = now - ttl * 3600
    for job_id in jobs.all_ids():
        record = jobs.get(job_id)
        if record is None:
            continue
        if record["status"] in jobs.FINISHED and _older(record, "finished_at", cutoff):
            jobs.delete(record)
            remove_artifacts(storage.job_dir(job_id))
            report.jobs.append(job_id)
    inputs = (
        (models, "model_id", storage.model_dir, report.models),
        (datasets, "dataset_id", storage.dataset_dir, report.datasets),
    )
    for store, job_field, directory, swept in inputs:
        for item_id in store.all_ids():
            record = store.get(item_id)
            if record is None or not _older(record, "created_at", cutoff):
                continue
            if active_jobs_using(job_field, item_id):
                continue
            store.delete(record)
            remove_artifacts(directory(item_id))
            swept.append(item_id)
    for kind, lookup in (("models", models.get), ("datasets", datasets.get), ("jobs", jobs.get)):
        for name, modified in artifacts.entries(kind).items():
            if modified < cutoff and lookup(name) is None:
                remove_artifacts(storage.artifacts_root() / kind / name)
                report.orphans.append(f"{kind}/{name}")
    tmp = get_settings().tmp_dir
    if tmp.is_dir():
        for d in tmp.iterdir():
            pid = storage.worker_tmpdir_pid(d)
            if pid is not None and psutil.pid_exists(pid):
                continue  # a running worker child's TMPDIR (worker.environment)
            if d.stat().st_mtime < cutoff:
                shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink(missing_ok=True)
                report.orphans.append(f"tmp/{d.name}")
    if report.jobs or report.models or report.datasets or report.orphans:
        log.info(
            "swept %d jobs, %d models, %d datasets, %d orphans older than %s h",
            len(report.jobs), len(report.models), len(report.datasets), len(report.orphans), ttl,
        )  # fmt: skip
    return report
