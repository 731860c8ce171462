"""Models carried by an npm package (ISNet): fetched with the real ``npm pack``, unpacked safely,
reassembled from chunks, verified, installed atomically; ISNet's float32 copy built locally.

The unit tests build small npm-style tarballs here (``package/dist/resources.json`` plus chunks
named by their sha256, the layout of ``@imgly/background-removal-data``) and point a catalog entry
at them; the network tests fetch the real package once per module.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cleancut.config import Settings
from cleancut.engine import Engine, Options
from cleancut.errors import ModelChecksumMismatch, ModelDownloadFailed
from cleancut.models import catalog, npm
from cleancut.models.catalog import CATALOG, NpmCarrier
from cleancut.models.pull import import_file, pull
from cleancut.models.store import ModelStore

from .imagetools import alpha, input_bytes, open_image

ISNET_FP16_SHA256 = "b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb"
ISNET_SMALL_SHA256 = "7001d60734fdc112dd9c062635fb59cd401fb82a9d4213134bce4dbd655c803a"


@pytest.fixture
def empty_store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- small npm-style tarballs --------------------------------------------------------------------


def _add(tar: tarfile.TarFile, name: str, data: bytes, kind: bytes = tarfile.REGTYPE,
         link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.type = kind
    info.linkname = link
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _npm_tarball(
    path: Path,
    resources: dict[str, bytes],
    *,
    chunk_bytes: int = 1000,
    tamper: bool = False,
    extra: Callable[[tarfile.TarFile], None] | None = None,
) -> Path:
    """A gzipped npm tarball carrying ``resources`` as chunks, like @imgly/background-removal-data.

    ``tamper``: the last chunk of each resource keeps its name but has one byte changed.
    """
    index: dict[str, dict[str, object]] = {}
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "package/package.json", b'{"name": "test-carrier", "version": "1.0.0"}')
        for key, data in resources.items():
            chunks = []
            for start in range(0, len(data), chunk_bytes):
                piece = data[start:start + chunk_bytes]
                digest = _sha(piece)
                if tamper and start + chunk_bytes >= len(data):
                    piece = bytes([piece[0] ^ 1]) + piece[1:]
                _add(tar, f"package/dist/{digest}", piece)
                chunks.append({"hash": digest, "offsets": [start, start + len(piece)]})
            index[key] = {"chunks": chunks, "size": len(data), "mime": "application/octet-stream"}
        if extra is not None:
            extra(tar)
        _add(tar, "package/dist/resources.json", json.dumps(index).encode())
    return path


@pytest.fixture
def local_npm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Point catalog model NAME at a tarball built here; ``npm pack`` is replaced by a copy of it.

    Returns ``publish(name, payload, **tarball_options) -> spec``.
    """

    def publish(name: str, payload: bytes, *, resource: str = "/models/medium",
                carrier_sha256: str | None = None, **options: object) -> catalog.ModelSpec:
        tarball = _npm_tarball(tmp_path / "carrier.tgz",
                               {resource: payload, "/models/other": b"x" * 2500}, **options)
        base = CATALOG[name]
        assert isinstance(base.carrier, NpmCarrier)
        carrier = replace(base.carrier, resource=resource, size_bytes=len(payload),
                          sha256=carrier_sha256 or _sha(payload))
        spec = replace(base, carrier=carrier)
        if not carrier.to_float32:
            spec = replace(spec, sha256=carrier.sha256, size_bytes=carrier.size_bytes)
        monkeypatch.setitem(catalog.CATALOG, name, spec)

        def fake_pack(carrier: NpmCarrier, dest: Path, **kwargs: object) -> Path:
            dest.mkdir(parents=True)
            return Path(shutil.copyfile(tarball, dest / "test-carrier-1.0.0.tgz"))

        monkeypatch.setattr(npm, "npm_pack", fake_pack)
        return spec

    return publish


def _random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


# --- reassembly and verification -----------------------------------------------------------------


