"""A float32 copy of a float16 ONNX graph, built locally and deterministically.

Why: ONNX Runtime's CPU provider has no float16 kernels for most operators on x86, so a float16
graph runs as float32 kernels wrapped in hundreds of Cast nodes that it inserts itself, and loses
the Conv+Relu fusion. ISNet as published on the npm registry (``/models/medium``) is such a graph;
its float32 copy computes the same masks faster (figures in docs/models.md).

The recipe, all of it: every float16 tensor (initializers, Constant values, any tensor attribute)
becomes float32 with the same values; every float16 type (inputs, outputs, value_info) becomes
float32; a Cast to float16 becomes a Cast to float32; then every Cast that now turns a float32
tensor into float32 is dropped, its consumers reading its input instead (a graph output keeps its
name: the producer writes it directly). Nothing else changes, node order included, so the same input
bytes give the same output bytes for the same ``onnx`` version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelLoadFailed, QuantizeDependencyMissing

__all__ = ["RECIPE", "to_float32", "onnx_version"]

RECIPE = "float16 -> float32: tensors widened, Casts to float16 retargeted, no-op Casts removed"


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise QuantizeDependencyMissing(
            "building the float32 copy of a float16 model needs the onnx package; "
            "install it with: pip install 'cleancut[quantize]' (or: pip install onnx)"
        ) from exc
    return onnx


def onnx_version() -> str:
    """The version of the onnx package that builds the copy (recorded in the store's metadata)."""
    return str(_onnx().__version__)


def to_float32(source: Path, dest: Path) -> int:
    """Write the float32 copy of the float16 ONNX model ``source`` to ``dest``.

    Returns the number of tensors widened. Raises :class:`~cleancut.errors.ModelLoadFailed` if
    ``source`` is not an ONNX model with float16 tensors.
    """
    onnx = _onnx()
    from onnx import numpy_helper

    try:
        model = onnx.load(str(source))
    except Exception as exc:  # onnx raises protobuf's DecodeError and others
        raise ModelLoadFailed(f"{source} is not an ONNX model: {exc}") from exc
    f16, f32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    graph = model.graph
    widened = 0

    def widen(tensor: Any) -> None:
        nonlocal widened
        if tensor.data_type == f16:
            values = numpy_helper.to_array(tensor).astype("float32")
            tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
            widened += 1

    for tensor in graph.initializer:
        widen(tensor)
    for node in graph.node:
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == f16:
                    attr.i = f32
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                widen(attr.t)
            elif attr.type == onnx.AttributeProto.GRAPH:  # pragma: no cover - none in ISNet
                raise ModelLoadFailed(f"{source}: subgraphs ({node.op_type}) are not supported")
    for info in [*graph.input, *graph.output, *graph.value_info]:
        if info.type.tensor_type.elem_type == f16:
            info.type.tensor_type.elem_type = f32
    if widened == 0:
        raise ModelLoadFailed(f"{source} has no float16 tensors; nothing to convert")

    _drop_noop_casts(graph, _float32_names(onnx, model), f32)
    onnx.save(model, str(dest))
    return widened


def _float32_names(onnx: Any, model: Any) -> set[str]:
    """Names of the values that are float32, from ONNX shape inference (used only to read the
    types: the saved graph keeps its own value_info)."""
    f32 = onnx.TensorProto.FLOAT
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # inference is a help here, not a requirement: fall back to what is declared
        inferred = model.graph
    names = {t.name for t in inferred.initializer if t.data_type == f32}
    for info in [*inferred.input, *inferred.output, *inferred.value_info]:
        if info.type.tensor_type.elem_type == f32:
            names.add(info.name)
    return names


def _drop_noop_casts(graph: Any, is_float32: set[str], f32: int) -> None:
    """Remove every Cast to float32 of a float32 value (in any node order)."""
    outputs = {o.name for o in graph.output}
    fixed = {i.name for i in graph.input} | {t.name for t in graph.initializer}

    def no_op(node: Any) -> bool:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        return bool(node.op_type == "Cast" and to == f32 and node.input[0] in is_float32)

    source = {node.output[0]: node.input[0] for node in graph.node if no_op(node)}

    def root(name: str) -> str:  # through any chain of removed Casts
        while name in source:
            name = source[name]
        return name

    # a removed Cast that wrote a graph output: its root's producer writes that name instead
    writes: dict[str, str] = {}
    kept_casts: set[str] = set()
    for dst in sorted(source):
        if dst not in outputs:
            continue
        origin = root(dst)
        if origin in fixed or origin in outputs or origin in writes:
            kept_casts.add(dst)  # nothing to rename: keep this Cast
        else:
            writes[origin] = dst
    keep = [n for n in graph.node if not no_op(n) or n.output[0] in kept_casts]
    for node in keep:
        for i, name in enumerate(node.input):
            name = root(name)
            node.input[i] = writes.get(name, name)
        for i, name in enumerate(node.output):
            node.output[i] = writes.get(name, name)
    del graph.node[:]
    graph.node.extend(keep)
    # value_info of names that no longer exist would only confuse shape inference
    live = {n for node in keep for n in (*node.input, *node.output)}
    for info in [v for v in graph.value_info if v.name not in live]:
        graph.value_info.remove(info)
