"""What a caller may ask of the pipeline: the one option table, validated once at the edge.

Each field of :class:`Options` is one row of the table: its type, default, bounds, help text, the
other names it answers to (the reference tool's short names such as ``om`` or ``bgc``) and the
doors that expose it. The CLI's flags, the native API's form and query fields with their OpenAPI
schema, ``GET /api/options`` (which the WebUI draws its controls from) and the remove.bg mapping
are all derived from these rows; adding an option is one row here plus the stage that uses it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from PIL import ImageColor

from ..errors import InvalidParameter, UnknownModel
from .fusion import METHODS

__all__ = [
    "Options",
    "OptionSpec",
    "OPTIONS",
    "OutputFormat",
    "FORMATS",
    "Color",
    "Door",
    "parse_color",
    "parse_bool",
    "parse_int",
    "pick",
    "spec_of",
]

OutputFormat = Literal["png", "webp", "jpeg"]
FORMATS: tuple[OutputFormat, ...] = ("png", "webp", "jpeg")

Color = tuple[int, int, int, int]
Margin = tuple[tuple[float, str], tuple[float, str], tuple[float, str], tuple[float, str]]
NO_MARGIN: Margin = ((0.0, "px"), (0.0, "px"), (0.0, "px"), (0.0, "px"))

# "library" is every option (it is the engine's own API); the others choose what they show.
Door = Literal["library", "cli", "api", "webui", "removebg"]
EVERY_DOOR: frozenset[Door] = frozenset({"library", "cli", "api", "webui"})
GEOMETRY_DOORS: frozenset[Door] = frozenset({"library", "removebg"})

Kind = Literal["model", "boolean", "integer", "color", "choice", "margin", "percent",
               "position", "boxes"]
Box = tuple[int, int, int, int]  # left, top, width, height, in pixels of the photo
HINT_DOORS: frozenset[Door] = frozenset({"library", "api"})
MAX_BOXES = 1000

_TRUE = frozenset({"true", "1", "on", "yes"})
_FALSE = frozenset({"false", "0", "off", "no"})


# --- value parsers: each takes (field name, value as given) and returns the typed value ------
def parse_bool(field: str, value: object, default: bool = False) -> bool:
    """true/false, 1/0, on/off, yes/no (any case); empty or absent is ``default``."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text == "":
        return default
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidParameter(
        field, f"{field} must be true or false (also 1/0, on/off, yes/no); got {value!r:.40}"
    )


def parse_int(field: str, value: object, default: int | None) -> int | None:
    """A base-10 integer; empty or absent is ``default``."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise InvalidParameter(field, f"{field} must be an integer")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text == "":
        return default
    if len(text) > 12 or not text.lstrip("+-").isdigit() or not text.isascii():
        raise InvalidParameter(field, f"{field} must be an integer; got {value!r:.40}")
    return int(text)


def pick(*named: tuple[str, object]) -> object:
    """The value of a field sent under one of its names (long name first, then aliases and the
    short name); names given together must agree."""
    given = [(name, value) for name, value in named if value is not None]
    for name, value in given[1:]:
        if value != given[0][1]:
            raise InvalidParameter(
                named[0][0], f"{given[0][0]} and {name} name the same option and disagree; "
                "send one of them"
            )
    return given[0][1] if given else None


def parse_color(value: str | Sequence[int], field: str = "bgcolor") -> Color:
    """``#rrggbb``, ``#rrggbbaa``, ``#rgb``, a CSS colour name, or ``R,G,B[,A]`` (0-255 each)."""
    if not isinstance(value, str):
        parts: list[int | str] = list(value)
    else:
        text = value.strip()
        parts = [p.strip() for p in text.split(",")] if "," in text and "(" not in text else []
        if not parts:
            try:
                rgba = ImageColor.getrgb(text)
            except (ValueError, AttributeError):
                raise InvalidParameter(
                    field,
                    f"{field} {value!r} is not a colour; use #rrggbb, #rrggbbaa, a CSS name "
                    "such as 'white', or R,G,B[,A]",
                ) from None
            if len(rgba) == 3:
                return (rgba[0], rgba[1], rgba[2], 255)
            return (rgba[0], rgba[1], rgba[2], rgba[3])
    if len(parts) not in (3, 4):
        raise InvalidParameter(field, f"{field} {value!r} needs 3 or 4 components R,G,B[,A]")
    try:
        ints = [int(p) for p in parts]
    except (TypeError, ValueError):
        raise InvalidParameter(
            field, f"{field} {value!r} components must be integers 0-255"
        ) from None
    if any(not 0 <= c <= 255 for c in ints):
        raise InvalidParameter(field, f"{field} {value!r} components must be between 0 and 255")
    if len(ints) == 3:
        ints.append(255)
    return (ints[0], ints[1], ints[2], ints[3])