def test_chunks_are_reassembled_in_order_verified_and_installed(
    local_npm, empty_store: ModelStore
) -> None:
    payload = _random_bytes(10_500)  # ten full chunks and a short one
    local_npm("isnet-small", payload)
    installed, changed = pull(empty_store, "isnet-small")
    assert changed is True
    assert installed.path.read_bytes() == payload
    assert installed.sha256 == _sha(payload)
    assert _leftovers(empty_store.model_dir) == ["isnet-small.json", "isnet-small.onnx"]
    meta = json.loads((empty_store.model_dir / "isnet-small.json").read_text())
    assert meta["source"] == "npm: @imgly/background-removal-data@1.4.5"
    assert meta["sha256"] == _sha(payload)
    assert pull(empty_store, "isnet-small")[1] is False


def test_a_tampered_chunk_is_a_checksum_error_and_nothing_is_installed(
    local_npm, empty_store: ModelStore
) -> None:
    local_npm("isnet-small", _random_bytes(5000), tamper=True)
    with pytest.raises(ModelChecksumMismatch) as info:
        pull(empty_store, "isnet-small")
    assert "sha256" in str(info.value)
    assert _leftovers(empty_store.model_dir) == []


def test_chunks_that_do_not_add_up_to_the_catalog_checksum_install_nothing(
    local_npm, empty_store: ModelStore
) -> None:
    # every chunk matches its own name, but the whole is not what the catalog publishes
    local_npm("isnet-small", _random_bytes(5000), carrier_sha256="0" * 64)
    with pytest.raises(ModelChecksumMismatch) as info:
        pull(empty_store, "isnet-small")
    assert "0" * 64 in str(info.value)
    assert _leftovers(empty_store.model_dir) == []


