"""A custom model is fed the input size it declares, width and height the right way round.

The model is built here with the ``onnx`` package: tiny, non-square (input 1×3×48×32, that is
H=48, W=32), the mean over the colour channels as its "mask". A square model would hide a
transposed (width, height).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cleancut.config import Settings
from cleancut.engine import Engine, Options
from cleancut.models.pull import import_custom
from cleancut.models.store import ModelStore

from .imagetools import input_bytes, open_image

onnx = pytest.importorskip("onnx", reason="building the test model needs the onnx package")

HEIGHT, WIDTH = 48, 32
NAME = "tall-net"


def _tall_model(path: Path) -> Path:
    from onnx import TensorProto, helper

    node = helper.make_node("ReduceMean", ["image"], ["mask"], axes=[1], keepdims=1)
    graph = helper.make_graph(
        [node],
        "tall",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, HEIGHT, WIDTH])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, HEIGHT, WIDTH])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_a_non_square_custom_model_records_width_then_height(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    installed = import_custom(store, NAME, _tall_model(tmp_path / "tall.onnx"))
    assert installed.spec.input_size == (WIDTH, HEIGHT)
    assert ModelStore(store.model_dir).spec(NAME).input_size == (WIDTH, HEIGHT)  # from its json


def test_a_non_square_custom_model_runs_through_the_engine(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    import_custom(store, NAME, _tall_model(tmp_path / "tall.onnx"))
    photo = input_bytes("chelsea.jpg")
    settings = Settings(model_dir=store.model_dir, models=[NAME], default_model=NAME)
    result = Engine(settings).process(photo, Options(), model=NAME)
    assert result.model == NAME
    assert result.image.size == open_image(photo).size
    assert result.alpha.size == open_image(photo).size
