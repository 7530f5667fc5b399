"""Static checks that an exported graph will parse in TensorRT on the Jetson releases we target.

Targets: JetPack 5.1.x (TensorRT 8.5.2), JetPack 6.0 (TensorRT 8.6.2), JetPack 6.1/6.2 (TensorRT 10.3).
`SUPPORTED_OPS` is the subset of the ONNX-TensorRT operator matrix that our graphs may use, with the
restrictions that matter to us. Source: onnx/onnx-tensorrt `docs/operators.md` as of TensorRT 8.4
(commit 009d6541, opset <= 13 there; every operator below is "Y" with FP32/FP16), which the 8.5, 8.6
and 10.x parsers extend (8.5: opset 17; 10.x: opsets 9-20) without removing any of these. Keep this
list short on purpose: an operator joins it only when we use it and have checked the matrix.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

FP16_MAX = 65504.0
FP16_TINY = 2.0 ** -24   # smallest fp16 subnormal: smaller nonzero constants become 0
TARGET_TENSORRT = {"JetPack 5.1.x": "8.5.2", "JetPack 6.0": "8.6.2", "JetPack 6.1/6.2": "10.3"}

# op type -> restriction we rely on (checked by `check_graph` where it can be checked statically)
SUPPORTED_OPS = {
    "Add": "", "And": "BOOL", "Cast": "to TensorRT types only", "Clip": "", "Concat": "",
    "Constant": "", "ConstantOfShape": "FP32 value in TensorRT 8.4", "Conv": "2D; weights are initializers",
    "DepthToSpace": "", "Div": "", "Equal": "", "Exp": "", "Expand": "", "Flatten": "", "Gather": "",
    "GatherElements": "", "Greater": "", "Identity": "", "Log": "", "MatMul": "FP32/FP16", "MaxPool": "2D, no Indices output",
    "Mul": "", "Not": "BOOL", "Or": "BOOL", "Range": "integer inputs", "ReduceL2": "", "ReduceSum": "",
    "Relu": "", "Reshape": "", "Resize": "linear/nearest; half_pixel", "Shape": "", "Sigmoid": "",
    "Slice": "axes are constants", "Softmax": "", "Sqrt": "", "Squeeze": "axes are constants", "Sub": "",
    "TopK": "K is a constant (<= 3840)", "Transpose": "", "Unsqueeze": "axes are constants", "Where": "",
}
TOPK_MAX = 3840
RESIZE_MODES = {b"linear", b"nearest"}
RESIZE_COORDINATES = {b"half_pixel", b"pytorch_half_pixel", b"asymmetric", b"align_corners"}


def _constant_values(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def fp16_overflows(model) -> list[str]:
    """Names of float initializers/constants that fp16 cannot hold: finite |x| > 65504, NaN, or a
    nonzero |x| < 2^-24 (an epsilon that would silently become 0).

    +-inf is allowed: it is exact in fp16 and is how the graph masks logits (`Where(mask, x, -inf)`);
    every softmax row keeps at least one finite entry, so no row becomes NaN."""
    bad = []
    for name, value in _constant_values(model).items():
        if value.dtype.kind != "f" or value.size == 0:
            continue
        finite = value[np.isfinite(value)]
        tiny = (finite != 0) & (np.abs(finite) < FP16_TINY)
        if np.isnan(value).any() or (finite.size and np.abs(finite).max() > FP16_MAX) or tiny.any():
            bad.append(name)
    return bad


def check_graph(model_or_path) -> list[str]:
    """All problems found (empty list: the graph should parse in every targeted TensorRT)."""
    import onnx

    model = onnx.load(str(model_or_path)) if isinstance(model_or_path, (str, Path)) else model_or_path
    constants = _constant_values(model)
    problems = [f"op {op!r} is not in the TensorRT-supported list ({sorted(SUPPORTED_OPS)[:3]}...)"
                for op in sorted({n.op_type for n in model.graph.node} - set(SUPPORTED_OPS))]
    for node in model.graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "TopK":
            k = constants.get(node.input[1])
            if k is None:
                problems.append(f"{node.name}: TopK K must be a constant")
            elif int(k.reshape(-1)[0]) > TOPK_MAX:
                problems.append(f"{node.name}: TopK K={int(k.reshape(-1)[0])} exceeds {TOPK_MAX}")
        elif node.op_type == "Resize":
            mode = attrs["mode"].s if "mode" in attrs else b"nearest"
            coords = attrs["coordinate_transformation_mode"].s if "coordinate_transformation_mode" in attrs else b"half_pixel"
            if mode not in RESIZE_MODES or coords not in RESIZE_COORDINATES:
                problems.append(f"{node.name}: Resize mode {mode!r} / {coords!r} unsupported")
        elif node.op_type == "Conv" and node.input[1] not in constants:
            problems.append(f"{node.name}: Conv weights must be an initializer")
        elif node.op_type in ("Slice", "Squeeze", "Unsqueeze"):
            axes_input = {"Slice": 3, "Squeeze": 1, "Unsqueeze": 1}[node.op_type]
            if len(node.input) > axes_input and node.input[axes_input] and node.input[axes_input] not in constants:
                problems.append(f"{node.name}: {node.op_type} axes must be constant")
        elif node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
            problems.append(f"{node.name}: MaxPool Indices output is unsupported")
    problems += [f"constant {name!r} is not representable in fp16 (overflow, NaN or underflow to 0)"
                 for name in fp16_overflows(model)]
    return problems
