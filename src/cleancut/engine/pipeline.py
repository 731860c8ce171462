"""The one pipeline: an ordered list of small stages over a job.

decode → prepare → preprocess → inference → mask → hints → compose → layout → background →
encode

Every door (library, CLI, HTTP service, WebUI, the remove.bg-compatible API) goes through
:class:`Engine`; none of them re-implements a stage. A stage reads what the stages before it left
on the :class:`Job` and adds its own part; the deadline is checked between stages, here only.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

from ..config import Settings
from ..errors import CleancutError, InvalidParameter, ProcessingTimeout
from ..models.catalog import ModelSpec
from ..models.store import ModelStore
from . import imageio
from .fusion import fuse, model_names
from .hints import apply_hints, hint_map
from .imageio import Decoded, Limits
from .layout import apply_layout, fit
from .mask import alpha_matting, apply_source_alpha, compose, foreground_box, post_process
from .options import Options, OutputFormat
from .refine import confidence, decontaminate
from .resample import lanczos
from .session import Session, SessionCache

__all__ = ["Engine", "Job", "Models", "Result", "Stage", "STAGES", "PRESETS", "expand",
           "preprocess", "normalise", "upscale", "to_mask"]

# Sessions are shared by every Engine of the process that asks for the same model and settings.
_SESSIONS = SessionCache()
MAX_FUSED = 4  # models one fused mask may join
# Named fusions. "best" scored best on the evaluation samples (bench/results/quality.md):
# the lowest SAD on the matting sample and the best max Fβ and MAE on the saliency sample.
PRESETS: dict[str, str] = {"best": "u2netp+isnet"}


def expand(name: str) -> str:
    """A preset's models joined by +, or ``name`` itself."""
    return PRESETS.get(name, name)


def preprocess(rgb: Image.Image, spec: ModelSpec) -> np.ndarray:
    """LANCZOS to the model's input size, divide by the max, normalise; 1×3×H×W float32."""
    small = lanczos(rgb, spec.input_size)
    arr: np.ndarray = np.asarray(small, dtype=np.float32)
    arr = arr / np.float32(max(float(arr.max()), 1e-6))
    arr = (arr - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[np.newaxis], dtype=np.float32)


