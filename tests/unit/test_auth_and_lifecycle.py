"""Keys, ownership, settings, the sweeper, the reconciler and the cancel check, against the
test Redis (no HTTP, no worker)."""

from __future__ import annotations

import io
import os
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app.auth.tenancy import owned_or_404
from app.models import archive
from app.problems import Problem
from core import queue, storage
from core.auth import keys
from core.jobs import store as jobs
from core.lifecycle import reconciler
from core.lifecycle.sweeper import sweep
from core.models import store as models
from core.records import new_id, now_iso
from core.settings import Settings
from prunekit.data import DatasetError, npz_header
from prunekit.errors import CancelledError
from tests.polling import wait_until
from worker.reporter import JobReporter


@pytest.mark.redis
def test_keys_are_hashed_bound_to_a_tenant_and_revocable() -> None:
    api_key, secret = keys.create_key("acme", "ci")
    assert secret.startswith("pk_") and len(secret) > 40
    found = keys.lookup(secret)
    assert found is not None and found.tenant == "acme" and found.id == api_key.id
    from core.redis import get_redis, key

    stored = get_redis().hgetall(key("apikey", keys.digest(secret)))
    assert secret not in str(stored)  # only the digest is a key name; the secret is nowhere
    assert api_key.id in [k.id for k in keys.list_keys("acme")]
    assert keys.lookup(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    keys.revoke(api_key.id)
    assert keys.lookup(secret) is None
    with pytest.raises(keys.KeyError_):
        keys.revoke(api_key.id)
    for bad in ("", "Acme", "a b", "../x", "x" * 64):
        with pytest.raises(keys.KeyError_):
            keys.create_key(bad)


def test_owned_or_404() -> None:
    record = {"id": "m1", "tenant": "acme"}
    assert owned_or_404(record, "acme", "model", "m1") is record
    for rec, tenant in ((record, "other"), (None, "acme"), ({"id": "m1"}, "acme")):
        with pytest.raises(Problem) as err:
            owned_or_404(rec, tenant, "model", "m1")
        assert err.value.status == 404 and err.value.slug == "model-not-found"


def test_settings_refuse_misordered_time_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    for soft, hard, vis in (("60", "30", "900"), ("60", "120", "100"), ("60", "60", "900")):
        monkeypatch.setenv("PRUNEKIT_TASK_SOFT_TIME_LIMIT", soft)
        monkeypatch.setenv("PRUNEKIT_TASK_TIME_LIMIT", hard)
        monkeypatch.setenv("PRUNEKIT_VISIBILITY_TIMEOUT", vis)
        with pytest.raises(ValueError, match=r"SOFT_TIME_LIMIT \(60\) < PRUNEKIT_TASK_TIME_LIMIT"):
            Settings.from_env()
    monkeypatch.setenv("PRUNEKIT_VISIBILITY_TIMEOUT", "900")
    monkeypatch.setenv("PRUNEKIT_TASK_TIME_LIMIT", "120")
    assert Settings.from_env().task_time_limit == 120


def test_settings_read_the_latency_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRUNEKIT_LATENCY_BUDGET_S", raising=False)
    assert Settings.from_env().latency_budget_s is None  # the engine's default
    monkeypatch.setenv("PRUNEKIT_LATENCY_BUDGET_S", "12.5")
    assert Settings.from_env().latency_budget_s == 12.5
    monkeypatch.setenv("PRUNEKIT_LATENCY_BUDGET_S", "inf")
    assert Settings.from_env().latency_budget_s == float("inf")
    for bad in ("0", "-3", "nan"):
        monkeypatch.setenv("PRUNEKIT_LATENCY_BUDGET_S", bad)
        with pytest.raises(ValueError, match="PRUNEKIT_LATENCY_BUDGET_S must be > 0"):
            Settings.from_env()


def _job(status: str, **fields: object) -> dict:
    record = {
        "id": new_id(), "tenant": "lifecycle", "model_id": "nope", "dataset_id": None,
        "status": status, "progress": {"phase": status, "fraction": 0.0}, "spec": {},
        "metrics": None, "error": None, "attempts": 0, "created_at": now_iso(),
        "started_at": None, "finished_at": None, "updated_at": now_iso(), **fields,
    }  # fmt: skip
    jobs.create(record)
    return record


OLD = "2020-01-01T00:00:00.000Z"


@pytest.mark.redis
def test_sweeper_deletes_old_records_and_files_only() -> None:
    old_job = _job("succeeded", finished_at=OLD)
    new_job = _job("succeeded", finished_at=now_iso())
    running_old = _job("running", started_at=OLD)
    model_old = {"id": new_id(), "tenant": "lifecycle", "created_at": OLD, "inspection": {}}
    model_used = {"id": new_id(), "tenant": "lifecycle", "created_at": OLD, "inspection": {}}
    for m in (model_old, model_used):
        models.create(m)
        storage.model_dir(m["id"]).mkdir(parents=True)
    _job("queued", model_id=model_used["id"])
    for j in (old_job, new_job):
        storage.job_dir(j["id"]).mkdir(parents=True)
        (storage.job_dir(j["id"]) / "model.keras").write_bytes(b"x")
    orphan = storage.artifacts_root() / "jobs" / new_id()
    orphan.mkdir(parents=True)
    stale_scratch = storage.scratch_dir("upload-stale-")
    past = time.time() - 7200
    for p in (orphan, stale_scratch):
        os.utime(p, (past, past))

    report = sweep(ttl_hours=1)
    assert old_job["id"] in report.jobs and new_job["id"] not in report.jobs
    assert running_old["id"] not in report.jobs  # unfinished jobs are never swept
    assert model_old["id"] in report.models and model_used["id"] not in report.models
    assert f"jobs/{orphan.name}" in report.orphans and not orphan.exists()
    assert not stale_scratch.exists()
    assert jobs.get(old_job["id"]) is None and not storage.job_dir(old_job["id"]).exists()
    assert jobs.get(new_job["id"]) is not None and storage.job_dir(new_job["id"]).exists()
    assert models.get(model_old["id"]) is None and not storage.model_dir(model_old["id"]).exists()
    assert models.get(model_used["id"]) is not None
    assert sweep(ttl_hours=0).jobs == []  # 0: retention off


@pytest.fixture
def private_reconcile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-sent messages go to a queue no worker reads, and no other reconciler (the e2e
    worker's) runs a pass meanwhile: it would see the same test records."""
    import dataclasses

    from core.redis import get_redis, key
    from core.settings import get_settings

    private = dataclasses.replace(get_settings(), queue=get_settings().queue + "-unit")
    monkeypatch.setattr(reconciler, "get_settings", lambda: private)
    monkeypatch.setattr(queue, "get_settings", lambda: private)
    r, lock = get_redis(), key("reconciler", "lock")
    if not r.set(lock, "unit-test", nx=True, px=10_000):
        # passes start only when they take the lock: none starts before it expires
        ttl_ms = max(r.pttl(lock), 0)
        if ttl_ms < 3000:
            wait_until(
                lambda: r.set(lock, "unit-test", nx=True, px=10_000),
                ttl_ms / 1000 + 2,
                what="the reconciler lock, once its holder's expires",
            )
        else:
            # A pass that took the lock moments ago may still be running. A pass leaves no
            # trace when it ends, so there is nothing to poll: give it a moment (passes over
            # a test's handful of records take milliseconds).
            time.sleep(0.3)
    yield
    if r.get(lock) == "unit-test":
        r.delete(lock)


@pytest.mark.redis
@pytest.mark.usefixtures("private_reconcile")
def test_reconciler_requeues_lost_jobs_and_times_out_stuck_ones() -> None:
    lost = _job("running", started_at=now_iso())  # running, but no lease: its worker died
    stuck = _job("running", started_at=OLD)  # no lease, past the hard time limit
    alive = _job("running", started_at=now_iso())
    jobs.acquire_lease(alive["id"], "somewhere-else:1:x", 30)
    queued_lost = _job("queued", updated_at=OLD)  # no message anywhere
    cancelling = _job("cancelling", started_at=now_iso())

    report = reconciler.reconcile_once()
    assert lost["id"] in report.requeued and queued_lost["id"] in report.requeued
    assert alive["id"] not in report.requeued + report.failed
    assert stuck["id"] in report.failed
    assert jobs.get(stuck["id"])["error"]["reason"] == "timeout"
    assert cancelling["id"] in report.cancelled
    broker = queue.messages_in_broker()
    assert lost["id"] in broker and queued_lost["id"] in broker
    # a second pass does not send them again: their messages are there now
    assert queued_lost["id"] not in reconciler.reconcile_once().requeued
    for j in (lost, stuck, alive, queued_lost, cancelling):
        jobs.transition(j["id"], "cancelled", {"queued", "running", "cancelling", "failed"})


@pytest.mark.redis
def test_cancel_check() -> None:
    job = _job("running")
    reporter = JobReporter(job["id"])
    reporter.check_cancelled()  # running: nothing
    jobs.transition(job["id"], "cancelling", {"running"})
    with pytest.raises(CancelledError):
        reporter.check_cancelled()
    with pytest.raises(CancelledError):
        reporter.phase("pruning", 0.5)


def test_saved_model_pb_check() -> None:
    archive.check_saved_model_pb(b"\x08\x01\x12\x00")
    for bad in (b"\xff" * 10, b"\x08\x01", b"\x08\x01\x12\x10abc", b"\x12\x02\x08", b"\x0f\x00"):
        with pytest.raises(Problem) as err:
            archive.check_saved_model_pb(bad)
        assert err.value.status == 422


def test_gzip_bomb_tar_stops_early(tmp_path: Path) -> None:
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for i in range(50):
            info = tarfile.TarInfo(f"m/blob-{i}")
            info.size = 1_000_000
            tf.addfile(info, io.BytesIO(b"\0" * info.size))
    limits = archive.Limits(max_members=1000, max_total_bytes=5_000_000, max_ratio=10_000)
    with pytest.raises(Problem) as err:
        archive.detect(path, path.read_bytes()[:512], limits)
    assert err.value.extra["rule"] == "uncompressed_too_large"


def test_npz_with_pickles_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, x_train=np.array([{"a": 1}], dtype=object), y_train=np.zeros(1))
    with pytest.raises(DatasetError, match="pickle"):
        npz_header(path)
    junk = tmp_path / "junk.npz"
    with zipfile.ZipFile(junk, "w") as zf:
        zf.writestr("x_train.npy", b"\x93NUMPY garbage")
    with pytest.raises(DatasetError):
        npz_header(junk)


@pytest.mark.redis
def test_local_key_file_is_private_and_reused(tmp_path: Path) -> None:
    from app.auth.local_key import ensure_local_key

    path, secret, created = ensure_local_key(tmp_path)
    assert created and path.read_text().strip() == secret
    assert path.stat().st_mode & 0o777 == 0o600
    assert keys.lookup(secret).tenant == "local"  # type: ignore[union-attr]
    assert ensure_local_key(tmp_path) == (path, secret, False)
    keys.revoke(keys.lookup(secret).id)  # type: ignore[union-attr]
    _, fresh, created = ensure_local_key(tmp_path)  # e.g. a Redis that lost its data
    assert created and fresh != secret and keys.lookup(fresh) is not None


def test_h5_only_when_the_operator_allows_it(tmp_path: Path) -> None:
    from prunekit.model import load_model
    from tests import tiny_models

    path = tmp_path / "legacy.h5"
    tiny_models.mlp().save(path)
    head = path.read_bytes()[:512]
    limits = archive.Limits(max_members=10, max_total_bytes=10**8, max_ratio=200)
    with pytest.raises(Problem) as err:
        archive.detect(path, head, limits)
    assert err.value.status == 415 and "arbitrary code" in err.value.detail
    assert archive.detect(path, head, limits, allow_h5=True).container == "h5"
    loaded = load_model(path, "keras")  # what a worker does with the stored model.h5
    assert loaded.predict(np.zeros((2, 8), "float32")).shape == (2, 3)


def test_worker_memory_limit_is_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import machine_memory_mb

    monkeypatch.delenv("PRUNEKIT_WORKER_MAX_MEMORY_MB", raising=False)
    monkeypatch.setenv("PRUNEKIT_WORKER_CONCURRENCY", "4")
    monkeypatch.setenv("PRUNEKIT_WORKER_MEMORY_FRACTION", "0.5")
    assert Settings.from_env().worker_max_memory_mb == int(machine_memory_mb() * 0.5 / 4) > 0
    monkeypatch.delenv("PRUNEKIT_WORKER_MEMORY_FRACTION")
    assert Settings.from_env().worker_max_memory_mb == int(machine_memory_mb() * 0.8 / 4)
    monkeypatch.setenv("PRUNEKIT_WORKER_MAX_MEMORY_MB", "0")  # explicitly off
    assert Settings.from_env().worker_max_memory_mb == 0
    monkeypatch.setenv("PRUNEKIT_WORKER_MEMORY_FRACTION", "1.5")
    monkeypatch.delenv("PRUNEKIT_WORKER_MAX_MEMORY_MB")
    with pytest.raises(ValueError, match="PRUNEKIT_WORKER_MEMORY_FRACTION"):
        Settings.from_env()


def test_dataset_check_bounds_the_widened_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uint8 pixels that fit the limit as stored, but not once widened to float32."""
    import dataclasses

    from app.datasets import service as datasets
    from core.settings import get_settings

    path = tmp_path / "pixels.npz"
    np.savez(path, x_train=np.ones((100, 1000), "uint8"), y_train=np.zeros(100, "uint8"))
    small = dataclasses.replace(get_settings(), max_extracted_bytes=200_000)  # stored: 100 100
    monkeypatch.setattr(datasets, "get_settings", lambda: small)
    with pytest.raises(Problem) as err:
        datasets._check(path, path.read_bytes()[:8])
    assert err.value.extra["reason"] == "too_large_in_memory"
    assert "500100 bytes" in err.value.detail and "float32" in err.value.detail
    monkeypatch.setattr(datasets, "get_settings", lambda: dataclasses.replace(small,
                        max_extracted_bytes=500_100))  # fmt: skip
    assert datasets._check(path, path.read_bytes()[:8])["x_train"].shape == (100, 1000)


@pytest.mark.redis
def test_sweeper_keeps_live_worker_tmpdirs() -> None:
    live, dead = storage.worker_tmpdir(os.getpid()), storage.worker_tmpdir(999_999_999)
    past = time.time() - 7200
    for d in (live, dead):
        d.mkdir(parents=True, exist_ok=True)
        os.utime(d, (past, past))
    report = sweep(ttl_hours=1)
    assert live.is_dir() and f"tmp/{live.name}" not in report.orphans  # still in use
    assert not dead.exists() and f"tmp/{dead.name}" in report.orphans
    live.rmdir()


@pytest.mark.redis
@pytest.mark.usefixtures("private_reconcile")
def test_reconciler_requeues_a_job_whose_reserving_worker_died() -> None:
    """A message a worker reserved (kombu's ``unacked``) and never started: sent again once
    the reservation is older than the grace, not after the visibility timeout."""
    import json

    from core.redis import get_redis
    from core.settings import get_settings

    r = get_redis()
    prefix = f"{get_settings().key_prefix}:celery:"
    dead = _job("queued", updated_at=OLD)  # reserved an hour ago by a worker now gone
    fresh = _job("queued", updated_at=OLD)  # reserved a moment ago: its worker starts it now
    now = time.time()
    for tag, job, at in (("tag-dead", dead, now - 3600), ("tag-fresh", fresh, now - 0.5)):
        r.hset(f"{prefix}unacked", tag, json.dumps([{"args": [job["id"]]}, "", "q"]))
        r.zadd(f"{prefix}unacked_index", {tag: at})
    try:
        report = reconciler.reconcile_once(now)
        assert dead["id"] in report.requeued and fresh["id"] not in report.requeued
        messages = [e["message"] for e in jobs.events(dead["id"])]
        assert "the worker that took it was lost before starting it; queued again" in messages
    finally:
        r.hdel(f"{prefix}unacked", "tag-dead", "tag-fresh")
        r.zrem(f"{prefix}unacked_index", "tag-dead", "tag-fresh")
        for j in (dead, fresh):
            jobs.transition(j["id"], "cancelled", {"queued"})


@pytest.mark.redis
@pytest.mark.usefixtures("private_reconcile")
def test_reconciler_does_not_resend_a_lost_job_a_worker_just_took_again() -> None:
    """A running job whose worker died was sent again; a worker reserved that message a
    moment ago and has not taken the lease yet: the next pass sends no second message (the
    chaos drill saw "its worker was lost; queued again" twice for one death). The dead
    worker's own reservation, an hour old, does not count as live."""
    import json

    from core.redis import get_redis
    from core.settings import get_settings

    r = get_redis()
    prefix = f"{get_settings().key_prefix}:celery:"
    taken = _job("running", started_at=now_iso())  # no lease: its worker died
    orphan = _job("running", started_at=now_iso())  # only the dead worker's old reservation
    now = time.time()
    reservations = (("tag-taken", taken, now - 0.5), ("tag-orphan", orphan, now - 3600))
    for tag, job, at in reservations:
        r.hset(f"{prefix}unacked", tag, json.dumps([{"args": [job["id"]]}, "", "q"]))
        r.zadd(f"{prefix}unacked_index", {tag: at})
    try:
        report = reconciler.reconcile_once(now)
        assert taken["id"] not in report.requeued and orphan["id"] in report.requeued
    finally:
        r.hdel(f"{prefix}unacked", "tag-taken", "tag-orphan")
        r.zrem(f"{prefix}unacked_index", "tag-taken", "tag-orphan")
        for j in (taken, orphan):
            jobs.transition(j["id"], "cancelled", {"running"})
