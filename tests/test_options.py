"""The option table: one row per option, from which every door's fields are derived."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from PIL import Image

from cleancut.engine import OPTIONS, Options
from cleancut.engine.layout import apply_layout, fit
from cleancut.engine.options import parse_bool, parse_int, pick, reference_markdown, spec_of
from cleancut.errors import InvalidParameter


def test_the_committed_reference_is_up_to_date() -> None:
    doc = Path(__file__).parents[1] / "docs" / "options.md"
    assert doc.read_text(encoding="utf-8") == reference_markdown(), \
        "docs/options.md is stale: run scripts/gen-docs"


def test_every_field_of_options_is_one_row_of_the_table() -> None:
    assert [spec.name for spec in OPTIONS] == [f.name for f in dataclasses.fields(Options)]
    for spec in OPTIONS:
        assert spec.label and spec.help.endswith(".") and "library" in spec.doors


def test_names_are_unique_across_options_and_aliases() -> None:
    names = [name for spec in OPTIONS for name in spec.names]
    assert len(names) == len(set(names))


def test_the_reference_tools_short_names_are_aliases() -> None:
    short = {alias: spec.name for spec in OPTIONS for alias in spec.aliases}
    assert short == {"m": "model", "om": "only_mask", "ppm": "post_process_mask",
                     "a": "alpha_matting", "af": "alpha_matting_foreground_threshold",
                     "ab": "alpha_matting_background_threshold",
                     "ae": "alpha_matting_erode_size", "bgc": "bgcolor"}


def test_defaults_come_from_the_rows() -> None:
    assert Options() == Options.create() == Options.from_fields({}, "api")
    assert Options().alpha_matting_foreground_threshold == 240
    assert spec_of("alpha_matting_erode_size").default == 10


def test_from_fields_reads_any_name_of_an_option() -> None:
    by_long = Options.from_fields({"return_mask": "true", "bgcolor": "red"}, "api")
    by_short = Options.from_fields({"om": "1", "bgc": "red"}, "api")
    by_library_name = Options.from_fields({"only_mask": "yes", "bgc": "#ff0000"}, "api")
    assert by_long == by_short == by_library_name
    assert by_long.only_mask and by_long.bgcolor == (255, 0, 0, 255)


def test_from_fields_shows_each_door_only_its_own_options() -> None:
    assert Options.from_fields({"crop": "true"}, "api").crop is False
    assert Options.from_fields({"crop": "true"}, "removebg").crop is True


def test_names_of_one_option_must_agree() -> None:
    with pytest.raises(InvalidParameter) as info:
        Options.from_fields({"bgcolor": "red", "bgc": "blue"}, "api")
    assert info.value.field == "bgcolor"


@pytest.mark.parametrize(("values", "field"), [
    ({"a": "maybe"}, "alpha_matting"),
    ({"af": "256"}, "alpha_matting_foreground_threshold"),
    ({"ae": "x"}, "alpha_matting_erode_size"),
    ({"quality": "0"}, "quality"),
    ({"format": "gif"}, "format"),
    ({"bgcolor": "#12"}, "bgcolor"),
])
def test_bad_values_name_their_field(values: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        Options.from_fields(values, "api")
    assert info.value.field == field and info.value.code == f"invalid_{field}"


def test_create_takes_typed_values_and_refuses_unknown_names() -> None:
    options = Options.create(only_mask=True, alpha_matting_erode_size=0, format="jpg",
                             bgcolor=(1, 2, 3))
    assert options.only_mask and options.alpha_matting_erode_size == 0
    assert options.format == "jpeg" and options.bgcolor == (1, 2, 3, 255)
    with pytest.raises(InvalidParameter):
        Options.create(alpha_matting_erode_size=65)
    with pytest.raises(TypeError, match="only_maks"):
        Options.create(only_maks=True)


def test_describe_gives_what_a_form_needs() -> None:
    row = spec_of("alpha_matting_foreground_threshold").describe()
    assert row["type"] == "integer" and (row["minimum"], row["maximum"]) == (0, 255)
    assert row["default"] == 240 and row["aliases"] == ["af"] and row["webui"] is True
    assert spec_of("format").describe()["choices"] == ["png", "webp", "jpeg"]
    assert spec_of("only_mask").describe()["field"] == "return_mask"


@pytest.mark.parametrize(("text", "expected"), [
    ("true", True), ("On", True), ("YES", True), ("1", True), (" false ", False), ("0", False),
    ("off", False), ("No", False), ("", False), (None, False)])
def test_parse_bool_strict(text: str | None, expected: bool) -> None:
    assert parse_bool("x", text) is expected


@pytest.mark.parametrize("text", ["2", "t", "y", "truee", "null", "-1", "on off"])
def test_parse_bool_refuses_the_rest(text: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        parse_bool("crop", text)
    assert info.value.code == "invalid_crop"


def test_parse_int() -> None:
    assert parse_int("q", "42", None) == 42
    assert parse_int("q", "", 7) == 7
    for bad in ("4.2", "1e3", "x", "٣", "9" * 20):
        with pytest.raises(InvalidParameter):
            parse_int("q", bad, None)


def test_pick_long_short_and_disagreement() -> None:
    assert pick(("bgcolor", None), ("bgc", "red")) == "red"
    assert pick(("bgcolor", "red"), ("bgc", "red")) == "red"
    with pytest.raises(InvalidParameter) as info:
        pick(("bgcolor", "red"), ("bgc", "blue"))
    assert info.value.field == "bgcolor"


def test_fit_scales_down_never_up() -> None:
    im = fit(Image.new("RGB", (2000, 1000)), 250_000)
    assert im.width * im.height <= 250_000 and abs(im.width / im.height - 2) < 0.01
    assert fit(Image.new("RGB", (100, 100)), 250_000).size == (100, 100)


def test_geometry_rows_parse_remove_bg_values() -> None:
    options = Options.from_fields({"crop": "true", "crop_margin": "10px 5%"}, "removebg")
    assert options.crop_margin == ((10, "px"), (5, "%"), (10, "px"), (5, "%"))
    assert Options.from_fields({"scale": "50%"}, "removebg").scale == 0.5
    assert Options.from_fields({"scale": "original"}, "removebg").scale is None
    assert Options.from_fields({"position": "0% 100%"}, "removebg").position == (0.0, 1.0)
    assert not Options().geometry
    for field, value in [("crop_margin", "1 2 3"), ("scale", "200%"),
                         ("position", "50% 50% 50%")]:
        with pytest.raises(InvalidParameter) as info:
            Options.from_fields({field: value}, "removebg")
        assert info.value.field == field


def test_crop_margins_are_capped_at_half_the_subject() -> None:
    im = Image.new("L", (100, 100))
    options = Options.create(crop=True, crop_margin="100%")
    (out,) = apply_layout([im], (10, 10, 20, 40), [0], options)
    assert out.size == (20 + 2 * 10, 40 + 2 * 20)


def test_position_bottom_right() -> None:
    im = Image.new("L", (100, 100))
    im.paste(255, (10, 10, 30, 30))
    (out,) = apply_layout([im], (10, 10, 20, 20), [0], Options.create(position=(1.0, 1.0)))
    assert out.getbbox() == (80, 80, 100, 100)
