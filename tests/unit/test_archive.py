"""Recognising uploads by content and unpacking them safely (no TensorFlow involved)."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from app.models import archive
from app.problems import Problem
from prunekit.formats import ModelFormat

LIMITS = archive.Limits(max_members=100, max_total_bytes=10_000_000, max_ratio=200)
PB = b"\x08\x01\x12\x00"  # a minimal SavedModel protobuf: schema version 1, one MetaGraph


def _detect(path: Path) -> archive.Detected:
    return archive.detect(path, path.read_bytes()[:512], LIMITS)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_saved_model_zip_at_root_and_in_folder(tmp_path: Path) -> None:
    for name, members in {
        "root.zip": {"saved_model.pb": PB, "variables/variables.index": b"i"},
        "folder.zip": {"m/saved_model.pb": PB, "m/variables/variables.index": b"i"},
    }.items():
        path = _zip(tmp_path / name, members)
        det = _detect(path)
        assert det == archive.Detected(ModelFormat.SAVED_MODEL, "zip")
        out = archive.extract_saved_model(path, "zip", tmp_path / f"out-{name}", LIMITS)
        assert (out / "saved_model.pb").read_bytes() == PB
        assert (out / "variables" / "variables.index").read_bytes() == b"i"


def test_tar_gz(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "variables").mkdir(parents=True)
    (src / "saved_model.pb").write_bytes(PB)
    (src / "variables" / "variables.index").write_bytes(b"i")
    path = tmp_path / "m.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.add(src, arcname="model")
    assert _detect(path).container == "tar"
    out = archive.extract_saved_model(path, "tar", tmp_path / "out", LIMITS)
    assert (out / "saved_model.pb").read_bytes() == PB


def test_keras_file(tmp_path: Path) -> None:
    path = _zip(
        tmp_path / "m.keras",
        {"config.json": b'{"class_name": "Functional"}', "metadata.json": b"{}",
         "model.weights.h5": b""},
    )  # fmt: skip
    assert _detect(path) == archive.Detected(ModelFormat.KERAS, "keras")


@pytest.mark.parametrize(
    "content",
    [b"\x89HDF\r\n\x1a\n" + b"\0" * 100, b"just some text", b"\x00\x01\x02" * 50],
)
def test_unknown_formats_are_415(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "blob"
    path.write_bytes(content)
    with pytest.raises(Problem) as err:
        _detect(path)
    assert err.value.status == 415
    assert "Accepted formats" in err.value.detail


def test_zip_without_model_is_415(tmp_path: Path) -> None:
    with pytest.raises(Problem) as err:
        _detect(_zip(tmp_path / "x.zip", {"readme.txt": b"hi"}))
    assert err.value.status == 415


@pytest.mark.parametrize(
    ("name", "rule"),
    [("../evil.txt", "path_traversal"), ("/etc/evil", "absolute_path"),
     ("m/../../evil", "path_traversal")],
)  # fmt: skip
def test_zip_slip_refused(tmp_path: Path, name: str, rule: str) -> None:
    path = _zip(tmp_path / "slip.zip", {"saved_model.pb": b"x", name: b"owned"})
    with pytest.raises(Problem) as err:
        _detect(path)
    assert err.value.status == 422 and err.value.extra["rule"] == rule
    assert not (tmp_path.parent / "evil.txt").exists()


def test_zip_symlink_refused(tmp_path: Path) -> None:
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("saved_model.pb", b"x")
        info = zipfile.ZipInfo("variables")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc")
    with pytest.raises(Problem) as err:
        _detect(path)
    assert err.value.extra["rule"] == "symlink"


def test_tar_symlink_refused(tmp_path: Path) -> None:
    path = tmp_path / "link.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        data = b"x"
        info = tarfile.TarInfo("m/saved_model.pb")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("m/variables")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc"
        tf.addfile(link)
    with pytest.raises(Problem) as err:
        _detect(path)
    assert err.value.extra["rule"] == "symlink"


def test_zip_bomb_ratio_refused(tmp_path: Path) -> None:
    path = _zip(tmp_path / "bomb.zip", {"saved_model.pb": b"\0" * 5_000_000})
    with pytest.raises(Problem) as err:
        _detect(path)
    assert err.value.extra["rule"] == "compression_ratio"


def test_truncated_zip_is_corrupt(tmp_path: Path) -> None:
    good = _zip(tmp_path / "g.zip", {"saved_model.pb": b"x" * 1000})
    bad = tmp_path / "bad.zip"
    bad.write_bytes(good.read_bytes()[:60])
    with pytest.raises(Problem) as err:
        _detect(bad)
    assert err.value.status == 422 and err.value.slug == "corrupt-upload"