def test_a_package_without_the_resource_is_a_failed_download(
    local_npm, empty_store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = local_npm("isnet-small", _random_bytes(3000))
    assert isinstance(spec.carrier, NpmCarrier)
    monkeypatch.setitem(catalog.CATALOG, "isnet-small",
                        replace(spec, carrier=replace(spec.carrier, resource="/models/large")))
    with pytest.raises(ModelDownloadFailed) as info:
        pull(empty_store, "isnet-small")
    assert "/models/large" in str(info.value)
    assert _leftovers(empty_store.model_dir) == []


# --- tar safety ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "kind", "link"),
    [
        ("package/../../evil", tarfile.REGTYPE, ""),
        ("../evil", tarfile.REGTYPE, ""),
        ("/tmp/evil", tarfile.REGTYPE, ""),
        ("package/dist/evil", tarfile.SYMTYPE, "/etc/passwd"),
        ("package/dist/evil", tarfile.LNKTYPE, "package/package.json"),
        ("package/dist/evil", tarfile.FIFOTYPE, ""),
    ],
    ids=["dotdot-inside", "dotdot", "absolute", "symlink", "hardlink", "fifo"],
)
def test_an_unsafe_member_refuses_the_whole_package(
    member: str, kind: bytes, link: str, local_npm, empty_store: ModelStore, tmp_path: Path
) -> None:
    local_npm("isnet-small", _random_bytes(3000),
              extra=lambda tar: _add(tar, member, b"evil", kind, link))
    with pytest.raises(ModelDownloadFailed) as info:
        pull(empty_store, "isnet-small")
    assert "refused" in str(info.value)
    assert _leftovers(empty_store.model_dir) == []
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_a_member_over_the_size_bound_is_refused(
    local_npm, empty_store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_npm("isnet-small", _random_bytes(3000), chunk_bytes=3000)
    monkeypatch.setattr(npm, "MAX_MEMBER_BYTES", 2999)
    with pytest.raises(ModelDownloadFailed) as info:
        pull(empty_store, "isnet-small")
    assert "2999" in str(info.value)
    assert _leftovers(empty_store.model_dir) == []


def test_what_is_not_a_tarball_is_a_failed_download(
    local_npm, empty_store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_npm("isnet-small", _random_bytes(3000))

    def html_pack(carrier: NpmCarrier, dest: Path, **kwargs: object) -> Path:
        dest.mkdir(parents=True)
        (dest / "x.tgz").write_bytes(b"<html>proxy error</html>")
        return dest / "x.tgz"

    monkeypatch.setattr(npm, "npm_pack", html_pack)
    with pytest.raises(ModelDownloadFailed):
        pull(empty_store, "isnet-small")
    assert _leftovers(empty_store.model_dir) == []


# --- npm itself ----------------------------------------------------------------------------------


def test_without_npm_on_path_the_error_says_how_to_get_it(
    empty_store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(ModelDownloadFailed) as info:
        pull(empty_store, "isnet")
    message = str(info.value)
    assert "npm is not on PATH" in message
    assert "apt-get install npm" in message
    assert "@imgly/background-removal-data@1.4.5" in message
    assert _leftovers(empty_store.model_dir) == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_when_npm_cannot_reach_the_registry_the_error_says_what_npm_said(
    empty_store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the real npm, offline: a registry on a closed local port, an empty cache, no retries
    monkeypatch.setenv("npm_config_registry", f"http://127.0.0.1:{_closed_port()}/")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    with pytest.raises(ModelDownloadFailed) as info:
        pull(empty_store, "isnet", npm_timeout_s=120)
    message = str(info.value)
    assert "npm could not fetch @imgly/background-removal-data@1.4.5" in message
    assert "ECONNREFUSED" in message
    assert _leftovers(empty_store.model_dir) == []


# --- the float32 copy ----------------------------------------------------------------------------


def _fp16_model(path: Path) -> Path:
    """ISNet's pattern in miniature: float32 input cast to float16, float16 Conv weights, a step
    computed in float32 between Casts, float16 Sigmoid, float32 output written by a Cast."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    weights = numpy_helper.from_array(
        (rng.standard_normal((1, 3, 3, 3)) * 0.5).astype(np.float16), "w")
    bias = numpy_helper.from_array(np.array([0.25], dtype=np.float16), "b")
    f16, f32 = TensorProto.FLOAT16, TensorProto.FLOAT
    nodes = [
        helper.make_node("Cast", ["image"], ["x16"], to=f16),
        helper.make_node("Conv", ["x16", "w", "b"], ["y16"], pads=[1, 1, 1, 1]),
        helper.make_node("Cast", ["y16"], ["y32"], to=f32),
        helper.make_node("Relu", ["y32"], ["r32"]),
        helper.make_node("Cast", ["r32"], ["r16"], to=f16),
        helper.make_node("Sigmoid", ["r16"], ["s16"]),
        helper.make_node("Cast", ["s16"], ["mask"], to=f32),
    ]
    graph = helper.make_graph(
        nodes, "fp16",
        [helper.make_tensor_value_info("image", f32, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("mask", f32, [1, 1, "h", "w"])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _run(path: Path, batch: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"image": batch})[0])


def test_the_float32_copy_has_no_float16_and_no_casts_and_computes_the_same(
    tmp_path: Path,
) -> None:
    onnx = pytest.importorskip("onnx")
    from cleancut.models.fp16 import to_float32

    source = _fp16_model(tmp_path / "fp16.onnx")
    assert to_float32(source, tmp_path / "a.onnx") == 2  # the weights and the bias
    to_float32(source, tmp_path / "b.onnx")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()

    model = onnx.load(str(tmp_path / "a.onnx"))
    assert [n.op_type for n in model.graph.node] == ["Conv", "Relu", "Sigmoid"]
    assert {t.data_type for t in model.graph.initializer} == {onnx.TensorProto.FLOAT}
    assert [o.name for o in model.graph.output] == ["mask"]
    onnx.checker.check_model(model)

    batch = np.random.default_rng(2).random((1, 3, 20, 30), dtype=np.float32)
    want, got = _run(source, batch), _run(tmp_path / "a.onnx", batch)
    assert got.dtype == np.float32 and got.shape == (1, 1, 20, 30)
    assert np.abs(got - want).max() < 2e-3  # float16 arithmetic against float32


def test_isnet_installs_the_float32_copy_with_its_own_recorded_sha256(
    local_npm, empty_store: ModelStore, tmp_path: Path
) -> None:
    onnx = pytest.importorskip("onnx")
    fp16 = _fp16_model(tmp_path / "fp16.onnx").read_bytes()
    local_npm("isnet", fp16)
    installed, changed = pull(empty_store, "isnet")
    assert changed is True
    assert _leftovers(empty_store.model_dir) == ["isnet.json", "isnet.onnx"]
    on_disk = installed.path.read_bytes()
    assert installed.sha256 == _sha(on_disk) != _sha(fp16)
    model = onnx.load_from_string(on_disk)
    assert onnx.TensorProto.FLOAT16 not in {t.data_type for t in model.graph.initializer}

    meta = json.loads((empty_store.model_dir / "isnet.json").read_text())
    assert meta["sha256"] == installed.sha256
    assert meta["size_bytes"] == len(on_disk)
    assert meta["built_from_sha256"] == _sha(fp16)
    assert meta["built_from"] == "npm: @imgly/background-removal-data@1.4.5 /models/medium"
    assert meta["conversion"]["onnx"] == onnx.__version__
    assert ModelStore(empty_store.model_dir).resolve("isnet").sha256 == installed.sha256

    # a changed byte in the built copy is caught at load time, against the recorded sha256
    data = bytearray(on_disk)
    data[-5] ^= 1
    installed.path.unlink()
    installed.path.write_bytes(bytes(data))
    with pytest.raises(ModelChecksumMismatch):
        ModelStore(empty_store.model_dir).resolve("isnet")


def test_the_installed_float32_copy_runs_through_the_engine(
    local_npm, empty_store: ModelStore, tmp_path: Path
) -> None:
    local_npm("isnet", _fp16_model(tmp_path / "fp16.onnx").read_bytes())
    pull(empty_store, "isnet")
    settings = Settings(model_dir=empty_store.model_dir, models=["isnet"], default_model="isnet")
    photo = input_bytes("chelsea.jpg")
    result = Engine(settings).process(photo, Options(), model="isnet")
    assert result.image.size == open_image(photo).size


def test_importing_isnet_takes_the_float16_carrier_file_and_builds_the_copy(
    local_npm, empty_store: ModelStore, tmp_path: Path
) -> None:
    fp16_path = _fp16_model(tmp_path / "fp16.onnx")
    local_npm("isnet", fp16_path.read_bytes())
    wrong = tmp_path / "wrong.onnx"
    wrong.write_bytes(b"not the weights")
    with pytest.raises(ModelChecksumMismatch) as info:
        import_file(empty_store, "isnet", wrong)
    assert "/models/medium of @imgly/background-removal-data@1.4.5" in str(info.value)
    assert _leftovers(empty_store.model_dir) == []

    installed = import_file(empty_store, "isnet", fp16_path)
    meta = json.loads((empty_store.model_dir / "isnet.json").read_text())
    assert meta["source"] == "import: fp16.onnx"
    assert meta["built_from_sha256"] == _sha(fp16_path.read_bytes())
    assert installed.sha256 == meta["sha256"]
    assert _leftovers(empty_store.model_dir) == ["isnet.json", "isnet.onnx"]


# --- models list ---------------------------------------------------------------------------------


def test_models_list_shows_the_weights_and_the_carrier_licences(empty_store: ModelStore) -> None:
    rows = {row["name"]: row for row in empty_store.iter_status()}
    for name in ("isnet", "isnet-small"):
        row = rows[name]
        assert "Apache-2.0" in row["licence"] and "AGPL-3.0" in row["licence"]
        assert row["source"] == "npm: @imgly/background-removal-data@1.4.5"
        assert row["input_size"] == [1024, 1024]
        notes = row["licence_notes"]
        for fact in ("xuebinqin/DIS", "Apache License 2.0", "DIS5K", "AGPL-3.0", "MIT"):
            assert fact in notes
    assert rows["u2net"]["licence_notes"] is None


# --- the real package (network) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def pulled_isnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """``cleancut models pull isnet`` for real, once per module; the tarball npm fetched is kept
    (hard link) for the tests that need the package's other resources, then deleted."""
    keep = tmp_path_factory.mktemp("npm-tarball")
    store = ModelStore(tmp_path_factory.mktemp("isnet") / "models")
    real_pack = npm.npm_pack

    def keeping_pack(carrier: NpmCarrier, dest: Path, **kwargs: object) -> Path:
        tarball = real_pack(carrier, dest, **kwargs)  # type: ignore[arg-type]
        os.link(tarball, keep / tarball.name)
        return tarball

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(npm, "npm_pack", keeping_pack)
        installed, changed = pull(store, "isnet")
    (tarball,) = keep.iterdir()
    yield {"store": store, "installed": installed, "changed": changed, "tarball": tarball}
    shutil.rmtree(keep)
    shutil.rmtree(store.model_dir)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A folder for copies of the real package and models, removed after the test (pytest keeps
    its recent temporary folders; these would be hundreds of MB)."""
    path = tmp_path / "scratch"
    path.mkdir()
    yield path
    shutil.rmtree(path)


@pytest.mark.network
def test_pull_fetches_isnet_with_npm_and_installs_the_verified_float32_copy(
    pulled_isnet: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, installed = pulled_isnet["store"], pulled_isnet["installed"]
    assert isinstance(store, ModelStore)
    assert pulled_isnet["changed"] is True
    assert _leftovers(store.model_dir) == ["isnet.json", "isnet.onnx"]
    meta = json.loads((store.model_dir / "isnet.json").read_text())
    assert meta["built_from_sha256"] == ISNET_FP16_SHA256
    assert meta["built_from_size_bytes"] == 88_188_479
    assert meta["source"] == "npm: @imgly/background-removal-data@1.4.5"
    assert hashlib.sha256((store.model_dir / "isnet.onnx").read_bytes()).hexdigest() \
        == meta["sha256"] == installed.sha256  # type: ignore[attr-defined]

    monkeypatch.setenv("PATH", "")  # a second pull must not even look for npm
    again, changed = pull(store, "isnet")
    assert changed is False
    assert again.sha256 == meta["sha256"]


@pytest.mark.network
def test_isnet_small_comes_out_of_the_same_package_byte_for_byte(
    pulled_isnet: dict[str, object], scratch: Path
) -> None:
    tarball = pulled_isnet["tarball"]
    assert isinstance(tarball, Path)
    store = ModelStore(scratch / "models")
    spec = CATALOG["isnet-small"]
    assert isinstance(spec.carrier, NpmCarrier)
    (scratch / "work").mkdir()
    copy = Path(shutil.copyfile(tarball, scratch / "work" / tarball.name))
    resource = npm.reassemble(copy, spec.carrier, scratch / "work")
    installed = npm.install_resource(store, spec, resource, origin=spec.carrier.label)
    assert installed.sha256 == ISNET_SMALL_SHA256
    assert _leftovers(store.model_dir) == ["isnet-small.json", "isnet-small.onnx"]
    assert not copy.exists()  # the tarball is deleted once read


@pytest.mark.network
def test_the_float32_copy_gives_the_float16_masks(
    pulled_isnet: dict[str, object], scratch: Path
) -> None:
    import onnxruntime as ort

    from cleancut.engine.pipeline import preprocess

    tarball, installed = pulled_isnet["tarball"], pulled_isnet["installed"]
    assert isinstance(tarball, Path)
    spec = CATALOG["isnet"]
    assert isinstance(spec.carrier, NpmCarrier)
    copy = Path(shutil.copyfile(tarball, scratch / tarball.name))
    fp16 = npm.reassemble(copy, spec.carrier, scratch)
    batch = preprocess(open_image(input_bytes("chelsea.jpg")).convert("RGB"), spec)

    def normalised(path: Path) -> np.ndarray:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        out = np.asarray(sess.run(None, {"input": batch})[0][0, 0], dtype=np.float64)
        return (out - out.min()) / (out.max() - out.min())

    diff = np.abs(normalised(fp16) - normalised(installed.path))  # type: ignore[attr-defined]
    assert diff.max() < 0.005


@pytest.mark.network
def test_isnet_cuts_out_the_astronaut_as_u2net_does(pulled_isnet: dict[str, object]) -> None:
    store = pulled_isnet["store"]
    assert isinstance(store, ModelStore)
    settings = Settings(model_dir=store.model_dir, models=["isnet"], default_model="isnet")
    photo = input_bytes("astronaut.jpg")
    result = Engine(settings).process(photo, Options(only_mask=True), model="isnet")
    got = alpha(result.image) > 127
    want = np.asarray(open_image(
        (Path(__file__).parent / "fixtures/golden/expected/astronaut.u2net.mask.png").read_bytes()
    ).convert("L")) > 127
    assert got.shape == want.shape
    # another network, the same subject (measured: 0.98; on chelsea.jpg ISNet also keeps the
    # cushion behind the cat, so that photo is no test of agreement)
    assert (got & want).sum() / (got | want).sum() > 0.9
