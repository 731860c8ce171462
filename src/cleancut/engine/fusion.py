"""Fused masks: several models' masks of one photo combined into one.

A model name such as ``u2net+u2netp`` (installed models joined by ``+``) runs each model once;
:func:`model_names` splits and checks such a name, :func:`fuse` combines the masks, all at the
photo's size. Methods (measured on alphamatting-8 and ecssd-100, bench/results/hints.md):

- ``mean``: the per-pixel mean (the baseline). It lands between the models on every set and
  beats the better one on none.
- ``max``: the per-pixel maximum, the union. The U²-Net family's typical error is a *dropped*
  region (a second flower, green hair), rarely an invented one, so the union keeps what either
  model found: alphamatting-8 SAD of u2net+u2netp 239 (u2net) → 112, at u2net's ECSSD MAE.
- ``confident``: per pixel, the mask that is surer of itself (largest |p − ½|, ties to the
  first model): the lowest ECSSD MAE, better than u2net's on 80 of 100 photos.
- ``logit``: the mean of the masks' logits (clipped at half an 8-bit level), the usual way to
  average probabilities: a confident model outweighs an unsure one, gently.

Pure functions on arrays; no model is run here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InvalidParameter

__all__ = ["METHODS", "DEFAULT_METHOD", "fuse", "model_names"]

METHODS = ("mean", "max", "confident", "logit")
DEFAULT_METHOD = "mean"
_EPS = 1.0 / 512.0  # logit clipping: half an 8-bit level from 0 and 1


def model_names(name: str) -> list[str]:
    """The models of a fused name (``"u2net+u2netp"`` → ``["u2net", "u2netp"]``), in order.

    A plain name gives a one-element list. Empty parts and repeated models are refused with
    :class:`InvalidParameter` ``"model"`` (each model runs once).
    """
    parts = name.split("+")  # as given: the model store decides what is a model's name
    if any(not part for part in parts):
        raise InvalidParameter(
            "model", f"{name!r} is not a model name: join installed models with '+', no empty parts"
        )
    seen: set[str] = set()
    for part in parts:
        if part in seen:
            raise InvalidParameter("model", f"{name!r} names {part} twice; each model runs once")
        seen.add(part)
    return parts


def fuse(masks: Sequence[np.ndarray], method: str = DEFAULT_METHOD) -> np.ndarray:
    """One mask from several masks of the same photo (H×W each).

    Each mask is uint8 (0–255) or float in [0, 1]. The result is uint8 (rounded) when every
    input is uint8, float32 in [0, 1] otherwise. ``method`` is one of :data:`METHODS`; a single
    mask comes back unchanged (as a copy, in the output type). Raises
    :class:`InvalidParameter` ``"fusion"`` for an unknown method, ``ValueError`` for masks
    that are missing, of different shapes, not 2-D or out of range.
    """
    if method not in METHODS:
        raise InvalidParameter(
            "fusion", f"unknown fusion method {method!r}; use one of {', '.join(METHODS)}"
        )
    if len(masks) == 0:
        raise ValueError("fuse needs at least one mask")
    arrays = [np.asarray(m) for m in masks]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 2:
        raise ValueError(f"masks must be 2-D and of one shape, got {[a.shape for a in arrays]}")
    all_bytes = all(a.dtype == np.uint8 for a in arrays)
    stack = np.stack([_as_unit(a) for a in arrays])
    if len(masks) == 1:
        out = stack[0]
    elif method == "mean":
        out = stack.mean(axis=0)
    elif method == "max":
        out = stack.max(axis=0)
    elif method == "confident":
        pick = np.argmax(np.abs(stack - 0.5), axis=0)  # ties: the first model
        out = np.take_along_axis(stack, pick[np.newaxis], axis=0)[0]
    else:  # logit
        p = np.clip(stack, _EPS, 1.0 - _EPS)
        z = np.log(p / (1.0 - p)).mean(axis=0)
        out = 1.0 / (1.0 + np.exp(-z))
        # a pixel every model puts at exactly 0 (or 1) stays there
        out = np.where((stack == 0.0).all(axis=0), 0.0, out)
        out = np.where((stack == 1.0).all(axis=0), 1.0, out)
    unit: np.ndarray = np.clip(out, 0.0, 1.0).astype(np.float32)
    if all_bytes:
        return np.rint(unit * 255.0).astype(np.uint8)
    return unit


def _as_unit(mask: np.ndarray) -> np.ndarray:
    if mask.dtype == np.uint8:
        return mask.astype(np.float32) / 255.0
    if not np.issubdtype(mask.dtype, np.floating):
        raise ValueError(f"a mask is uint8 or float in [0, 1], got {mask.dtype}")
    out = mask.astype(np.float32)
    if not np.isfinite(out).all() or out.min(initial=0.0) < 0.0 or out.max(initial=0.0) > 1.0:
        raise ValueError("a float mask must hold finite values in [0, 1]")
    return out