def normalise(raw: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Channel 0 of output 0, min-max normalised: the model's prediction, H×W float32."""
    pred: np.ndarray = raw[0, 0].astype(np.float32)
    low, high = float(pred.min()), float(pred.max())
    if high - low > 1e-12:
        pred = (pred - low) / (high - low)
    else:  # a flat map carries no contrast: keep its (clipped) level instead of dividing by 0
        pred = np.clip(pred, 0.0, 1.0)
    if spec.clip_output:
        pred = np.clip(pred, 0.0, 1.0)
    return pred


def upscale(pred: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """A prediction truncated to 8 bits, LANCZOS to ``size``: the mask."""
    small = Image.fromarray((pred * 255).astype(np.uint8), "L")
    return lanczos(small, size)


def to_mask(raw: np.ndarray, spec: ModelSpec, size: tuple[int, int]) -> Image.Image:
    """The model's output as a mask of ``size``, as the reference pipeline makes it."""
    return upscale(normalise(raw, spec), size)


@dataclass(frozen=True)
class Models:
    """The model(s) one job runs: a single one, or several whose masks are fused."""

    name: str  # as asked for: "u2net", or "u2net+isnet"
    sessions: tuple[Session, ...]

    @property
    def fused(self) -> bool:
        return len(self.sessions) > 1


@dataclass
class Result:
    """One processed image, with what it took."""

    image: Image.Image  # RGBA cutout, L mask, or RGB on an opaque background
    alpha: Image.Image  # the final alpha (L) of the result
    model: str
    foreground: tuple[int, int, int, int] | None  # left, top, width, height of alpha > 127
    timings_ms: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    source_format: str | None = None
    data: bytes | None = None  # encoded output, when asked for bytes
    media_type: str | None = None  # of ``data``
    format: OutputFormat | None = None  # of ``data``, unless it is a zip
    confidence: float | None = None  # how sure the model is of this mask, 0-1 (see refine.py)

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


@dataclass
class Job:
    """One image on its way through the stages. Each stage fills in its own fields."""

    options: Options
    models: Models
    data: bytes | None = None  # the encoded photo (None when a decoded image is given)
    background: bytes | None = None  # an encoded background photo to put the cutout on
    hints: Image.Image | bytes | None = None  # the caller's hints: white keep, black remove
    encode: bool = True  # whether to encode the result into bytes
    image: Image.Image | None = None  # decode: upright, first frame, mode as stored
    icc: bytes | None = None
    source_format: str | None = None
    color: Image.Image | None = None  # prepare: RGB, or RGBA where it carries transparency
    batches: list[np.ndarray] = field(default_factory=list)  # preprocess: one input a model
    raws: list[np.ndarray] = field(default_factory=list)  # inference: one output a model
    confidence: float | None = None  # mask: how sure the model(s) are, 0-1
    mask: Image.Image | None = None  # mask: L, the photo's size
    out: Image.Image | None = None  # compose: the result image
    alpha: Image.Image | None = None  # its alpha (L)
    foreground: tuple[int, int, int, int] | None = None
    body: bytes | None = None  # encode
    media_type: str | None = None
    warnings: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def result(self) -> Result:
        assert self.out is not None and self.alpha is not None
        return Result(image=self.out, alpha=self.alpha, model=self.models.name,
                      foreground=self.foreground, timings_ms=self.timings_ms,
                      warnings=self.warnings, source_format=self.source_format,
                      data=self.body, media_type=self.media_type,
                      format=None if self.body is None or self.options.zip
                      else self.options.format,
                      confidence=self.confidence)


# --- the stages ------------------------------------------------------------------------------
def _decode(engine: Engine, job: Job) -> None:
    assert job.data is not None
    decoded = engine.decode(job.data)
    job.image, job.icc, job.source_format = decoded.image, decoded.icc_profile, decoded.format


def _prepare(engine: Engine, job: Job) -> None:
    assert job.image is not None
    color, job.icc = imageio.cmyk_to_rgb(job.image, job.icc)
    job.color = fit(imageio.to_color(color), job.options.max_pixels)
    job.image = None  # often the same image; the job keeps one reference to the photo


def _preprocess(engine: Engine, job: Job) -> None:
    assert job.color is not None
    rgb = job.color if job.color.mode == "RGB" else job.color.convert("RGB")
    made: dict[tuple[object, ...], np.ndarray] = {}  # models that share an input share a batch
    for session in job.models.sessions:
        spec = session.spec
        key = (spec.input_size, spec.mean, spec.std)
        if key not in made:
            made[key] = preprocess(rgb, spec)
        job.batches.append(made[key])


def _inference(engine: Engine, job: Job) -> None:
    job.raws = [s.run(b) for s, b in zip(job.models.sessions, job.batches, strict=True)]
    job.batches = []  # the inputs are not needed any more; free them before the large buffers


def _mask(engine: Engine, job: Job) -> None:
    assert job.color is not None
    preds = [normalise(raw, s.spec) for s, raw in zip(job.models.sessions, job.raws, strict=True)]
    job.raws = []
    pred = preds[0] if len(preds) == 1 else fuse(_common_size(preds), job.options.fusion)
    job.confidence = confidence(pred)
    mask = upscale(pred, job.color.size)
    job.mask = post_process(mask) if job.options.post_process_mask else mask


def _common_size(preds: list[np.ndarray]) -> list[np.ndarray]:
    """The models' predictions at the largest one's size (bilinear), to be fused there."""
    height, width = max(p.shape for p in preds)
    return [p if p.shape == (height, width) else np.clip(np.asarray(
        Image.fromarray(p, "F").resize((width, height), Image.Resampling.BILINEAR)), 0.0, 1.0)
        for p in preds]


def _hints(engine: Engine, job: Job) -> None:
    assert job.mask is not None and job.color is not None
    width, height = job.color.size
    hint = job.hints
    if isinstance(hint, bytes):  # an upload: decoded under the same limits as the photo
        try:
            hint = engine.decode(hint).image
        except CleancutError as exc:
            raise InvalidParameter("hints", f"the hint image cannot be used: {exc.detail}") \
                from exc
    marks = hint_map(hint, job.options.keep, job.options.remove, size=(width, height))
    rgb = np.asarray(job.color if job.color.mode == "RGB" else job.color.convert("RGB"))
    fixed = apply_hints(rgb, np.asarray(job.mask), marks,
                        max_pixels=engine.settings.matting_max_pixels, notes=job.warnings)
    job.mask = Image.fromarray(fixed, "L")


def _compose(engine: Engine, job: Job) -> None:
    assert job.mask is not None and job.color is not None
    options, mask, color = job.options, job.mask, job.color
    if options.only_mask:
        job.out = job.alpha = mask
    else:
        matted = None
        if options.alpha_matting:
            matted, found = alpha_matting(
                color, mask, options, max_pixels=engine.settings.matting_max_pixels
            )
            job.warnings.extend(found)
        if matted is None and options.decontaminate:
            del color
            _decontaminate(job)
            assert job.color is not None
            color = job.color
        job.out = compose(color, mask, options, matted)
        job.alpha = job.out.getchannel("A") if job.out.mode == "RGBA" \
            else apply_source_alpha(mask, color)
    job.foreground = foreground_box(job.alpha)


def _decontaminate(job: Job) -> None:
    """``job.color`` with the old background's colour taken out where the mask is soft. The
    photo is held once as an array meanwhile (a 40 MP photo is 120-160 MB a copy), not twice."""
    assert job.color is not None and job.mask is not None
    source_alpha = job.color.getchannel("A") if job.color.mode == "RGBA" else None
    rgb = np.array(job.color if job.color.mode == "RGB" else job.color.convert("RGB"))
    job.color = None
    decontaminate(rgb, np.asarray(job.mask), in_place=True)
    job.color = Image.fromarray(rgb, "RGB")
    del rgb
    if source_alpha is not None:
        job.color.putalpha(source_alpha)


def _layout(engine: Engine, job: Job) -> None:
    assert job.out is not None and job.alpha is not None
    bg = job.options.bgcolor
    fill: tuple[int, ...] | int = 0 if job.out.mode == "L" else (
        (0, 0, 0, 0) if job.out.mode == "RGBA" else tuple((bg or (255, 255, 255))[:3]))
    job.out, job.alpha = apply_layout([job.out, job.alpha], job.foreground, [fill, 0],
                                      job.options)
    job.foreground = foreground_box(job.alpha)


def _background(engine: Engine, job: Job) -> None:
    """The cutout over the background photo, scaled to cover and centred: an RGB image."""
    assert job.background is not None and job.out is not None
    decoded = engine.decode(job.background)
    color, _icc = imageio.cmyk_to_rgb(decoded.image, decoded.icc_profile)
    bg = ImageOps.fit(imageio.to_color(color).convert("RGB"), job.out.size,
                      Image.Resampling.LANCZOS).convert("RGBA")
    bg.alpha_composite(job.out)
    job.out = bg.convert("RGB")


def _encode(engine: Engine, job: Job) -> None:
    assert job.out is not None and job.alpha is not None
    options = job.options
    if options.zip:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("color.jpg", imageio.encode(job.out.convert("RGB"), "jpeg",
                                                         quality=options.quality))
            archive.writestr("alpha.png", imageio.encode(job.alpha, "png"))
        job.body, job.media_type = buf.getvalue(), "application/zip"
        return
    job.body = imageio.encode(job.out, options.format,
                              icc_profile=None if options.only_mask else job.icc,
                              quality=options.quality)
    job.media_type = imageio.MEDIA_TYPES[options.format]


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Engine, Job], None]
    applies: Callable[[Job], bool] = lambda job: True
    timing: str = ""  # the Result.timings_ms key it counts under (default: its name)


