"""`cleancut eval`: the metrics on hand-computed cases, then the command on a tiny real dataset."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cleancut.evaluate import (
    ImageScore,
    Scores,
    f_beta,
    iou,
    mae,
    pr_curve,
    s_measure,
    score_image,
)
from tests.conftest import GOLDEN

CLEANCUT = str(Path(sys.executable).parent / "cleancut")


def blob(h: int = 40, w: int = 60) -> np.ndarray:
    """A centred rectangle of foreground: every S-measure quadrant holds both classes."""
    gt = np.zeros((h, w), dtype=bool)
    gt[10:30, 15:45] = True
    return gt


def summary(*cases: tuple[np.ndarray, np.ndarray]) -> dict:
    scores = Scores()
    for i, (pred, gt) in enumerate(cases):
        scores.add(score_image(str(i), pred, gt))
    return scores.summary()


# --- metrics ----------------------------------------------------------------------------------
def test_perfect_prediction_scores_perfectly() -> None:
    gt = blob()
    pred = np.where(gt, 255, 0).astype(np.uint8)
    assert mae(pred, gt) == 0.0
    assert iou(pred, gt) == 1.0
    assert s_measure(pred, gt) == pytest.approx(1.0)
    s = summary((pred, gt))
    assert s["max_f"] == pytest.approx(1.0)
    assert s["mae"] == 0.0 and s["iou"] == 1.0


def test_inverted_prediction_scores_worst() -> None:
    gt = blob()
    pred = np.where(gt, 0, 255).astype(np.uint8)
    assert mae(pred, gt) == 1.0
    assert iou(pred, gt) == 0.0
    assert s_measure(pred, gt) == 0.0  # negative structure similarity is clamped to 0
    # only t = 0 (everything predicted) finds any foreground: P = fg share, R = 1
    p = gt.mean()
    assert summary((pred, gt))["max_f"] == pytest.approx(1.3 * p / (0.3 * p + 1))


def test_ground_truth_is_binarised_at_128() -> None:
    pred = np.array([[255, 0]], dtype=np.uint8)
    assert mae(pred, np.array([[128, 127]], dtype=np.uint8)) == 0.0


def test_pr_curve_small_case() -> None:
    gt = np.array([[1, 0], [0, 0]], dtype=bool)
    pred = np.array([[255, 128], [0, 0]], dtype=np.uint8)
    precision, recall = pr_curve(pred, gt)
    assert precision[0] == 0.25 and precision[1] == 0.5 and precision[128] == 0.5
    assert precision[129] == 1.0 and precision[255] == 1.0
    assert np.all(recall == 1.0)
    assert mae(pred, gt) == pytest.approx(128 / 255 / 4)
    assert iou(pred, gt) == 0.5


def test_max_f_averages_precision_and_recall_over_the_dataset_first() -> None:
    """The paper's protocol: mean P and mean R per threshold, then Fβ, then the max.

    Image A: gt [[1,0],[0,0]], pred [[255,128],[0,0]]. Image B: gt [[1,1],[0,0]],
    pred [[200,100],[50,0]]. At t = 129..200 A has P = R = 1 and B has P = 1, R = 0.5, so the
    averages are P = 1, R = 0.75 and Fβ = 1.3·0.75 / (0.3 + 0.75) = 13/14, the best threshold
    (t = 51..100 gives 0.796, t = 101..128 gives 0.75, t > 200 gives 0.5). Averaging per-image
    F instead would give (1 + 0.8125) / 2 = 0.906.
    """
    a = (np.array([[255, 128], [0, 0]], np.uint8), np.array([[1, 0], [0, 0]], bool))
    b = (np.array([[200, 100], [50, 0]], np.uint8), np.array([[1, 1], [0, 0]], bool))
    s = summary(a, b)
    assert s["max_f"] == pytest.approx(13 / 14)
    assert s["max_f_threshold"] == 129
    assert s["mae"] == pytest.approx(((128 / 255) / 4 + (55 / 255 + 155 / 255 + 50 / 255) / 4) / 2)


def test_f_beta_is_zero_without_precision_or_recall() -> None:
    f = f_beta(np.array([0.0, 1.0, 0.5]), np.array([0.0, 1.0, 1.0]))
    assert f[0] == 0.0 and f[1] == pytest.approx(1.0)
    assert f[2] == pytest.approx(1.3 * 0.5 / (0.15 + 1.0))


def test_s_measure_constant_prediction_by_hand() -> None:
    """Left half foreground, a flat 128 prediction (left un-normalised: it has no range).

    Object term: fg mean x = 128/255 with σ = 0 gives 2x/(x²+1); bg sees 1 − x the same way;
    u = 0.5. Region term: the centroid (X = 2, Y = 3, 1-based) splits the 4×4 map into
    quadrants that are each uniform in both maps, so each SSIM is 1 by definition.
    """
    gt = np.zeros((4, 4), dtype=bool)
    gt[:, :2] = True
    pred = np.full((4, 4), 128, dtype=np.uint8)
    x = 128 / 255
    o_fg, o_bg = 2 * x / (x * x + 1), 2 * (1 - x) / ((1 - x) ** 2 + 1)
    expected = 0.5 * (0.5 * o_fg + 0.5 * o_bg) + 0.5 * 1.0
    assert s_measure(pred, gt) == pytest.approx(expected, abs=1e-9)


def test_s_measure_empty_and_full_ground_truth() -> None:
    pred = np.full((8, 8), 51, dtype=np.uint8)  # flat: 0.2 after scaling
    assert s_measure(pred, np.zeros((8, 8), bool)) == pytest.approx(0.8)
    assert s_measure(pred, np.ones((8, 8), bool)) == pytest.approx(0.2)


def test_s_measure_orders_better_predictions_higher() -> None:
    gt = blob()
    rng = np.random.default_rng(0)
    clean = np.where(gt, 230, 20).astype(np.float64)
    scores = []
    for noise in (0, 40, 90):
        noisy = np.clip(clean + rng.normal(0, noise, gt.shape), 0, 255).astype(np.uint8)
        scores.append(s_measure(noisy, gt))
    assert 1.0 >= scores[0] > scores[1] > scores[2] >= 0.0


def test_size_mismatch_is_a_clear_error() -> None:
    from cleancut.errors import InvalidParameter

    with pytest.raises(InvalidParameter, match="prediction is 3×2 but its mask is 2×2"):
        score_image("x", np.zeros((2, 3), np.uint8), np.zeros((2, 2), bool))


def test_scores_need_at_least_one_image() -> None:
    from cleancut.errors import InvalidParameter

    with pytest.raises(InvalidParameter):
        Scores().summary()
    assert ImageScore  # exported for callers that keep per-image rows


# --- the command, end to end ------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The golden JPEGs with the reference tool's hard u2netp masks as "ground truth"."""
    root = tmp_path_factory.mktemp("tiny-eval")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for photo in sorted((GOLDEN / "inputs").glob("*.jpg")):
        shutil.copy(photo, root / "images" / photo.name)
        mask = GOLDEN / "expected" / f"{photo.stem}.u2netp.ppm_mask.png"
        shutil.copy(mask, root / "masks" / f"{photo.stem}.png")
    Image.new("RGB", (8, 8)).save(root / "images" / "no-mask.jpg")  # counted, not scored
    return root


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLEANCUT, *args], capture_output=True, text=True, timeout=300, env=dict(os.environ)
    )


