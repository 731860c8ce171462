"""INT8 variants of installed models: static QDQ quantisation, measured and gated before install.

The recipe is the one that worked on these machines (docs/models.md, "INT8 variants"):
``quant_pre_process`` (shape inference and basic optimisation; needs sympy), opset 13 through
``onnx.version_converter``, then ``quantize_static`` in QDQ format, per channel, QUInt8 activations
and QInt8 weights, MinMax calibration (percentile for ISNet: :data:`PERCENTILE`) fed a few images
at a time (``CalibStridedMinMax``).
Calibration images go through the engine's own decode and ``preprocess``, so the ranges seen are
the ones the model meets in use. Dynamic quantisation is not offered: its ConvInteger kernels run
6-8× slower than fp32 on the CPUs we measured.

With no calibration folder, the photos that ship with cleancut (``cleancut/calibration``, each
listed with its source and licence in ``photos.json``) are used: each calibration photo as six
crops, each also mirrored, so a handful of photos covers the ranges a real photo meets. The held-out
shipped photos, seen the same way, check the result: the INT8 masks must agree with the fp32 ones
(alpha MAE and IoU of alpha > 0.5, at the model's resolution) within gates chosen on ECSSD so that
max Fβ drops by at most 0.005 and MAE rises by at most 0.003 (bench/results/int8.md). With an
evaluation set those two figures are gated directly instead. ``quantize`` also asks for 1.7× on the
floor (ONNX Runtime alone, fp32 and int8 interleaved, medians); ``pull_int8`` reports the speed-up
and warns below it, since the user asked for the variant and the gain is the CPU's. A candidate
that fails a gate is deleted and :class:`QuantizeRejected` is raised (``force`` installs it).

The result is installed like a custom model: ``NAME-int8.onnx`` with ``NAME-int8.json`` holding its
sha256 (checked by ``ModelStore.resolve`` on every load), its parent and the parent's sha256, the
input size / mean / std copied from the parent, and how it was made and measured.
"""

from __future__ import annotations

import importlib.resources
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from .engine import Engine, Session
from .engine.pipeline import normalise
from .errors import (
    CleancutError,
    InvalidParameter,
    QuantizeDependencyMissing,
    QuantizeRejected,
)
from .evaluate import evaluate
from .models.store import InstalledModel, hash_file

__all__ = [
    "AGREE_IOU_GATE",
    "AGREE_MAE_GATE",
    "DEFAULT_EXCLUDES",
    "SPEED_GATE",
    "MAX_F_LOSS_GATE",
    "MAE_GAIN_GATE",
    "QuantizeDependencyMissing",
    "QuantizeRejected",
    "QuantizeReport",
    "quantize",
    "int8_parent",
    "pull_int8",
    "shipped_photos",
    "views",
]

SUFFIX = "-int8"
SPEED_GATE = 1.7  # int8 must be at least this many times faster than fp32 on the floor
MAX_F_LOSS_GATE = 0.005  # and lose at most this much max Fβ on the evaluation set
MAE_GAIN_GATE = 0.003  # and add at most this much MAE
# Without an evaluation set: agreement with fp32 on every view of the held-out shipped photos, at
# the model's resolution (bench/results/int8.md). On ECSSD, variants inside both gates lost at
# most 0.0007 max Fβ and no MAE; those outside lost 0.05-0.09 max Fβ and gained 0.06-0.25 MAE.
AGREE_MAE_GATE = 0.03  # mean |alpha_int8 - alpha_fp32| over the views, alpha in 0-1
AGREE_IOU_GATE = 0.90  # IoU of (alpha > 0.5) over all the views' pixels together
METHOD = "static QDQ, per-channel, QUInt8 activations / QInt8 weights, {calibration}, opset 13"

# How activation ranges are calibrated. MinMax keeps every value calibration sees, which suits
# the U²-Net models; ISNet's activations have rare outliers that stretch MinMax ranges until its
# decoder's error compounds (held-out IoU with fp32 0.29, max Fβ -0.09 on ECSSD), and a range that
# leaves out the top 0.01 % keeps its masks (bench/results/int8.md).
PERCENTILE: dict[str, float] = {"isnet": 99.99}


def method_of(name: str) -> str:
    """The recipe of ``name``'s INT8 variant, in words (recorded with the variant)."""
    pct = PERCENTILE.get(name)
    return METHOD.format(calibration=f"percentile {pct} calibration" if pct else "MinMax")

