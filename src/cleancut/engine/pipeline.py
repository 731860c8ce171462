"""The one pipeline: decode → preprocess → infer → mask → compose → encode.

Every door (library, CLI, HTTP service, WebUI) goes through :class:`Engine`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from PIL import Image

from ..config import Settings
from ..errors import ProcessingTimeout
from ..models.catalog import ModelSpec
from ..models.store import ModelStore
from . import allocator, imageio
from .imageio import Decoded, Limits
from .mask import alpha_matting, apply_source_alpha, compose, foreground_box, post_process
from .options import Options, OutputFormat
from .resample import lanczos
from .session import Session, SessionCache

__all__ = ["Engine", "Result", "preprocess", "to_mask", "STAGES"]

STAGES = ("decode", "preprocess", "inference", "mask", "compose", "encode")
T = TypeVar("T")

# Sessions are shared by every Engine of the process that asks for the same model and settings.
_SESSIONS = SessionCache()


def preprocess(rgb: Image.Image, spec: ModelSpec) -> np.ndarray:
    """LANCZOS to the model's input size, divide by the max, normalise; 1×3×H×W float32."""
    small = lanczos(rgb, spec.input_size)
    arr = np.asarray(small, dtype=np.float32)
    arr = arr / max(float(arr.max()), 1e-6)
    arr = (arr - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[np.newaxis], dtype=np.float32)


def to_mask(raw: np.ndarray, spec: ModelSpec, size: tuple[int, int]) -> Image.Image:
    """Channel 0 of output 0, min-max normalised, truncated to 8 bits, LANCZOS back to ``size``."""
    pred = raw[0, 0].astype(np.float32)
    low, high = float(pred.min()), float(pred.max())
    if high - low > 1e-12:
        pred = (pred - low) / (high - low)
    else:  # a flat map carries no contrast: keep its (clipped) level instead of dividing by 0
        pred = np.clip(pred, 0.0, 1.0)
    if spec.clip_output:
        pred = np.clip(pred, 0.0, 1.0)
    small = Image.fromarray((pred * 255).astype(np.uint8), "L")
    return lanczos(small, size)


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
    format: OutputFormat | None = None

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height

    @property
    def media_type(self) -> str | None:
        return imageio.MEDIA_TYPES[self.format] if self.format else None


class _Clock:
    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.timings: dict[str, float] = {}

    def stage(self, name: str, fn: Callable[[], T]) -> T:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise ProcessingTimeout(f"request ran past its deadline before {name}")
        started = time.perf_counter()
        out = fn()
        self.timings[name] = self.timings.get(name, 0.0) + (time.perf_counter() - started) * 1e3
        return out


class Engine:
    """The pipeline bound to settings: a model store, limits, thread and provider choices."""

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
        # Pillow's own bomb guard, set to match ours: it warns above this many pixels and refuses
        # above twice as many. imageio.decode checks the header against self.limits first anyway.
        Image.MAX_IMAGE_PIXELS = settings.max_pixels
        if settings.keep_large_buffers:
            allocator.keep_large_buffers()

    def session(self, name: str | None = None) -> Session:
        """The shared, verified session of model ``name`` (loaded on first use)."""
        return _SESSIONS.get(
            self.store,
            name or self.settings.default_model,
            providers=tuple(self.settings.providers),
            intra_op_threads=self.settings.intra_op_threads,
            inter_op_threads=self.settings.inter_op_threads,
        )

    def decode(self, data: bytes) -> Decoded:
        return imageio.decode(data, self.limits)

    def process(
        self,
        data: bytes,
        options: Options = Options(),
        *,
        model: str | Session | None = None,
        deadline: float | None = None,
    ) -> Result:
        """Encoded bytes in, encoded bytes out (``Result.data``)."""
        clock = _Clock(deadline)
        decoded = clock.stage("decode", lambda: self.decode(data))
        result = self._cut(decoded.image, decoded.icc_profile, options, model, clock)
        result.source_format = decoded.format
        return result

    def cut(
        self,
        image: Image.Image,
        options: Options = Options(),
        *,
        model: str | Session | None = None,
        encode: bool = False,
    ) -> Result:
        """A decoded image in; ``encode`` also fills ``Result.data``."""
        clock = _Clock(None)
        icc = image.info.get("icc_profile")
        return self._cut(image, icc, options, model, clock, encode=encode)

    def _cut(
        self,
        image: Image.Image,
        icc: bytes | None,
        options: Options,
        model: str | Session | None,
        clock: _Clock,
        *,
        encode: bool = True,
    ) -> Result:
        session = model if isinstance(model, Session) else self.session(model)
        spec = session.spec
        color, icc = imageio.cmyk_to_rgb(image, icc)
        color = imageio.to_color(color)
        rgb = color if color.mode == "RGB" else color.convert("RGB")
        batch = clock.stage("preprocess", lambda: preprocess(rgb, spec))
        raw = clock.stage("inference", lambda: session.run(batch))

        def make_mask() -> Image.Image:
            mask = to_mask(raw, spec, color.size)
            return post_process(mask) if options.post_process_mask else mask

        mask = clock.stage("mask", make_mask)
        warnings: list[str] = []

        def make_image() -> Image.Image:
            if options.only_mask:
                return mask
            matted = None
            if options.alpha_matting:
                matted, found = alpha_matting(
                    color, mask, options, max_pixels=self.settings.matting_max_pixels
                )
                warnings.extend(found)
            return compose(color, mask, options, matted)

        out = clock.stage("compose", make_image)
        if options.only_mask:
            alpha = mask
        elif out.mode == "RGBA":
            alpha = out.getchannel("A")
        elif options.bgcolor is not None:
            alpha = apply_source_alpha(mask, color)
        else:  # pragma: no cover - every composite is RGBA or on a background
            alpha = mask
        result = Result(
            image=out,
            alpha=alpha,
            model=session.name,
            foreground=foreground_box(alpha),
            warnings=warnings,
        )
        if encode:
            result.data = clock.stage(
                "encode",
                lambda: imageio.encode(
                    out,
                    options.format,
                    icc_profile=None if options.only_mask else icc,
                    quality=options.quality,
                ),
            )
            result.format = options.format
        result.timings_ms = clock.timings
        return result