def test_eval_command_scores_a_dataset(
    tiny_dataset: Path, tmp_path: Path, model_dir: Path
) -> None:
    out = tmp_path / "eval.json"
    proc = run("eval", str(tiny_dataset), "--model", "u2netp", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "max Fβ" in proc.stdout and "u2netp" in proc.stdout
    report = json.loads(out.read_text())
    n = len(list((tiny_dataset / "masks").iterdir()))
    assert report["pairs"] == n and report["images_without_mask"] == 1
    m = report["models"]["u2netp"]
    for key in ("max_f", "mae", "iou", "s_measure", "count", "elapsed_s", "ms_per_image"):
        assert key in m
    assert m["count"] == n
    # the "ground truth" is u2netp's own hardened mask: near-perfect agreement
    assert m["max_f"] > 0.97
    assert m["mae"] < 0.03
    assert m["iou"] > 0.9
    assert m["s_measure"] > 0.9
    assert len(m["sha256"]) == 64


def test_eval_limit_and_json_on_stdout(tiny_dataset: Path, model_dir: Path) -> None:
    proc = run("eval", str(tiny_dataset), "-m", "u2netp", "--limit", "1", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["pairs"] == 1 and report["models"]["u2netp"]["count"] == 1


def test_eval_errors_are_one_line(tmp_path: Path, tiny_dataset: Path, model_dir: Path) -> None:
    (tmp_path / "images").mkdir()
    proc = run("eval", str(tmp_path), "-m", "u2netp")
    assert proc.returncode == 1
    assert proc.stderr.startswith("cleancut: error: ") and "masks" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run("eval", str(tiny_dataset), "-m", "no-such-model")
    assert proc.returncode == 1 and "unknown model" in proc.stderr