# Nodes kept in fp32 by default. u2netp's decoder conv Conv_787 has BN-folded biases up to ~1361
# that int8 rounding destroys (maxF 0.94 → 0.88); its producer Concat_786 must stay fp32 too, or a
# graph optimisation re-quantises the conv's input.
DEFAULT_EXCLUDES: dict[str, tuple[str, ...]] = {"u2netp": ("Conv_787", "Concat_786")}

CALIBRATION_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


@dataclass
class QuantizeReport:
    name: str  # the derived model, e.g. u2netp-int8
    parent: str
    parent_sha256: str
    calibration_images: int
    nodes_excluded: list[str]
    threads: int
    fp32_ms: float = 0.0
    int8_ms: float = 0.0
    runs: int = 0
    fp32_size: int = 0
    int8_size: int = 0
    quality: dict[str, Any] | None = None  # fp32 / int8 summaries and deltas, when evaluated
    agreement: dict[str, Any] | None = None  # int8 against fp32 on held-out shipped photos
    calibration: str = ""  # the folder given, or "shipped"
    speed_gated: bool = True  # whether a low speed-up refuses the candidate (pull only warns)
    failures: list[str] = field(default_factory=list)
    forced: bool = False
    installed: InstalledModel | None = None

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.int8_ms if self.int8_ms > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "derived_from": self.parent,
            "parent_sha256": self.parent_sha256,
            "method": method_of(self.parent),
            "calibration": self.calibration,
            "calibration_images": self.calibration_images,
            "nodes_excluded": self.nodes_excluded,
            "floor": {
                "threads": self.threads or "onnxruntime default",
                "runs": self.runs,
                "fp32_ms": round(self.fp32_ms, 2),
                "int8_ms": round(self.int8_ms, 2),
                "speedup": round(self.speedup, 3),
                "gate": SPEED_GATE if self.speed_gated else None,
                "warn_below": SPEED_GATE,
            },
            "size_bytes": {"fp32": self.fp32_size, "int8": self.int8_size},
            "quality": self.quality,
            "agreement": self.agreement,
            "gates_failed": self.failures,
            "forced": self.forced,
            "installed": str(self.installed.path) if self.installed else None,
            "sha256": self.installed.sha256 if self.installed else None,
        }


def _deps() -> tuple[Any, Any]:
    """Import onnx and the quantisation tools lazily, with an install hint when missing."""
    try:
        import onnx
        import onnx.version_converter
        import sympy  # noqa: F401  (quant_pre_process needs it for symbolic shape inference)
        from onnxruntime import quantization
        from onnxruntime.quantization import shape_inference  # noqa: F401
    except ImportError as exc:
        raise QuantizeDependencyMissing(
            f"quantisation needs the packages onnx and sympy ({exc}); install them with: "
            "pip install 'cleancut[quantize]'  (or: pip install onnx sympy)"
        ) from None
    return onnx, quantization


# --- calibration ------------------------------------------------------------------------------
def calibration_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InvalidParameter("calibration", f"{folder} is not a folder of images")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in CALIBRATION_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise InvalidParameter("calibration", f"{folder} holds no images (JPEG, PNG, WebP, ...)")
    return files


def shipped_photos(role: str) -> list[tuple[str, bytes]]:
    """The photos that ship with cleancut for ``role`` ("calibration" or "held-out"), by name."""
    folder = importlib.resources.files("cleancut") / "calibration"
    listing = json.loads((folder / "photos.json").read_text(encoding="utf-8"))
    return [(p["file"], (folder / p["file"]).read_bytes())
            for p in listing["photos"] if p["role"] == role]