_LENGTH = re.compile(r"(\d{1,4}(?:\.\d{1,3})?)(px|%)?")
_POSITIONS = {"center": (0.5, 0.5), "top": (0.5, 0.0), "bottom": (0.5, 1.0),
              "left": (0.0, 0.5), "right": (1.0, 0.5)}


def _percent(field: str, text: str, low: float, high: float) -> float:
    match = re.fullmatch(r"(\d{1,3}(?:\.\d{1,3})?)%", text)
    if not match or not low <= float(match.group(1)) <= high:
        raise InvalidParameter(field, f"{field} {text!r:.40} must be a percentage from "
                               f"{low:g}% to {high:g}%")
    return float(match.group(1)) / 100


def _parse_margin(field: str, value: object) -> Margin:
    """1, 2 or 4 CSS-like lengths (``30px``, ``10%``): top, right, bottom, left."""
    if isinstance(value, tuple) and len(value) == 4:
        return cast(Margin, value)
    text = str(value).strip()
    if not text:
        return NO_MARGIN
    lengths: list[tuple[float, str]] = []
    for part in text.split():
        match = _LENGTH.fullmatch(part.lower())
        if not match:
            raise InvalidParameter(field, f"{field} {text!r:.40} must be "
                                   "1, 2 or 4 lengths such as 30px or 10%")
        lengths.append((float(match.group(1)), match.group(2) or "px"))
    if len(lengths) == 1:
        lengths *= 4
    elif len(lengths) == 2:
        lengths *= 2
    elif len(lengths) != 4:
        raise InvalidParameter(field, f"{field} takes 1, 2 or 4 values")
    return (lengths[0], lengths[1], lengths[2], lengths[3])


def _parse_scale(field: str, value: object) -> float | None:
    """A percentage from 10% to 100% of the canvas, or ``original``."""
    if isinstance(value, float) and not math.isnan(value):
        if not 0.1 <= value <= 1.0:
            raise InvalidParameter(field, f"{field} must be from 0.1 to 1.0 (10% to 100%)")
        return value
    text = str(value).strip().lower()
    if not text or text == "original":
        return None
    return _percent(field, text, 10, 100)


def _parse_position(field: str, value: object) -> tuple[float, float] | None:
    """``center``, ``top``, ``bottom``, ``left``, ``right``, one or two percentages, or
    ``original`` (where the subject was)."""
    if isinstance(value, tuple) and len(value) == 2:
        return (float(value[0]), float(value[1]))
    text = str(value).strip().lower()
    if not text or text == "original":
        return None
    if text in _POSITIONS:
        return _POSITIONS[text]
    values = [_percent(field, p, 0, 100) for p in text.split()]
    if len(values) not in (1, 2):
        raise InvalidParameter(field, f"{field} takes one or two percentages")
    return (values[0], values[-1])


def _parse_boxes(field: str, value: object) -> tuple[Box, ...]:
    """Rectangles (left, top, width, height): a list of 4-sequences, or text as JSON
    (``[[10, 20, 30, 40], ...]``) or ``l,t,w,h;l,t,w,h``. Whether each lies inside the photo is
    checked once the photo's size is known (:func:`cleancut.engine.hints.hint_map`)."""
    items: object = value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except ValueError:
                raise InvalidParameter(field, f"{field} is not valid JSON; send "
                                       "[[left, top, width, height], ...]") from None
        else:
            items = [part.split(",") for part in text.split(";") if part.strip()]
    if not isinstance(items, list | tuple):
        raise InvalidParameter(field, f"{field} must be a list of (left, top, width, height)")
    if len(items) > MAX_BOXES:
        raise InvalidParameter(field, f"{field} has {len(items)} boxes; at most {MAX_BOXES}")
    boxes = []
    for n, box in enumerate(items, 1):
        if not isinstance(box, list | tuple) or len(box) != 4:
            raise InvalidParameter(field, f"{field} box {n} must be four whole numbers: left, "
                                   "top, width, height")
        numbers = [parse_int(field, part.strip() if isinstance(part, str) else part, None)
                   for part in box]
        if any(v is None or v < 0 for v in numbers):
            raise InvalidParameter(field, f"{field} box {n} needs four whole numbers ≥ 0")
        left, top, width, height = (int(v or 0) for v in numbers)
        boxes.append((left, top, width, height))
    return tuple(boxes)


