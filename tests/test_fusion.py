"""Fused masks: several models' masks of one photo combined, on arrays whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from cleancut.engine.fusion import DEFAULT_METHOD, METHODS, fuse, model_names
from cleancut.errors import InvalidParameter


def _pair() -> tuple[np.ndarray, np.ndarray]:
    """Two 8-bit masks of a 4×4 photo: the second model found a region the first dropped."""
    a = np.zeros((4, 4), dtype=np.uint8)
    a[:, :2] = 250
    b = a.copy()
    b[:, 2] = 200  # found only by b
    b[0, 0] = 100  # b unsure where a is sure
    return a, b


def test_the_methods_and_the_default():
    assert METHODS == ("mean", "max", "confident", "logit")
    assert DEFAULT_METHOD == "mean"


def test_mean_is_the_rounded_per_pixel_mean_and_stays_8_bit():
    a, b = _pair()
    out = fuse([a, b])
    assert out.dtype == np.uint8
    assert out[0, 0] == 175 and out[1, 2] == 100 and out[1, 0] == 250 and out[1, 3] == 0


def test_max_keeps_what_either_model_found():
    a, b = _pair()
    out = fuse([a, b], "max")
    assert (out[:, 2] == 200).all()
    assert out[0, 0] == 250
    assert (out[:, 3] == 0).all()


def test_confident_takes_the_surer_mask_per_pixel():
    a = np.array([[0.9, 0.45, 0.5]], dtype=np.float32)
    b = np.array([[0.6, 0.05, 0.5]], dtype=np.float32)
    out = fuse([a, b], "confident")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.9, 0.05, 0.5]])


def test_confident_ties_go_to_the_first_model():
    a = np.array([[0.2]], dtype=np.float32)
    b = np.array([[0.8]], dtype=np.float32)  # as sure, the other way
    assert fuse([a, b], "confident")[0, 0] == pytest.approx(0.2)
    assert fuse([b, a], "confident")[0, 0] == pytest.approx(0.8)


def test_logit_averages_log_odds():
    a = np.array([[0.9, 0.9, 0.0, 1.0]], dtype=np.float32)
    b = np.array([[0.5, 0.1, 0.0, 1.0]], dtype=np.float32)
    out = fuse([a, b], "logit")
    expected = 1.0 / (1.0 + np.exp(-np.log(9.0) / 2.0))  # logit(0.9) / 2
    np.testing.assert_allclose(out[0, :2], [expected, 0.5], atol=1e-6)
    assert out[0, 2] == 0.0 and out[0, 3] == 1.0  # unanimous extremes stay exact


def test_logit_lets_a_sure_model_outweigh_an_unsure_one_more_than_the_mean_does():
    sure = np.array([[0.99]], dtype=np.float32)
    unsure = np.array([[0.4]], dtype=np.float32)
    assert fuse([sure, unsure], "logit")[0, 0] > fuse([sure, unsure], "mean")[0, 0] + 0.1


def test_three_masks():
    masks = [np.full((2, 2), v, dtype=np.uint8) for v in (0, 100, 230)]
    assert fuse(masks, "mean")[0, 0] == 110
    assert fuse(masks, "max")[0, 0] == 230
    assert fuse(masks, "confident")[0, 0] == 0  # |0 − ½| is the largest


def test_mixed_inputs_give_float_output():
    a, _ = _pair()
    out = fuse([a, a.astype(np.float32) / 255.0], "mean")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, a / 255.0, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_one_mask_comes_back_unchanged(method):
    a, _ = _pair()
    out = fuse([a], method)
    assert np.array_equal(out, a) and out is not a


@pytest.mark.parametrize("method", METHODS)
def test_identical_masks_fuse_to_themselves(method):
    a, _ = _pair()
    assert np.array_equal(fuse([a, a, a], method), a)


def test_an_unknown_method_is_refused_with_the_methods_listed():
    a, b = _pair()
    with pytest.raises(InvalidParameter) as info:
        fuse([a, b], "median")
    assert info.value.field == "fusion"
    assert "confident" in str(info.value)


@pytest.mark.parametrize(
    "masks",
    [
        [],
        [np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8)],
        [np.zeros((4, 4, 1), np.uint8)],
        [np.full((2, 2), 1.5, np.float32)],
        [np.full((2, 2), np.nan, np.float32)],
        [np.zeros((2, 2), np.int32)],
    ],
)
def test_bad_masks_are_a_programming_error(masks):
    with pytest.raises(ValueError):
        fuse(masks)


def test_model_names_split_a_fused_name_in_order():
    assert model_names("u2net+u2netp") == ["u2net", "u2netp"]
    assert model_names("isnet+u2net+u2netp") == ["isnet", "u2net", "u2netp"]
    assert model_names("u2net") == ["u2net"]


@pytest.mark.parametrize("name", ["u2net+", "+u2net", "u2net++u2netp", "u2net+u2net"])
def test_bad_fused_names_are_refused(name):
    with pytest.raises(InvalidParameter) as info:
        model_names(name)
    assert info.value.field == "model"