def views(image: Image.Image) -> list[Image.Image]:
    """Twelve views of a photo: the whole, two 2/3 corners, a centre band each way and the
    centre half, each also mirrored. Crops show the model subjects at other scales and offsets,
    which widens the ranges calibration sees more than more photos of one kind would."""
    w, h = image.size
    boxes = [(0, 0, w, h), (0, 0, 2 * w // 3, 2 * h // 3), (w // 3, h // 3, w, h),
             (0, h // 4, w, 3 * h // 4), (w // 4, 0, 3 * w // 4, h),
             (w // 4, h // 4, 3 * w // 4, 3 * h // 4)]
    crops = [image.crop(box) for box in boxes]
    return [view for crop in crops for view in (crop, ImageOps.mirror(crop))]


def shipped_inputs(engine: Engine, role: str, session: Session) -> list[np.ndarray]:
    """Every view of the shipped ``role`` photos through the engine's stages to the model's
    input."""
    return [engine.model_input(view, session)
            for _name, data in shipped_photos(role)
            for view in views(engine.decode(data).image)]


def prepare_inputs(engine: Engine, files: Sequence[Path], session: Session) -> list[np.ndarray]:
    """Each file through the engine's stages up to the model's input: 1×3×H×W float32."""
    return [engine.model_input(path.read_bytes(), session) for path in files]


def _reader(quantization: Any, input_name: str, batches: list[np.ndarray]) -> Any:
    class _Reader(quantization.CalibrationDataReader):  # type: ignore[misc]  # an untyped base
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._it, None)
            return None if batch is None else {input_name: batch}

        def rewind(self) -> None:
            self._it = iter(batches)

        # CalibStridedMinMax feeds the calibrator a slice at a time
        def __len__(self) -> int:
            return len(batches)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._it = iter(batches[start_index:end_index])

    return _Reader()


# --- building ---------------------------------------------------------------------------------
def build(
    parent: InstalledModel,
    batches: list[np.ndarray],
    out: Path,
    exclude: Sequence[str],
    workdir: Path,
    *,
    percentile: float | None = None,
) -> None:
    """Quantise ``parent`` into ``out`` (the recipe in the module docstring); ``percentile``
    calibrates each activation's range to that percentile of what it saw instead of MinMax."""
    onnx, quantization = _deps()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre, op13 = workdir / "pre.onnx", workdir / "op13.onnx"
    quant_pre_process(str(parent.path), str(pre))
    model = onnx.load(str(pre))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 13:  # per-channel DequantizeLinear needs opset 13 (its axis attribute)
        model = onnx.version_converter.convert_version(model, 13)
    names = {node.name for node in model.graph.node}
    unknown = [n for n in exclude if n not in names]
    if unknown:
        raise InvalidParameter(
            "exclude",
            f"{parent.spec.name} has no node named {', '.join(unknown)} "
            f"(after pre-processing it has {len(names)} nodes, e.g. "
            f"{', '.join(sorted(names)[:3])})",
        )
    input_name = model.graph.input[0].name
    # a few images at a time keeps calibration memory flat (one at a time for a 1024² model,
    # whose intermediate tensors for one image take gigabytes); the stride must divide the count.
    # ONNX Runtime applies it to every calibrator, the histograms of percentile calibration too.
    pixels = int(np.prod(batches[0].shape[2:])) if batches else 0
    stride = 1 if pixels > 512 * 512 else next(d for d in (4, 3, 2, 1) if len(batches) % d == 0)
    onnx.save(model, str(op13))
    del model
    quantization.quantize_static(
        model_input=str(op13),
        model_output=str(out),
        calibration_data_reader=_reader(quantization, input_name, batches),
        quant_format=quantization.QuantFormat.QDQ,
        per_channel=True,
        activation_type=quantization.QuantType.QUInt8,
        weight_type=quantization.QuantType.QInt8,
        calibrate_method=quantization.CalibrationMethod.Percentile if percentile
        else quantization.CalibrationMethod.MinMax,
        nodes_to_exclude=list(exclude),
        extra_options={"CalibStridedMinMax": stride,
                       **({"CalibPercentile": percentile} if percentile else {})},
    )


# --- measuring --------------------------------------------------------------------------------
def floor_ms(
    fp32: Session, int8: Session, batch: np.ndarray, runs: int, warmup: int = 3
) -> tuple[float, float]:
    """Median milliseconds of each session on ``batch``, runs interleaved so load hits both."""
    for _ in range(warmup):
        fp32.run(batch)
        int8.run(batch)
    a: list[float] = []
    b: list[float] = []
    for i in range(runs):
        order = ((fp32, a), (int8, b)) if i % 2 == 0 else ((int8, b), (fp32, a))
        for session, times in order:
            started = time.perf_counter()
            session.run(batch)
            times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(a), statistics.median(b)


def _quality(
    engine: Engine,
    fp32: Session,
    int8: Session,
    pairs: list[tuple[Path, Path]],
    on_each: Callable[[str], None] | None,
) -> dict[str, Any]:
    base = evaluate(engine, fp32, pairs, on_each=on_each).summary()
    cand = evaluate(engine, int8, pairs, on_each=on_each).summary()
    return {
        "count": base["count"],
        "fp32": base,
        "int8": cand,
        "max_f_loss": base["max_f"] - cand["max_f"],
        "mae_gain": cand["mae"] - base["mae"],
        "gates": {"max_f_loss": MAX_F_LOSS_GATE, "mae_gain": MAE_GAIN_GATE},
    }


def agreement(fp32: Session, int8: Session, inputs: list[np.ndarray]) -> dict[str, Any]:
    """How closely ``int8``'s masks follow ``fp32``'s on ``inputs``, at the model's resolution:
    alpha MAE (mean and worst view) and IoU of alpha > 0.5 (over all pixels together, and the
    worst view). The gates use the pooled figures: a crop whose subject is ambiguous can flip
    in one view at no cost on real photos (u2net's worst view is 0.10 with a lossless variant)."""
    maes, ious = [], []
    inter = union = 0
    for batch in inputs:
        a = normalise(fp32.run(batch), fp32.spec)
        b = normalise(int8.run(batch), int8.spec)
        maes.append(float(np.abs(a - b).mean()))
        fa, fb = a > 0.5, b > 0.5
        i, u = int(np.count_nonzero(fa & fb)), int(np.count_nonzero(fa | fb))
        inter, union = inter + i, union + u
        ious.append(1.0 if u == 0 else i / u)
    return {
        "count": len(inputs),
        "mae": round(statistics.fmean(maes), 5),
        "worst_mae": round(max(maes), 5),
        "iou": round(inter / union if union else 1.0, 5),
        "worst_iou": round(min(ious), 5),
        "gates": {"mae": AGREE_MAE_GATE, "iou": AGREE_IOU_GATE},
    }


# --- build, measure, gate, install -----------------------------------------------------------
def quantize(
    engine: Engine,
    name: str,
    calibration: Path | None = None,
    *,
    exclude: Sequence[str] = (),
    default_excludes: bool = True,
    eval_pairs: list[tuple[Path, Path]] | None = None,
    runs: int = 20,
    force: bool = False,
    speed_gate: bool = True,
    log: Callable[[str], None] = lambda _msg: None,
    on_eval_image: Callable[[str], None] | None = None,
) -> QuantizeReport:
    """Build, measure, gate and install ``NAME-int8`` from the verified ``NAME``, calibrated on
    ``calibration`` (a folder of photos) or, when None, on the photos that ship with cleancut."""
    _deps()
    store = engine.store
    if store.metadata(name).get("derived_from"):
        raise InvalidParameter("name", f"{name!r} is already a derived model; quantise its parent")
    parent = store.resolve(name)  # verified fp32 bytes, or the store's clear error
    target = f"{name}{SUFFIX}"
    files = calibration_files(calibration) if calibration is not None else []
    if eval_pairs and files:
        used = {p.resolve() for p in files}
        overlap = [img for img, _mask in eval_pairs if img.resolve() in used]
        if overlap:
            raise InvalidParameter(
                "calibration",
                f"calibration images include {len(overlap)} of the evaluation set "
                f"(e.g. {overlap[0].name}); calibrate on other photos",
            )
    defaults = DEFAULT_EXCLUDES.get(name, ()) if default_excludes else ()
    excluded = list(dict.fromkeys([*defaults, *exclude]))
    settings = engine.settings
    fp32 = engine.session(name)
    if files:
        batches = prepare_inputs(engine, files, fp32)
    else:
        batches = shipped_inputs(engine, "calibration", fp32)
    report = QuantizeReport(
        name=target,
        parent=name,
        parent_sha256=parent.sha256,
        calibration_images=len(batches),
        calibration=str(calibration) if calibration is not None else
        "shipped photos (cleancut/calibration, 12 views each)",
        nodes_excluded=excluded,
        threads=settings.intra_op_threads,
        fp32_size=parent.path.stat().st_size,
        forced=force,
        speed_gated=speed_gate,
    )
    with tempfile.TemporaryDirectory(prefix="cleancut-quantize-") as tmp:
        out = Path(tmp) / f"{target}.onnx"
        keep = f", keeping {', '.join(excluded)} in fp32" if excluded else ""
        log(f"quantising {name} on {len(batches)} calibration images{keep}")
        started = time.perf_counter()
        build(parent, batches, out, excluded, Path(tmp), percentile=PERCENTILE.get(name))
        del batches  # calibration inputs of a 1024² model are ~12 MB each
        log(f"built {target} in {time.perf_counter() - started:.0f} s")
        sha, _md5, size = hash_file(out)
        report.int8_size = size
        spec = replace(
            store.custom_spec(target, sha, size, input_size=parent.spec.input_size),
            mean=parent.spec.mean,
            std=parent.spec.std,
            clip_output=parent.spec.clip_output,
            licence=parent.spec.licence,
            description=f"{name} quantised to INT8 ({method_of(name)})",
            sources=(f"derived: {name}",),
        )
        int8 = Session(
            InstalledModel(spec, out, sha),
            providers=tuple(settings.providers),
            intra_op_threads=settings.intra_op_threads,
            inter_op_threads=settings.inter_op_threads,
        )
        held_out = shipped_inputs(engine, "held-out", fp32)
        log(f"timing fp32 and int8 on the floor, interleaved, {runs} runs each")
        report.runs = runs
        report.fp32_ms, report.int8_ms = floor_ms(fp32, int8, held_out[0], runs)
        if report.speedup < SPEED_GATE and speed_gate:
            report.failures.append(
                f"speed-up {report.speedup:.2f}× is below the {SPEED_GATE}× gate "
                f"({report.fp32_ms:.1f} → {report.int8_ms:.1f} ms)"
            )
        if eval_pairs:
            log(f"scoring fp32 and int8 on {len(eval_pairs)} evaluation images")
            report.quality = q = _quality(engine, fp32, int8, eval_pairs, on_eval_image)
            if q["max_f_loss"] > MAX_F_LOSS_GATE:
                report.failures.append(
                    f"max Fβ drops by {q['max_f_loss']:.4f} (gate {MAX_F_LOSS_GATE})"
                )
            if q["mae_gain"] > MAE_GAIN_GATE:
                report.failures.append(f"MAE rises by {q['mae_gain']:.4f} (gate {MAE_GAIN_GATE})")
        else:
            log(f"comparing int8 with fp32 on {len(held_out)} views of held-out shipped photos")
            report.agreement = a = agreement(fp32, int8, held_out)
            if a["mae"] > AGREE_MAE_GATE:
                report.failures.append(
                    f"masks differ from fp32 by {a['mae']:.4f} on average (gate {AGREE_MAE_GATE})"
                )
            if a["iou"] < AGREE_IOU_GATE:
                report.failures.append(
                    f"masks overlap fp32's with IoU {a['iou']:.4f} (gate {AGREE_IOU_GATE})"
                )
        del held_out, int8
        if report.failures and not force:  # the candidate goes with the temporary folder
            raise QuantizeRejected(
                f"{target} not installed: {'; '.join(report.failures)} "
                "(--force installs it anyway)",
                report,
            )
        recipe = report.to_dict()
        for key in ("installed", "sha256", "name", "derived_from", "parent_sha256"):
            recipe.pop(key)
        meta = {"derived_from": name, "parent_sha256": parent.sha256, "quantization": recipe}
        with open(out, "rb") as fh:
            report.installed = store.install_file(
                spec, fh, origin=f"derived: {name} (int8, static QDQ)", extra_meta=meta
            )
    return report


def int8_parent(name: str) -> str | None:
    """``u2net`` for ``u2net-int8``; None for a name that is not an INT8 variant's."""
    return name[: -len(SUFFIX)] if name.endswith(SUFFIX) and len(name) > len(SUFFIX) else None


def pull_int8(
    engine: Engine, name: str, log: Callable[[str], None] = lambda _msg: None
) -> tuple[InstalledModel, QuantizeReport | None]:
    """``cleancut models pull NAME-int8``: the variant built here from the verified fp32 parent
    (which must be installed) and the shipped photos. One already installed and verified is kept
    (the report is then None)."""
    parent = int8_parent(name)
    assert parent is not None
    store = engine.store
    if store.is_installed(name):
        try:
            installed = store.resolve(name)
        except CleancutError:
            pass  # a bad file is replaced only by a verified one, below
        else:
            if store.metadata(name).get("parent_sha256") == store.resolve(parent).sha256:
                return installed, None
    report = quantize(engine, parent, None, speed_gate=False, log=log)
    assert report.installed is not None
    return report.installed, report
