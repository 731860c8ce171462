"""Parity with the reference tool (rembg 2.0.86) on the golden set.

Every file in ``fixtures/golden/manifest.json`` is reproduced from its input bytes with the
matching cleancut options, and compared with tolerances (``fixtures/golden/README.md``):

- alpha: mean absolute difference <= 0.5 on 0-255 and IoU(alpha > 127) >= 0.995
  (alpha matting is iterative: mean absolute difference <= 2);
- ``premultiplied=True`` reproduces the reference's composite, so its RGB matches too;
- the straight-alpha cutout keeps the input's RGB wherever alpha > 0;
- all of it with ``decontaminate=False``: by default cleancut re-estimates the colour of the soft
  edges (where the reference keeps the old background's), and only there.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import cleancut
from cleancut.config import Settings

from .imagetools import EXPECTED, GOLDEN, alpha, input_bytes, iou, mad, open_image, upright

MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
FILES: list[dict[str, Any]] = MANIFEST["files"]

ALPHA_MAD = 0.5
ALPHA_IOU = 0.995
MATTING_ALPHA_MAD = 2.0
RGB_MAD = 0.5

# what each reference call corresponds to in cleancut
CASE_OPTIONS: dict[str, dict[str, Any]] = {
    "cutout": {"premultiplied": True},
    "mask": {"only_mask": True},
    "ppm_mask": {"only_mask": True, "post_process_mask": True},
    "alpha_matting": {"alpha_matting": True},
}


def _case_id(entry: dict[str, Any]) -> str:
    return entry["output"].removesuffix(".png")


def _cases(*names: str) -> list[Any]:
    return [pytest.param(e, id=_case_id(e)) for e in FILES if e["case"] in names]


def _run(entry: dict[str, Any], settings: Settings, **options: Any) -> np.ndarray:
    # the reference does not clean edge colours: parity is with decontaminate off
    out = cleancut.remove(input_bytes(entry["input"]), model=entry["model"], settings=settings,
                          **{"decontaminate": False, **options})
    assert out[:8] == b"\x89PNG\r\n\x1a\n", "bytes in must give PNG bytes out by default"
    return open_image(out)


def test_manifest_covers_every_expected_file() -> None:
    listed = {e["output"] for e in FILES}
    on_disk = {p.name for p in EXPECTED.glob("*.png")}
    assert listed == on_disk
    assert {e["case"] for e in FILES} == set(CASE_OPTIONS)


@pytest.mark.parametrize("entry", _cases("mask", "ppm_mask"))
def test_mask_matches_reference(entry: dict[str, Any], settings: Settings, model_dir) -> None:
    got = _run(entry, settings, **CASE_OPTIONS[entry["case"]])
    want = open_image((EXPECTED / entry["output"]).read_bytes())
    assert got.mode == "L"
    assert got.size == want.size
    assert mad(alpha(got), alpha(want)) <= ALPHA_MAD
    assert iou(alpha(got), alpha(want)) >= ALPHA_IOU


def test_post_processed_mask_is_hard(settings: Settings, model_dir) -> None:
    got = open_image(
        cleancut.remove(input_bytes("chelsea.jpg"), model="u2netp", settings=settings,
                        only_mask=True, post_process_mask=True)
    )
    assert set(np.unique(np.asarray(got)).tolist()) <= {0, 255}


@pytest.mark.parametrize("entry", _cases("cutout"))
def test_premultiplied_cutout_matches_reference(
    entry: dict[str, Any], settings: Settings, model_dir
) -> None:
    got = _run(entry, settings, premultiplied=True)
    want = open_image((EXPECTED / entry["output"]).read_bytes())
    assert got.mode == want.mode == "RGBA"
    assert got.size == want.size
    assert mad(alpha(got), alpha(want)) <= ALPHA_MAD
    assert iou(alpha(got), alpha(want)) >= ALPHA_IOU
    got_rgb = np.asarray(got)[..., :3]
    want_rgb = np.asarray(want)[..., :3]
    assert mad(got_rgb, want_rgb) <= RGB_MAD


@pytest.mark.parametrize("entry", _cases("cutout"))
def test_straight_cutout_keeps_input_rgb(
    entry: dict[str, Any], settings: Settings, model_dir
) -> None:
    got = _run(entry, settings)
    want = open_image((EXPECTED / entry["output"]).read_bytes())
    source = upright(input_bytes(entry["input"])).convert("RGB")
    assert got.mode == "RGBA"
    assert got.size == source.size
    # same alpha as the reference ...
    assert mad(alpha(got), alpha(want)) <= ALPHA_MAD
    assert iou(alpha(got), alpha(want)) >= ALPHA_IOU
    # ... but the colour is the input's, not darkened by alpha
    visible = alpha(got) > 0
    assert visible.any()
    got_rgb = np.asarray(got)[..., :3][visible]
    src_rgb = np.asarray(source)[visible]
    assert np.array_equal(got_rgb, src_rgb)


@pytest.mark.parametrize("entry", _cases("cutout"))
def test_the_default_cutout_changes_colours_only_in_the_soft_edge(
    entry: dict[str, Any], settings: Settings, model_dir
) -> None:
    plain = np.asarray(_run(entry, settings))
    cleaned = np.asarray(open_image(cleancut.remove(
        input_bytes(entry["input"]), model=entry["model"], settings=settings)))
    assert np.array_equal(plain[..., 3], cleaned[..., 3])  # the same alpha
    a = plain[..., 3]
    solid = (a == 0) | (a >= 240)
    assert np.array_equal(plain[..., :3][solid], cleaned[..., :3][solid])


@pytest.mark.parametrize("entry", _cases("alpha_matting"))
def test_alpha_matting_matches_reference(
    entry: dict[str, Any], settings: Settings, model_dir
) -> None:
    got = _run(entry, settings, alpha_matting=True)
    want = open_image((EXPECTED / entry["output"]).read_bytes())
    assert got.mode == "RGBA"
    assert got.size == want.size
    assert mad(alpha(got), alpha(want)) <= MATTING_ALPHA_MAD
