#!/usr/bin/env python3
"""Reference outputs of the synthesised graphs from onnxruntime (the golden files that
tests/perf_models.rs compares tract against).

Usage: python3 models/perf/ort_golden.py MODEL.onnx OUT.json
The input is the deterministic pattern tests/perf_models.rs builds too:
x[i] = ((i * 2654435761) mod 2**32) / 2**32 * 2 - 1, shaped as the model's input.
The JSON holds, per output: shape, sum, sum of squares, the dot product with the same
pattern over the flattened output (a sign flip, a permutation or a shifted block of values
changes it), the first 16 values and 1024 values at evenly spaced indices across the whole
output (every prior of a detector head is within reach of one).
"""
import json
import sys

import numpy as np
import onnxruntime as ort


def pattern(shape):
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.uint64)
    v = (i * np.uint64(2654435761)) % np.uint64(2**32)
    return (v.astype(np.float64) / 2**32 * 2 - 1).astype(np.float32).reshape(shape)


def strided(n, count=1024):
    """The sampled indices: count evenly spaced over n values (all of them when n <= count)."""
    if n <= count:
        return list(range(n))
    return [(k * n) // count + (k % 7) for k in range(count)]


def main():
    model, out = sys.argv[1], sys.argv[2]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    x = pattern([d if isinstance(d, int) else 1 for d in inp.shape])
    outs = s.run(None, {inp.name: x})
    result = {
        "onnxruntime": ort.__version__,
        "input": inp.name,
        "input_shape": list(x.shape),
        "outputs": [
            {
                "name": o.name,
                "shape": list(v.shape),
                "sum": float(v.astype(np.float64).sum()),
                "sum_sq": float((v.astype(np.float64) ** 2).sum()),
                "dot": float(
                    (v.astype(np.float64).reshape(-1) * pattern([v.size]).astype(np.float64)).sum()
                ),
                "first": [float(a) for a in v.reshape(-1)[:16]],
                "strided": [float(v.reshape(-1)[i]) for i in strided(v.size)],
            }
            for o, v in zip(s.get_outputs(), outs)
        ],
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