STAGES: tuple[Stage, ...] = (
    Stage("decode", _decode, lambda job: job.image is None),
    Stage("prepare", _prepare, timing="decode"),
    Stage("preprocess", _preprocess),
    Stage("inference", _inference),
    Stage("mask", _mask),
    Stage("hints", _hints, lambda job: job.hints is not None or bool(job.options.keep)
          or bool(job.options.remove), timing="mask"),
    Stage("compose", _compose),
    Stage("layout", _layout, lambda job: job.options.geometry, timing="compose"),
    Stage("background", _background,
          lambda job: job.background is not None and job.out is not None
          and job.out.mode == "RGBA", timing="compose"),
    Stage("encode", _encode, lambda job: job.encode),
)
_STAGE_NAMES = tuple(stage.name for stage in STAGES)


class Engine:
    """The pipeline bound to settings: a model store, limits, thread and provider choices.

    Building one changes nothing outside it: the doors that own the process (``cleancut
    serve``, the CLI) apply the process-wide settings themselves (:mod:`.process`).
    """

    def __init__(self, settings: Settings | None = None) -> None:
        if settings is None:
            from ..config import load

            settings = load()
        self.settings = settings
        self.store = ModelStore(settings.model_dir)
        self.limits = Limits(
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_pixels,
            max_side_px=settings.max_side_px,
            max_frames=settings.max_frames,
        )

    def session(self, name: str | None = None) -> Session:
        """The shared, verified session of model ``name`` (loaded on first use)."""
        return _SESSIONS.get(
            self.store,
            name or self.settings.default_model,
            providers=tuple(self.settings.providers),
            intra_op_threads=self.settings.intra_op_threads,
            inter_op_threads=self.settings.inter_op_threads,
        )

    def models(self, name: str | None = None) -> Models:
        """The model(s) ``name`` asks for: one name, or installed models joined by ``+`` (each
        run once, their masks fused); loaded on first use."""
        name = expand(name or self.settings.default_model)
        parts = model_names(name)  # no empty part, no model twice
        if len(parts) > MAX_FUSED:
            raise InvalidParameter("model", f"model {name[:80]!r} joins {len(parts)} models; "
                                   f"a fused mask joins at most {MAX_FUSED}")
        return Models("+".join(parts), tuple(self.session(part) for part in parts))

    def decode(self, data: bytes) -> Decoded:
        return imageio.decode(data, self.limits)

    def job(self, options: Options, model: str | Session | Models | None = None, *,
            data: bytes | None = None, image: Image.Image | None = None,
            background: bytes | None = None, hints: Image.Image | bytes | None = None,
            encode: bool = True) -> Job:
        """A job for ``options`` on encoded ``data`` or a decoded ``image``; ``model`` (a name,
        a loaded session or models) overrides ``options.model``, whose default is the
        settings'."""
        if isinstance(model, Session):
            models = Models(model.name, (model,))
        elif isinstance(model, Models):
            models = model
        else:
            models = self.models(model or options.model)
        icc = image.info.get("icc_profile") if image is not None else None
        return Job(options=options, models=models, data=data, image=image, icc=icc,
                   background=background, hints=hints, encode=encode)

    def run(self, job: Job, *, deadline: float | None = None, after: str | None = None,
            until: str | None = None) -> Job:
        """Run the stages that apply to ``job`` in order (those after ``after`` and through
        ``until``, if given), checking ``deadline`` (a ``time.monotonic()`` value) before each.
        A job run in segments (``until="preprocess"``, then ``after="preprocess"``) ends as one
        run in one go does: the batch door overlaps the segments of different photos."""
        for name in (after, until):
            if name is not None and name not in _STAGE_NAMES:
                raise ValueError(f"no stage {name!r}; stages are {', '.join(_STAGE_NAMES)}")
        stages = STAGES[_STAGE_NAMES.index(after) + 1:] if after is not None else STAGES
        for stage in stages:
            if stage.applies(job):
                if deadline is not None and time.monotonic() > deadline:
                    raise ProcessingTimeout(f"request ran past its deadline before {stage.name}")
                started = time.perf_counter()
                stage.run(self, job)
                key = stage.timing or stage.name
                job.timings_ms[key] = job.timings_ms.get(key, 0.0) + \
                    (time.perf_counter() - started) * 1e3
            if stage.name == until:
                break
        return job

    def process(
        self,
        data: bytes,
        options: Options = Options(),
        *,
        model: str | Session | Models | None = None,
        deadline: float | None = None,
        background: bytes | None = None,
        hints: Image.Image | bytes | None = None,
    ) -> Result:
        """Encoded bytes in, encoded bytes out (``Result.data``); ``background`` is an encoded
        photo the cutout is put on, ``hints`` an image of the caller's keep (white) and remove
        (black) marks."""
        job = self.job(options, model, data=data, background=background, hints=hints)
        return self.run(job, deadline=deadline).result()

    def cut(
        self,
        image: Image.Image,
        options: Options = Options(),
        *,
        model: str | Session | Models | None = None,
        encode: bool = False,
        hints: Image.Image | None = None,
    ) -> Result:
        """A decoded image in; ``encode`` also fills ``Result.data``."""
        job = self.job(options, model, image=image, encode=encode, hints=hints)
        return self.run(job).result()

    def model_input(self, photo: bytes | Image.Image, session: Session) -> np.ndarray:
        """The model's input for ``photo`` (encoded bytes or an image): the stages through
        preprocess."""
        job = self.job(Options(), session, **({"data": photo} if isinstance(photo, bytes)
                                               else {"image": photo}))
        return self.run(job, until="preprocess").batches[0]
