"""core.artifacts with PRUNEKIT_STORAGE=s3://...: publish, stage, attempts, delete, sweep.

In-process against moto_server over HTTP; the settings are switched to the object store for
each test and back afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import artifacts, storage
from core.object_store import ObjectMissing
from core.records import new_id
from core.settings import get_settings
from tests.s3_server import MotoS3


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    with MotoS3(tmp_path_factory.mktemp("moto"), prefix=f"unit-{new_id()[:6]}") as server:
        yield server


@pytest.fixture
def on_s3(s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoS3]:
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    artifacts.object_store.cache_clear()
    try:
        yield s3
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        artifacts.object_store.cache_clear()


def keys_under(s3: MotoS3, relative: str) -> list[str]:
    return [k for k in s3.all_keys() if k.startswith(f"{s3.prefix}/{relative}")]


def test_publish_stage_and_remove_a_model(on_s3: MotoS3, tmp_path: Path) -> None:
    model_id = new_id()
    staged = tmp_path / "model" / "saved_model"
    (staged / "variables").mkdir(parents=True)
    (staged / "saved_model.pb").write_bytes(b"graph")
    (staged / "variables" / "variables.data").write_bytes(b"weights")
    artifacts.publish(tmp_path / "model", storage.model_dir(model_id))
    assert len(keys_under(on_s3, f"models/{model_id}/saved_model/")) == 2
    assert not storage.model_dir(model_id).exists()  # nothing on the local disk
    relative = storage.relative(storage.model_dir(model_id) / "saved_model")
    local = artifacts.stage(relative, tmp_path / "scratch")
    assert (local / "variables" / "variables.data").read_bytes() == b"weights"
    assert tmp_path / "scratch" in local.parents
    artifacts.remove(storage.model_dir(model_id))
    assert keys_under(on_s3, f"models/{model_id}") == []
    with pytest.raises(ObjectMissing):
        artifacts.stage(relative, tmp_path / "again")


def test_attempts_publish_unpublish_and_cleanup(on_s3: MotoS3, tmp_path: Path) -> None:
    job_id = new_id()
    for token in (1, 2, 3):
        out = tmp_path / f"out{token}"
        out.mkdir()
        (out / "model.keras").write_bytes(f"attempt {token}".encode())
        artifacts.publish_attempt(out, job_id, token)
    artifacts.unpublish_attempt(job_id, 3)
    assert {k.split("/")[-2] for k in keys_under(on_s3, f"jobs/{job_id}/")} == {
        "attempt-1", "attempt-2"}  # fmt: skip
    artifacts.remove_other_attempts(job_id, 2)
    assert keys_under(on_s3, f"jobs/{job_id}/") == [
        f"{on_s3.prefix}/jobs/{job_id}/attempt-2/model.keras"
    ]
    with pytest.raises(ValueError, match="not under"):
        artifacts.remove(tmp_path)


def test_sweeper_removes_expired_records_objects_and_orphans(on_s3: MotoS3, tmp_path: Path) -> None:
    from core.lifecycle.sweeper import sweep
    from core.models import store as models

    kept, expired, orphan = new_id(), new_id(), new_id()
    for model_id in (kept, expired, orphan):
        (tmp_path / model_id).mkdir()
        (tmp_path / model_id / "model.keras").write_bytes(b"x")
        artifacts.publish(tmp_path / model_id, storage.model_dir(model_id))
    day = 24 * 3600
    for model_id, created in ((kept, time.time() + 2 * day), (expired, time.time())):
        models.create({
            "id": model_id, "tenant": "sweep", "filename": "m.keras", "format": "keras",
            "size_bytes": 1, "sha256": "0" * 64, "metadata": {},
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(created)),
            "path": f"models/{model_id}/model.keras", "inspection": {"status": "succeeded"},
        })  # fmt: skip
    # a day later with a TTL of one hour: everything but `kept` (made "tomorrow") is old
    report = sweep(ttl_hours=1, now=time.time() + day)
    assert report.models == [expired] and f"models/{orphan}" in report.orphans
    assert keys_under(on_s3, f"models/{expired}") == []
    assert keys_under(on_s3, f"models/{orphan}") == []
    assert keys_under(on_s3, f"models/{kept}") != [] and models.get(kept) is not None
