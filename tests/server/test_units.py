"""The server's small pure parts: strict parameter parsing and the remove.bg output geometry."""

from __future__ import annotations

import pytest
from PIL import Image

from cleancut.errors import InvalidParameter
from cleancut.server.layout import Layout, apply_layout, fit, parse_layout, size_limit
from cleancut.server.params import parse_bool, parse_int, pick


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


def test_size_limits_and_fit() -> None:
    assert size_limit("regular") == 250_000 and size_limit("50MP") is None
    with pytest.raises(InvalidParameter):
        size_limit("xl")
    im = fit(Image.new("RGB", (2000, 1000)), 250_000)
    assert im.width * im.height <= 250_000 and abs(im.width / im.height - 2) < 0.01
    assert fit(Image.new("RGB", (100, 100)), 250_000).size == (100, 100)  # never up


def test_parse_layout() -> None:
    assert parse_layout(False, None, None, None).is_identity
    assert parse_layout(True, "10px 5%", None, None).margin == (
        (10, "px"), (5, "%"), (10, "px"), (5, "%"))
    assert parse_layout(False, None, "50%", None).position == (0.5, 0.5)
    assert parse_layout(False, None, "50%", "original").position is None
    assert parse_layout(False, None, None, "0% 100%").position == (0.0, 1.0)
    for bad in [("crop_margin", dict(crop_margin="1 2 3")), ("scale", dict(scale="200%")),
                ("position", dict(position="50% 50% 50%"))]:
        kwargs = {"crop_margin": None, "scale": None, "position": None, **bad[1]}
        with pytest.raises(InvalidParameter) as info:
            parse_layout(True, **kwargs)  # type: ignore[arg-type]
        assert info.value.field == bad[0]


def test_crop_margins_are_capped_at_half_the_subject() -> None:
    im = Image.new("L", (100, 100))
    (out,) = apply_layout([im], (10, 10, 20, 40), [0], Layout(crop=True,
                                                               margin=((100, "%"),) * 4))
    assert out.size == (20 + 2 * 10, 40 + 2 * 20)


def test_position_bottom_right() -> None:
    im = Image.new("L", (100, 100))
    im.paste(255, (10, 10, 30, 30))
    (out,) = apply_layout([im], (10, 10, 20, 20), [0], Layout(position=(1.0, 1.0)))
    assert out.getbbox() == (80, 80, 100, 100)
