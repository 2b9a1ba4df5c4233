#!/usr/bin/env python3
"""Make a block-quantized ONNX model loadable by tract (and onnxruntime).

The demo models ship int8 weights behind DequantizeLinear nodes with a `block_size`
attribute (opset 21), which neither tract nor onnxruntime load, and the SFace file still
declares its initializers and some computed tensors as graph inputs. This script:

  1. folds every DequantizeLinear (and the Reshape that follows it) whose inputs are all
     constants into a plain float32 initializer, computing (q - zero_point) * scale with the
     scale repeated block_size times along the quantized axis;
  2. keeps as graph inputs only the tensors nothing else provides (the image input);
  3. drops the stale value_info and declares opset 13, which every remaining op supports.

The weights stay exactly the values the int8 file encodes, so the prepared model computes
what the shipped model computes. Output is deterministic for a given input and onnx version.

Usage: prepare_onnx.py IN.onnx OUT.onnx
"""
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper


def dequantize(q, scale, zero_point, axis, block_size):
    q = q.astype(np.float32)
    zp = np.zeros_like(scale) if zero_point is None else zero_point.astype(np.float32)
    if q.ndim == 0 or scale.size == 1:
        return ((q - zp.reshape(())) * scale.reshape(())).astype(np.float32)
    axis = axis % q.ndim
    if block_size and block_size > 0:
        scale = np.repeat(scale, block_size, axis=axis)
        zp = np.repeat(zp, block_size, axis=axis)
        index = [slice(None)] * q.ndim
        index[axis] = slice(0, q.shape[axis])
        scale, zp = scale[tuple(index)], zp[tuple(index)]
    else:  # per-axis: 1-D scale along `axis`
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((q - zp) * scale).astype(np.float32)


def reshape(data, shape):
    shape = [data.shape[i] if d == 0 else int(d) for i, d in enumerate(shape)]
    return data.reshape(shape)


def fold(model):
    graph = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    kept = []
    folded = 0
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if node.op_type == "DequantizeLinear" and all(i in consts for i in inputs):
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            zp = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else None
            consts[node.output[0]] = dequantize(
                consts[node.input[0]], consts[node.input[1]].astype(np.float32), zp,
                attrs.get("axis", 1), attrs.get("block_size", 0))
            folded += 1
        elif node.op_type == "Reshape" and all(i in consts for i in inputs):
            consts[node.output[0]] = reshape(consts[node.input[0]], consts[node.input[1]])
            folded += 1
        else:
            kept.append(node)
    used = {i for n in kept for i in n.input} | {o.name for o in graph.output}
    produced = {o for n in kept for o in n.output}
    new_inits = [numpy_helper.from_array(np.ascontiguousarray(v), name)
                 for name, v in consts.items() if name in used]
    inputs = [i for i in graph.input
              if i.name in used and i.name not in consts and i.name not in produced]
    new_graph = helper.make_graph(kept, graph.name, inputs, list(graph.output), new_inits)
    out = helper.make_model(new_graph, opset_imports=[helper.make_opsetid("", 13)],
                            producer_name="gestalt-edge prepare_onnx")
    out.ir_version = 7
    onnx.checker.check_model(out)
    return out, folded


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    model, folded = fold(onnx.load(src))
    if any(n.op_type in ("DequantizeLinear", "QuantizeLinear") for n in model.graph.node):
        sys.exit(f"{src}: quantization nodes remain that are not constant-foldable")
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(model.SerializeToString())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dst)
    print(f"{os.path.basename(dst)}: folded {folded} constant nodes, "
          f"inputs {[i.name for i in model.graph.input]}")


if __name__ == "__main__":
    main()
