"""core.object_store against a real S3 HTTP API (moto_server on loopback, signatures on)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.object_store import (
    Location,
    MultipartWriter,
    ObjectMissing,
    ObjectStore,
    StoreDenied,
    StoreUnavailable,
    make_client,
)
from tests.s3_server import MotoS3

MIB = 1 << 20
PART = 5 * MIB  # S3's (and moto's) smallest part but the last


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    with MotoS3(tmp_path_factory.mktemp("moto")) as server:
        yield server


def make_store(s3: MotoS3, secret: str = "", prefix: str = "unit") -> ObjectStore:
    location = Location(bucket=s3.bucket, prefix=f"{prefix}/", endpoint_url=s3.endpoint)
    client = make_client(location, s3.access_key, secret or s3.secret_key)
    return ObjectStore(location, client=client)


def test_location_parses_bucket_and_prefix() -> None:
    loc = Location.parse("s3://models-bucket/team/a/", "http://minio:9000")
    assert (loc.bucket, loc.prefix) == ("models-bucket", "team/a/")
    assert loc.endpoint_url == "http://minio:9000"
    assert Location.parse("s3://b").prefix == ""
    with pytest.raises(ValueError, match="PRUNEKIT_STORAGE must be s3://bucket"):
        Location.parse("/var/prunekit")


def test_keys_cannot_escape_the_prefix(s3: MotoS3) -> None:
    store = make_store(s3)
    assert store.key("models/m1/model.keras") == "unit/models/m1/model.keras"
    for bad in ("../other/x", "/abs/path", "models/../../x"):
        with pytest.raises(ValueError, match="escapes"):
            store.key(bad)


def test_multipart_upload_hashes_on_the_way_and_holds_one_part(s3: MotoS3) -> None:
    store = make_store(s3)
    data = os.urandom(2 * PART + 12345)  # two full parts and a short last one
    writer = MultipartWriter(store, store.key("big/blob"), part_bytes=PART)
    most_buffered = 0
    for start in range(0, len(data), MIB):
        writer.write(data[start : start + MIB])
        most_buffered = max(most_buffered, len(writer.buffer))
    assert writer.close() == hashlib.sha256(data).hexdigest()
    assert len(writer.parts) == 3 and most_buffered < PART
    assert store.head("big/blob").size == len(data)
    assert b"".join(store.read("big/blob")) == data
    assert b"".join(store.read("big/blob", PART - 3, PART + 2)) == data[PART - 3 : PART + 3]


def test_failed_stream_leaves_no_object_and_no_open_upload(s3: MotoS3) -> None:
    store = make_store(s3)

    def chunks() -> Iterator[bytes]:
        yield os.urandom(PART + 1)  # the first part goes out...
        raise ConnectionResetError("client went away")  # ...then the upload dies

    with pytest.raises(ConnectionResetError):
        store.upload_stream(chunks(), "broken/blob")
    assert store.list_keys("broken") == []
    open_uploads = s3.client().list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])
    assert [u for u in open_uploads if u["Key"].startswith("unit/broken")] == []


def test_tree_upload_stage_children_and_delete(s3: MotoS3, tmp_path: Path) -> None:
    store = make_store(s3, prefix="tree")
    src = tmp_path / "saved_model"
    (src / "variables").mkdir(parents=True)
    (src / "saved_model.pb").write_bytes(b"graph")
    (src / "variables" / "variables.index").write_bytes(b"index")
    store.upload_tree(src, "models/m1/saved_model")
    store.upload_tree(tmp_path / "saved_model" / "saved_model.pb", "models/m2/model.keras")
    assert store.list_keys("models/m1") == [
        "models/m1/saved_model/saved_model.pb",
        "models/m1/saved_model/variables/variables.index",
    ]
    staged = store.stage("models/m1/saved_model", tmp_path / "stage" / "saved_model")
    assert (staged / "variables" / "variables.index").read_bytes() == b"index"
    single = store.stage("models/m2/model.keras", tmp_path / "stage" / "model.keras")
    assert single.read_bytes() == b"graph"
    assert set(store.children("models")) == {"m1", "m2"}
    # a sibling whose name starts the same is not part of "models/m1"
    store.upload_stream([b"x"], "models/m10/model.keras")
    assert store.delete("models/m1") == 2
    assert set(store.children("models")) == {"m2", "m10"}


def test_missing_objects_are_reported_as_missing(s3: MotoS3, tmp_path: Path) -> None:
    store = make_store(s3)
    with pytest.raises(ObjectMissing):
        store.head("models/nope/model.keras")
    with pytest.raises(ObjectMissing):
        store.stage("models/nope", tmp_path / "x")
    with pytest.raises(ObjectMissing):
        b"".join(store.read("models/nope/model.keras"))


def test_presigned_url_then_the_store_goes_down(tmp_path: Path) -> None:
    # moto cannot check a presigned URL's signature: this checks the URL names the object,
    # its download name and type, on a moto that checks no signatures (one server start
    # for two checks: the second is what the client says once that server is gone)
    with MotoS3(tmp_path, auth=False) as s3:
        store = make_store(s3)
        store.upload_stream([b"pruned bytes"], "jobs/j1/attempt-1/model.keras")
        url = store.presigned_url(
            "jobs/j1/attempt-1/model.keras", "m-pruned.keras", "application/zip"
        )
        answer = httpx.get(url)
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=300" in url  # SigV4, short-lived
    assert answer.status_code == 200 and answer.content == b"pruned bytes"
    assert "m-pruned.keras" in answer.headers["content-disposition"]
    with pytest.raises(StoreUnavailable, match="Could not connect"):
        store.check()
    with pytest.raises(StoreUnavailable):
        store.upload_stream([b"x"], "a/b")


def test_wrong_credentials_are_denied_with_the_reason(s3: MotoS3) -> None:
    make_store(s3).check()
    with pytest.raises(StoreDenied, match=r"403|SignatureDoesNotMatch"):
        make_store(s3, secret="not-the-secret").check()