def _parse_model(field: str, value: object) -> str | None:
    """A model's name as given: the model store decides whether it is one (UnknownModel)."""
    text = str(value)
    if len(text) > 200:
        raise UnknownModel(f"unknown model {text[:40]!r}…; see cleancut models list")
    return text or None


# --- the table -------------------------------------------------------------------------------
@dataclass(frozen=True)
class OptionSpec:
    """One row of the option table (the metadata of one :class:`Options` field)."""

    kind: Kind
    label: str  # a few words, for a form control or a table
    help: str  # one sentence: what it does
    aliases: tuple[str, ...] = ()  # other names accepted (the reference tool's short names)
    api_name: str | None = None  # the native API's field name, where it differs from the name
    low: float | None = None  # bounds of numeric options, inclusive
    high: float | None = None
    choices: tuple[str, ...] = ()  # the canonical values of a choice
    synonyms: tuple[tuple[str, str], ...] = ()  # other spellings of a choice's values
    doors: frozenset[Door] = EVERY_DOOR
    # set by Options from the field itself
    name: str = ""
    default: Any = None

    @property
    def field(self) -> str:
        """The name the native API documents (and names in its errors)."""
        return self.api_name or self.name

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the API accepts for it, the documented one first."""
        extra = (self.name,) if self.api_name else ()
        return (self.field, *extra, *self.aliases)

    def parse(self, value: object, field: str | None = None, *, text: bool = True) -> Any:
        """``value`` as this option's type, validated; ``field`` names it in errors (default:
        :attr:`field`). With ``text``, booleans and integers may come as a form sends them
        ("true", "240"); without, they must be ``bool`` and ``int``."""
        name = field or self.field
        if self.kind == "boolean":
            if not text and not isinstance(value, bool):
                raise InvalidParameter(name, f"{name} must be True or False")
            return parse_bool(name, value, self.default)
        if self.kind == "integer":
            if not text and (isinstance(value, bool) or not isinstance(value, int)):
                raise InvalidParameter(name, f"{name} must be an integer from {self.low:g} "
                                       f"to {self.high:g}")
            number = parse_int(name, value, self.default)
            if number is None:
                return None
            assert self.low is not None and self.high is not None
            if not self.low <= number <= self.high:
                raise InvalidParameter(
                    name, f"{name} is {number}; it must be from {self.low:g} to {self.high:g}"
                )
            return number
        if self.kind == "color":
            text_or_seq = cast("str | Sequence[int]", value)
            return None if value in (None, "") else parse_color(text_or_seq, name)
        if self.kind == "choice":
            word = str(value).lower().strip()
            choice = dict(self.synonyms).get(word, word)
            if choice not in self.choices:
                raise InvalidParameter(
                    name, f"{name} {value!r:.40} is not one of {', '.join(self.choices)}"
                )
            return choice
        if self.kind == "model":
            return None if value is None else _parse_model(name, value)
        if value is None:
            return self.default
        return _KIND_PARSERS[self.kind](name, value)

    def describe(self) -> dict[str, Any]:
        """This row as JSON (``GET /api/options``)."""
        row: dict[str, Any] = {"name": self.name, "field": self.field,
                               "aliases": list(self.names[1:]), "type": self.kind,
                               "label": self.label, "help": self.help,
                               "default": list(self.default) if isinstance(self.default, tuple)
                               else self.default,
                               "webui": "webui" in self.doors}
        if self.low is not None:
            row["minimum"], row["maximum"] = self.low, self.high
        if self.choices:
            row["choices"] = list(self.choices)
        return row


_KIND_PARSERS: dict[str, Callable[[str, object], Any]] = {
    "boxes": _parse_boxes,
    "margin": _parse_margin,
    "percent": _parse_scale,
    "position": _parse_position,
}


def _row(default: Any, spec: OptionSpec) -> Any:
    return dataclasses.field(default=default, metadata={"option": spec})


@dataclass(frozen=True)
class Options:
    """Everything that shapes one result. Build it with :meth:`create` (typed values) or
    :meth:`from_fields` (a form's text) to get validation."""

    model: str | None = _row(None, OptionSpec(
        "model", "Model", "Model name (see cleancut models list, or GET /api/models), installed "
        "models joined by + to fuse their masks (u2net+isnet), or best (u2netp+isnet); default: "
        "CLEANCUT_DEFAULT_MODEL.", aliases=("m",)))
    fusion: str = _row("confident", OptionSpec(
        "choice", "Fusion", "How the masks of fused models (model=a+b) are combined: confident "
        "(per pixel, the surer model), mean, max (the union: keeps what either model found) or "
        "logit (the mean of their log-odds).", choices=METHODS))
    only_mask: bool = _row(False, OptionSpec(
        "boolean", "Mask only", "Return the mask (greyscale) instead of the cutout.",
        api_name="return_mask", aliases=("om",)))
    post_process_mask: bool = _row(False, OptionSpec(
        "boolean", "Post-process the mask",
        "Smooth and harden the mask (morphological clean-up).", aliases=("ppm",)))
    alpha_matting: bool = _row(False, OptionSpec(
        "boolean", "Alpha matting", "Refine the edges by closed-form matting (slower).",
        aliases=("a",)))
    alpha_matting_foreground_threshold: int = _row(240, OptionSpec(
        "integer", "Matting foreground threshold",
        "Mask value above which a pixel is sure foreground.", aliases=("af",), low=0, high=255))
    alpha_matting_background_threshold: int = _row(10, OptionSpec(
        "integer", "Matting background threshold",
        "Mask value below which a pixel is sure background.", aliases=("ab",), low=0, high=255))
    alpha_matting_erode_size: int = _row(10, OptionSpec(
        "integer", "Matting erosion", "Erosion of the sure regions in pixels, 0 for none.",
        aliases=("ae",), low=0, high=64))
    decontaminate: bool = _row(True, OptionSpec(
        "boolean", "Clean edge colours", "Re-estimate the subject's colour where it is "
        "semi-transparent, so no colour of the old background shows at the edges; false keeps "
        "the photo's own colours."))
    keep: tuple[Box, ...] = _row((), OptionSpec(
        "boxes", "Keep boxes", "Rectangles that are subject, as left,top,width,height in pixels "
        "of the photo (JSON [[l,t,w,h], ...] or l,t,w,h;l,t,w,h): forced opaque, the edges "
        "around them re-solved from the photo.", doors=HINT_DOORS))
    remove: tuple[Box, ...] = _row((), OptionSpec(
        "boxes", "Remove boxes", "Rectangles that are background, as keep: forced transparent, "
        "the edges around them re-solved from the photo.", doors=HINT_DOORS))
    bgcolor: Color | None = _row(None, OptionSpec(
        "color", "Background colour", "Background colour instead of transparency: #rrggbb, "
        "#rrggbbaa, a CSS name or R,G,B[,A].", aliases=("bgc",)))
    premultiplied: bool = _row(False, OptionSpec(
        "boolean", "Premultiplied", "Scale the colours by alpha, as the reference tool does."))
    format: OutputFormat = _row("png", OptionSpec(
        "choice", "Output format", "png, webp or jpeg (jpg); JPEG needs an opaque result "
        "(a background colour, or the mask only).", choices=FORMATS,
        synonyms=(("jpg", "jpeg"),)))
    quality: int | None = _row(None, OptionSpec(
        "integer", "Quality", "1-100: JPEG quality, or lossy WebP at that quality "
        "(default: JPEG 90, lossless WebP).", low=1, high=100))
    # output geometry: the remove.bg door's size, crop, crop_margin, scale and position
    max_pixels: int | None = _row(None, OptionSpec(
        "integer", "Most pixels", "Scale the photo down (never up) to at most this many pixels "
        "first.", low=1, high=1_000_000_000, doors=GEOMETRY_DOORS))
    crop: bool = _row(False, OptionSpec(
        "boolean", "Crop", "Crop the result to the subject (plus crop_margin).",
        doors=GEOMETRY_DOORS))
    crop_margin: Margin = _row(NO_MARGIN, OptionSpec(
        "margin", "Crop margin", "Margin kept around the subject when cropping: 1, 2 or 4 "
        "lengths such as 30px or 10% (at most half the subject, and 500 px).",
        doors=GEOMETRY_DOORS))
    scale: float | None = _row(None, OptionSpec(
        "percent", "Scale", "Fraction of the canvas the subject fills, 10% to 100%, or "
        "original.", doors=GEOMETRY_DOORS))
    position: tuple[float, float] | None = _row(None, OptionSpec(
        "position", "Position", "Where the subject goes: center, top, bottom, left, right, one "
        "or two percentages, or original (where it was).", doors=GEOMETRY_DOORS))
    zip: bool = _row(False, OptionSpec(
        "boolean", "Zip", "A zip of color.jpg and alpha.png instead of one image "
        "(remove.bg's format=zip).", doors=GEOMETRY_DOORS))

    @classmethod
    def create(cls, **values: Any) -> Options:
        """Options from typed values by name; ``None`` means the default."""
        unknown = sorted(set(values) - _BY_NAME.keys())
        if unknown:
            raise TypeError(f"unknown option {unknown[0]!r}; options are: "
                            + ", ".join(_BY_NAME))
        parsed = {name: _BY_NAME[name].parse(value, name, text=False)
                  for name, value in values.items() if value is not None}
        return cls(**parsed)

    @classmethod
    def from_fields(cls, values: Mapping[str, str | None], door: Door) -> Options:
        """Options from a form, a query string or a command line: each option of ``door``
        under any of its names (names of one option must agree); other keys are ignored."""
        parsed: dict[str, Any] = {}
        for spec in OPTIONS:
            if door not in spec.doors:
                continue
            value = pick(*((name, values.get(name)) for name in spec.names))
            if value is not None and value != "":
                parsed[spec.name] = spec.parse(value)
        return cls(**parsed)

    @property
    def geometry(self) -> bool:
        """Whether the output geometry differs from the photo's (crop, scale or position)."""
        return self.crop or self.scale is not None or self.position is not None


def _specs() -> tuple[OptionSpec, ...]:
    rows = []
    for f in dataclasses.fields(Options):
        spec = f.metadata["option"]
        rows.append(dataclasses.replace(spec, name=f.name, default=f.default))
    return tuple(rows)


OPTIONS: tuple[OptionSpec, ...] = _specs()
_BY_NAME: dict[str, OptionSpec] = {spec.name: spec for spec in OPTIONS}


def spec_of(name: str) -> OptionSpec:
    """The row of option ``name``."""
    return _BY_NAME[name]


def reference_markdown() -> str:
    """The option reference (``docs/options.md``), from the table: one row per option."""
    out = [
        "# Options",
        "",
        "<!-- Generated from src/cleancut/engine/options.py by scripts/gen-docs. "
        "tests/test_options.py fails when this file is stale. -->",
        "",
        "What shapes one result. Each option has one name in the library "
        "(`cleancut.remove(data, name=value)`, `cleancut.Options`), a flag in the CLI "
        "(`cleancut i|p|b`), a form or query field in the native API (`POST /api/remove`, "
        "`GET /api/remove?url=`; `GET /api/options` lists them as JSON, and the WebUI draws its "
        "controls from that list) and, for the output geometry, a field of the "
        "remove.bg-compatible API. Fields take `true`/`false` (also `1`/`0`, `on`/`off`, "
        "`yes`/`no`) for booleans; a field sent under two of its names must agree.",
        "",
        "| option | CLI | API field (also) | type | default | what it does |",
        "|---|---|---|---|---|---|",
    ]
    for spec in OPTIONS:
        flags = " ".join([f"`-{a}`" for a in spec.aliases]
                         + [f"`--{spec.name.replace('_', '-')}`"]) if "cli" in spec.doors else "–"
        if "api" in spec.doors:
            field = f"`{spec.field}`" + (f" ({', '.join(f'`{n}`' for n in spec.names[1:])})"
                                         if spec.names[1:] else "")
        elif "removebg" in spec.doors:
            field = f"`{spec.name}` (remove.bg API)" if spec.name not in (
                "max_pixels", "zip") else "remove.bg's `size`" if spec.name == "max_pixels" \
                else "remove.bg's `format=zip`"
        else:
            field = "–"
        kind: str = spec.kind
        if spec.low is not None and spec.high is not None:
            kind += f" {int(spec.low):,}–{int(spec.high):,}"
        if spec.choices:
            kind += ": " + ", ".join(spec.choices)
        default = "the default model" if spec.kind == "model" else (
            "none" if spec.default in (None, ()) else str(spec.default).lower()
            if isinstance(spec.default, bool) else "none" if spec.name == "crop_margin"
            else str(spec.default))
        out.append(f"| `{spec.name}` | {flags} | {field} | {kind} | {default} | {spec.help} |")
    out.append("")
    return "\n".join(out)
