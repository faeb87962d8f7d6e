"""A corpus of hostile and broken uploads, each answered 4xx with a reason; nothing is
written outside the store, and the worker keeps serving afterwards."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import time
import uuid
import zipfile
from pathlib import Path

import keras
import psutil
import pytest

from core import storage
from tests.e2e.conftest import Service
from tests.tiny_models import zip_dir as tiny_zip_dir

pytestmark = pytest.mark.e2e

TAG = uuid.uuid4().hex[:8]
PB = b"\x08\x01\x12\x00"  # a minimal well-formed SavedModel protobuf


def _zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def _ti(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def corpus(tmp: Path) -> dict[str, tuple[Path, int, str]]:
    """name -> (file, expected status, expected rule or problem slug)."""
    evil = f"evil-{TAG}"
    sym = zipfile.ZipInfo("m/variables")
    sym.create_system = 3
    sym.external_attr = (0o120777) << 16
    with zipfile.ZipFile(tmp / "zip_symlink.zip", "w") as zf:
        zf.writestr("m/saved_model.pb", PB)
        zf.writestr(sym, "/etc")
    good = _zip(tmp / "good.zip", {"m/saved_model.pb": PB + b"\x12\x00" * 500})
    (tmp / "truncated.zip").write_bytes(good.read_bytes()[:-30])
    (tmp / "random.bin").write_bytes(os.urandom(4096))
    (tmp / "random.gz").write_bytes(b"\x1f\x8b" + os.urandom(4096))
    (tmp / "legacy.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(512))
    many = {f"m/variables/part-{i}": b"" for i in range(10_001)}
    return {
        "zip slip": (
            _zip(tmp / "slip.zip", {"saved_model.pb": PB, f"../../{evil}": b"x"}),
            422,
            "path_traversal",
        ),
        "zip absolute path": (
            _zip(tmp / "abs.zip", {"saved_model.pb": PB, f"/tmp/{evil}": b"x"}),
            422,
            "absolute_path",
        ),
        "tar traversal": (
            _tar(
                tmp / "trav.tar.gz",
                [_ti("m/saved_model.pb"), _ti(f"m/../../{evil}")],
                {"m/saved_model.pb": PB, f"m/../../{evil}": b"x"},
            ),
            422,
            "path_traversal",
        ),
        "tar symlink": (
            _tar(
                tmp / "sym.tar.gz",
                [_ti("m/saved_model.pb"), _ti("m/variables", tarfile.SYMTYPE, "/etc")],
                {"m/saved_model.pb": PB},
            ),
            422,
            "symlink",
        ),
        "tar hardlink": (
            _tar(
                tmp / "hard.tar.gz",
                [_ti("m/saved_model.pb"), _ti("m/x", tarfile.LNKTYPE, "/etc/passwd")],
                {"m/saved_model.pb": PB},
            ),
            422,
            "hardlink",
        ),
        "tar device": (
            _tar(
                tmp / "dev.tar.gz",
                [_ti("m/saved_model.pb"), _ti("m/null", tarfile.CHRTYPE)],
                {"m/saved_model.pb": PB},
            ),
            422,
            "special_file",
        ),
        "zip symlink": (tmp / "zip_symlink.zip", 422, "symlink"),
        "zip bomb": (
            _zip(tmp / "bomb.zip", {"saved_model.pb": PB, "variables/v.data": b"\0" * 30_000_000}),
            422,
            "compression_ratio",
        ),
        "too many members": (
            _zip(tmp / "many.zip", {"m/saved_model.pb": PB, **many}, zipfile.ZIP_STORED),
            422,
            "too_many_members",
        ),
        "corrupt saved_model.pb": (
            _zip(tmp / "badpb.zip", {"m/saved_model.pb": os.urandom(2048)}),
            422,
            "corrupt-upload",
        ),
        "truncated zip": (tmp / "truncated.zip", 422, "corrupt-upload"),
        "random bytes": (tmp / "random.bin", 415, "unsupported-model-format"),
        "gzip of junk": (tmp / "random.gz", 422, "corrupt-upload"),
        "legacy h5": (tmp / "legacy.h5", 415, "unsupported-model-format"),
    }


def _store_listing() -> set[str]:
    root = storage.artifacts_root()
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def test_hostile_corpus_is_refused(service: Service, tmp_path: Path, model_files: dict) -> None:
    before = _store_listing()
    for name, (path, status, rule) in corpus(tmp_path).items():
        with path.open("rb") as f:
            resp = service.client.post("/v1/models", files={"file": (path.name, f)})
        assert resp.status_code == status, (name, resp.status_code, resp.text)
        body = resp.json()
        assert resp.headers["content-type"].startswith("application/problem+json"), name
        assert body.get("rule", body["type"].rsplit(":", 1)[-1]) == rule, (name, body)
        assert body["detail"], name
    # nothing written outside the store, nothing left inside it, no scratch left behind
    for place in (Path("/tmp"), tmp_path.parent, storage.artifacts_root().parent,
                  storage.artifacts_root().parents[1]):  # fmt: skip
        assert not list(place.glob(f"evil-{TAG}*")), place
    assert _store_listing() == before
    tmp_dir = storage.artifacts_root().parent / "tmp"
    assert not [p for p in tmp_dir.glob("upload-*")] if tmp_dir.exists() else True
    # and the worker still serves
    ok = service.upload(model_files["saved_model_zip"])
    job = service.client.post(
        "/v1/jobs", json={"model_id": ok["id"], "strategy": {"name": "magnitude", "sparsity": 0.5}}
    ).json()
    assert service.wait_job(job["id"])["status"] == "succeeded"


@keras.saving.register_keras_serializable(package="hostile")
class Sneaky(keras.layers.Layer):
    def call(self, x):  # type: ignore[no-untyped-def]
        return x


@pytest.mark.parametrize("kind", ["lambda", "custom_class", "bad_graph", "custom_op"])
def test_models_the_worker_refuses_to_load(
    service: Service, tmp_path: Path, model_files: dict[str, Path], kind: str
) -> None:
    if kind == "custom_op":  # a graph using an op this TensorFlow does not have
        sm = tmp_path / "sm"
        shutil.copytree(model_files["saved_model_dir"], sm)
        pb = sm / "saved_model.pb"
        pb.write_bytes(pb.read_bytes().replace(b"MatMul", b"MatMuZ"))  # same length: valid pb
        path = tiny_zip_dir(sm, tmp_path / "custom_op.zip")
        expected = "custom TensorFlow ops"
    elif kind == "bad_graph":  # well-formed protobuf framing, garbage inside: only TF can tell
        path = _zip(
            tmp_path / "graph.zip", {"m/saved_model.pb": b"\x08\x01\x12\x04\xff\xff\xff\xff"}
        )
        expected = "SavedModel could not be loaded"
    else:
        inp = keras.Input((4,))
        layer = keras.layers.Lambda(lambda x: x * 2) if kind == "lambda" else Sneaky()
        path = tmp_path / f"{kind}.keras"
        keras.Model(inp, keras.layers.Dense(2)(layer(inp))).save(path)
        expected = "Lambda" if kind == "lambda" else "custom class"
    model = service.upload(path)
    inspected = service.wait_inspection(model["id"])
    assert inspected["inspection"]["status"] == "failed"
    error = inspected["inspection"]["error"]
    # a custom class is refused by name (only operator-listed modules may provide one)
    reason = "custom_class_not_allowed" if kind == "custom_class" else "model_load_failed"
    assert error["reason"] == reason and expected in error["message"], error
    resp = service.client.post(
        "/v1/jobs",
        json={"model_id": model["id"], "strategy": {"name": "magnitude", "sparsity": 0.5}},
    )
    assert resp.status_code == 422 and resp.json()["type"].endswith("model-unusable"), resp.text
    assert expected in resp.json()["detail"]


def test_catastrophic_exclude_pattern_is_harmless(service: Service, tmp_path: Path) -> None:
    """``(a+)+$`` against a layer named with 40 ``a``: hours for a backtracking engine (and a
    GIL held throughout); RE2 answers in microseconds, and the job runs once."""
    inp = keras.Input((4,))
    hidden = keras.layers.Dense(8, name="keep")(keras.layers.Dense(8, name="a" * 40)(inp))
    path = tmp_path / "aaaa.keras"
    keras.Model(inp, keras.layers.Dense(2, name="out")(hidden)).save(path)
    model = service.upload(path)
    job = service.client.post(
        "/v1/jobs",
        json={"model_id": model["id"], "exclude": ["(a+)+$", "^out$"],
              "strategy": {"name": "magnitude", "sparsity": 0.5}},
    )  # fmt: skip
    assert job.status_code == 202, job.text
    start = time.monotonic()
    done = service.wait_job(job.json()["id"], timeout=90)
    assert done["status"] == "succeeded" and done["attempts"] == 1, done
    assert time.monotonic() - start < 60
    pruned = {row["layer"] for row in done["metrics"]["layers"]}  # the prunable ones
    assert pruned == {"keep"}, done["metrics"]["layers"]
    # what RE2 cannot run is refused up front, naming the pattern
    resp = service.client.post(
        "/v1/jobs",
        json={"model_id": model["id"], "exclude": ["^ok$", r"(dense)_\1"],
              "strategy": {"name": "magnitude", "sparsity": 0.5}},
    )  # fmt: skip
    assert resp.status_code == 422, resp.text
    errors = resp.json()["errors"]
    assert any(
        e["field"] == "body.exclude.1" and "backreferences" in e["message"] for e in errors
    ), errors


@pytest.mark.parametrize(
    ("kind", "rule", "words"),
    [
        ("huge_shape", "truncated_array", "declares shape (2305843009213693952, 8)"),
        ("dim_2_64", "truncated_array", "declares shape"),
        ("negative_shape", "bad_shape", "negative dimension"),
        ("no_samples", "empty_split", "0 samples"),
        ("npz_bomb", "compression_ratio", "expands"),
    ],
)
def test_dataset_bombs_are_refused_at_upload(
    service: Service, tmp_path: Path, kind: str, rule: str, words: str
) -> None:
    """Refused by the API from the headers, before any worker loads a byte of them."""
    import numpy as np

    from tests.unit.test_data_and_losses import forged_npz

    path = tmp_path / f"{kind}.npz"
    if kind == "npz_bomb":  # 30 MB of zeros in ~30 KB
        np.savez_compressed(path, x_train=np.zeros((30_000, 1000), "uint8"),
                            y_train=np.zeros(30_000, "uint8"))  # fmt: skip
    else:
        shapes = {"huge_shape": (2**61, 8), "dim_2_64": (2**64, 8), "negative_shape": (-5, 8),
                  "no_samples": (0, 8)}  # fmt: skip
        x_shape = shapes[kind]
        forged_npz(path, x_shape, x_shape[:1])
    with path.open("rb") as f:
        resp = service.client.post("/v1/datasets", files={"file": (path.name, f)})
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["reason"] == rule and words in body["detail"], body


def test_worker_leaves_no_temporary_files(
    service: Service, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    """Fine-tuning makes TF write ``__autograph_generated_file*.py`` into the temporary
    directory; the worker child's private TMPDIR under the home is emptied after the task
    and removed with the child, and Keras' config lives under the home too."""
    import numpy as np

    rng = np.random.default_rng(0)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, x_train=rng.normal(size=(64, 8)).astype("float32"),
             y_train=rng.integers(0, 3, 64))  # fmt: skip
    with npz.open("rb") as f:
        dataset = service.client.post("/v1/datasets", files={"file": ("tiny.npz", f)}).json()
    model = service.upload(model_files["keras"])
    job = service.client.post(
        "/v1/jobs",
        json={"model_id": model["id"], "dataset_id": dataset["id"],
              "strategy": {"name": "magnitude", "sparsity": 0.5},
              "fine_tune": {"epochs": 1, "batch_size": 16}},
    )  # fmt: skip
    assert job.status_code == 202, job.text
    assert service.wait_job(job.json()["id"])["status"] == "succeeded"
    home = storage.artifacts_root().parent
    deadline = time.monotonic() + 30  # the child exits after its task, and removes its dir
    while True:
        leftovers = [p for p in (home / "tmp").rglob("*") if "__autograph_generated" in p.name]
        dead = [p for p in (home / "tmp").glob("worker-*")
                if not psutil.pid_exists(int(p.name.removeprefix("worker-")))]  # fmt: skip
        if not leftovers and not dead:
            break
        assert time.monotonic() < deadline, (leftovers, dead)
        time.sleep(0.5)
    assert (home / "cache" / "keras" / "keras.json").is_file()  # KERAS_HOME under the home
