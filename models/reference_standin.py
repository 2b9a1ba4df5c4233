#!/usr/bin/env python3
"""A stand-in for the GestaltMatcher-Arc reference models, built the way they are built, and
the golden that checks models/export_reference.py on it.

The reference's fine-tuned models are whole-module PyTorch pickles: an ONNX iResNet base
converted with onnx2torch, then a fully connected layer and a 1-d batch norm giving the 512-d
representation, then dropout and a linear classifier; forward returns (logits,
representation). The third ensemble member is an iResNet ONNX file used as is. Their weights
are released to approved researchers only, so this script makes small models of the same
construction with seeded random weights and non-trivial batch-norm statistics:

- a small ONNX base written with the onnx helper API (strided Conv + BatchNormalization +
  PRelu, one residual Add, Flatten), converted with onnx2torch;
- `StandInArcFace`: that base, Linear + BatchNorm1d to 512, Dropout + Linear classifier;
  saved whole with torch.save (two of them, m0 and m1, different seeds);
- an ONNX file standing in for the third model: the same kind of base with the Gemm and
  BatchNormalization written into the graph (output 512, used as is).

It then runs export_reference.py on the two pickles and the ONNX file (detector: any
detector ONNX, e.g. the demo YuNet), and writes the golden into OUT (default
tests/golden/reference/):

- bundle.toml, m0.onnx, m1.onnx, glint.onnx: the exporter's manifest and models (the
  detector file is not kept: the test puts the demo detector beside the manifest);
- input.png: a fixed 112x112 RGB crop (gradients and seeded noise);
- torch.json: torch's 512-d representation of that crop for each model, with the input
  computed as the reference does: RGB, (x/255 - 0.5)/0.5, NCHW; for the two pickles from the
  pickles loaded back from disk, for the ONNX file from its onnx2torch conversion.

Deterministic: the same versions (models/requirements-reference.txt) give the same bytes.

    python3 models/reference_standin.py --detector models/demo/yunet.onnx [--out DIR]
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx2torch import convert
from PIL import Image

OPSET = 13
WIDTH = 512
CLASSES = 10
HERE = os.path.dirname(os.path.abspath(__file__))


class StandInArcFace(torch.nn.Module):
    """Base (onnx2torch) -> Linear + BatchNorm1d (the representation) -> Dropout + Linear."""

    def __init__(self, base, features, classes):
        super().__init__()
        self.base = base
        self.fc = torch.nn.Linear(features, WIDTH)
        self.features = torch.nn.BatchNorm1d(WIDTH)
        self.dropout = torch.nn.Dropout(p=0.2)
        self.classifier = torch.nn.Linear(WIDTH, classes)

    def forward(self, x):
        representation = self.features(self.fc(torch.flatten(self.base(x), 1)))
        logits = self.classifier(self.dropout(representation))
        return logits, representation


def bn_params(rng, prefix, n):
    """Initializers of a BatchNormalization with non-trivial statistics."""
    return [
        numpy_helper.from_array(rng.uniform(0.5, 1.5, n).astype(np.float32), prefix + "_gamma"),
        numpy_helper.from_array(rng.normal(0, 0.1, n).astype(np.float32), prefix + "_beta"),
        numpy_helper.from_array(rng.normal(0, 0.2, n).astype(np.float32), prefix + "_mean"),
        numpy_helper.from_array(rng.uniform(0.5, 2.0, n).astype(np.float32), prefix + "_var"),
    ]


def base_graph(seed, head):
    """A small iResNet-like ONNX graph: input [1,3,112,112] -> strided convs with BN and
    PReLU and one residual Add -> Flatten ([1, 32]); with `head`, then Gemm + BN to 512
    (the shape of an insightface iResNet file, whose output is the embedding)."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    # (name, in, out, stride): 112 -> 56 -> 56 (residual) -> 28 -> 14 -> 7 -> 4 -> 2
    layers = [("c1", 3, 16, 2), ("c2", 16, 16, 1), ("c3", 16, 16, 2), ("c4", 16, 16, 2),
              ("c5", 16, 16, 2), ("c6", 16, 8, 2), ("c7", 8, 8, 2)]
    x = "input"
    skip = None
    for name, cin, cout, stride in layers:
        w = rng.normal(0, np.sqrt(2.0 / (9 * cin)), (cout, cin, 3, 3)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, name + "_w"))
        nodes.append(helper.make_node("Conv", [x, name + "_w"], [name + "_conv"],
                                      kernel_shape=[3, 3], strides=[stride, stride],
                                      pads=[1, 1, 1, 1]))
        inits += bn_params(rng, name + "_bn", cout)
        nodes.append(helper.make_node(
            "BatchNormalization",
            [name + "_conv"] + [name + "_bn_" + p for p in ("gamma", "beta", "mean", "var")],
            [name + "_bn"], epsilon=1e-5))
        slope = rng.uniform(0.1, 0.3, (cout, 1, 1)).astype(np.float32)
        inits.append(numpy_helper.from_array(slope, name + "_slope"))
        nodes.append(helper.make_node("PRelu", [name + "_bn", name + "_slope"], [name + "_act"]))
        x = name + "_act"
        if name == "c1":
            skip = x
        if name == "c2":
            nodes.append(helper.make_node("Add", [x, skip], ["res"]))
            x = "res"
    nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1))
    features = 8 * 2 * 2
    out, out_width = "flat", features
    if head:
        w = rng.normal(0, np.sqrt(1.0 / features), (WIDTH, features)).astype(np.float32)
        b = rng.normal(0, 0.05, WIDTH).astype(np.float32)
        inits += [numpy_helper.from_array(w, "fc_w"), numpy_helper.from_array(b, "fc_b")]
        nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["fc"], transB=1))
        inits += bn_params(rng, "features", WIDTH)
        nodes.append(helper.make_node(
            "BatchNormalization", ["fc"] + ["features_" + p for p in ("gamma", "beta", "mean", "var")],
            ["embedding"], epsilon=1e-5))
        out, out_width = "embedding", WIDTH
    graph = helper.make_graph(
        nodes, "standin_iresnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, out_width])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="gestalt-edge reference_standin")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model, features


def standin_pickle(seed, path):
    """Builds and saves (whole) one StandInArcFace."""
    base_model, features = base_graph(seed, head=False)
    torch.manual_seed(seed)
    model = StandInArcFace(convert(base_model), features, CLASSES)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn = model.features
        bn.weight.copy_(torch.rand(WIDTH, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(WIDTH, generator=g) * 0.1)
        bn.running_mean.copy_(torch.randn(WIDTH, generator=g) * 0.3)
        bn.running_var.copy_(torch.rand(WIDTH, generator=g) * 1.5 + 0.5)
        bn.num_batches_tracked.fill_(1000)
    model.eval()
    torch.save(model, path)


def golden_image():
    """A fixed 112x112 RGB crop: smooth gradients, a bright oval and seeded noise."""
    rng = np.random.default_rng(2024)
    y, x = np.mgrid[0:112, 0:112].astype(np.float64)
    oval = np.exp(-(((x - 56) / 30) ** 2 + ((y - 60) / 40) ** 2))
    rgb = np.stack([60 + 120 * oval + 0.5 * x, 40 + 110 * oval + 0.4 * y, 30 + 90 * oval + 0.2 * (x + y)], -1)
    rgb += rng.normal(0, 12, rgb.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def reference_input(rgb):
    """The reference's preprocessing of an aligned RGB crop: (x/255 - 0.5)/0.5, NCHW."""
    t = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1).unsqueeze(0)
    return (t / 255.0 - 0.5) / 0.5


def shortest(t):
    """The values of a float32 tensor as the shortest decimals that read back to the same f32."""
    return [float(str(v)) for v in t.numpy().astype(np.float32)]


HELPERS = '''
import torch


class Wrapped(torch.nn.Module):
    """A model whose class lives outside the exporter's reach (cut: a narrower representation)."""

    def __init__(self, inner, cut=None):
        super().__init__()
        self.inner = inner
        self.cut = cut

    def forward(self, x):
        logits, rep = self.inner(x)
        return logits, (rep if self.cut is None else rep[:, : self.cut])


class Three(Wrapped):
    def forward(self, x):
        logits, rep = self.inner(x)
        return logits, rep, rep
'''


def check_failures(work, m0, glint, detector):
    """Runs the exporter on broken inputs: each must fail with its own exit code and a
    message naming the problem; a class found through --class-path / --class-module works."""
    import importlib

    helpers = os.path.join(work, "helpers")
    os.makedirs(helpers)
    with open(os.path.join(helpers, "standin_helpers.py"), "w") as f:
        f.write(HELPERS)
    sys.path.insert(0, helpers)
    h = importlib.import_module("standin_helpers")
    model = torch.load(m0, map_location="cpu", weights_only=False)
    cases = {}

    def save(name, obj):
        path = os.path.join(work, name)
        torch.save(obj, path)
        return path

    cases["outside.pth"] = save("outside.pth", h.Wrapped(model))
    cases["narrow.pth"] = save("narrow.pth", h.Wrapped(model, cut=256))
    cases["three.pth"] = save("three.pth", h.Three(model))
    cases["weights.pth"] = save("weights.pth", model.state_dict())
    # a class saved from a script run directly pickles as __main__.Wrapped
    import __main__
    main_cls = type("Wrapped", (h.Wrapped,), {"__module__": "__main__"})
    __main__.Wrapped = main_cls
    cases["main.pth"] = save("main.pth", main_cls(model))
    del __main__.Wrapped
    junk = os.path.join(work, "junk.pth")
    junk_onnx = os.path.join(work, "junk.onnx")
    for path in (junk, junk_onnx):
        with open(path, "wb") as f:
            f.write(b"not a model")
    trunk = os.path.join(work, "trunk.onnx")
    onnx.save(base_graph(4, head=False)[0], trunk)

    def export(embedder, *extra):
        out = os.path.join(work, "failing")
        cmd = [sys.executable, os.path.join(HERE, "export_reference.py"), "--embedder", embedder,
               "--detector", detector, "--detector-kind", "yunet", "--out", out, *extra]
        r = subprocess.run(cmd, capture_output=True, text=True)
        return r.returncode, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""

    expected = [
        (("m0=" + os.path.join(work, "absent.pth"),), 3, "no such file"),
        (("m0=" + junk,), 4, "not a loadable PyTorch file"),
        (("m0=" + cases["weights.pth"],), 4, "not a whole module"),
        (("m0=" + cases["outside.pth"],), 4, "--class-path"),
        (("m0=" + cases["three.pth"], "--class-path", helpers), 4, "(logits, representation)"),
        (("m0=" + cases["narrow.pth"], "--class-path", helpers), 5, "[1, 256]"),
        (("glint=" + trunk,), 5, "[1, 32]"),
        (("glint=" + junk_onnx,), 4, "not a loadable ONNX model"),
        (("m0=" + cases["outside.pth"], "--class-path", helpers), 0, ""),
        (("m0=" + cases["main.pth"], "--class-path", helpers, "--class-module", "standin_helpers"), 0, ""),
        (("m0", ), 2, "NAME=FILE"),
    ]
    for args, code, fragment in expected:
        got, message = export(*args)
        shown = " ".join(os.path.basename(x) if os.sep in x else x for x in args)
        if got != code or fragment not in message:
            raise SystemExit(f"exporter on {shown}: exit {got} ({message}); expected {code} ({fragment})")
        print(f"  {shown}: exit {got}" + (": " + message.split(": ", 2)[-1] if code else ""))


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detector", required=True, help="detector ONNX for the manifest (e.g. the demo YuNet)")
    ap.add_argument("--detector-kind", default="yunet", choices=["yunet", "retinaface"])
    ap.add_argument("--out", default=os.path.join(HERE, "..", "tests", "golden", "reference"))
    a = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    # the class must pickle as reference_standin.StandInArcFace, not __main__.StandInArcFace
    # (no __pycache__ left in models/ by importing this file as a module)
    sys.dont_write_bytecode = True
    import reference_standin as mod

    os.makedirs(a.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        m0, m1, glint = (os.path.join(work, f) for f in ("m0.pth", "m1.pth", "standin-glint.onnx"))
        mod.standin_pickle(1, m0)
        mod.standin_pickle(2, m1)
        onnx.save(mod.base_graph(3, head=True)[0], glint)
        print("the exporter on broken inputs:")
        mod.check_failures(work, m0, glint, a.detector)
        bundle = os.path.join(work, "bundle")
        cmd = [sys.executable, os.path.join(HERE, "export_reference.py"),
               "--embedder", "m0=" + m0, "--embedder", "m1=" + m1, "--embedder", "glint=" + glint,
               "--detector", a.detector, "--detector-kind", a.detector_kind,
               "--name", "reference-standin", "--version", "1",
               "--description", "stand-in built like the reference models (seeded random weights; not clinical)",
               "--out", bundle]
        subprocess.run(cmd, check=True)

        rgb = golden_image()
        x = reference_input(rgb)
        golden = {"input": "input.png", "width": WIDTH, "preprocessing": "RGB, (x/255 - 0.5)/0.5, NCHW",
                  "torch": torch.__version__, "models": {}}
        with torch.no_grad():
            for name, path in (("m0", m0), ("m1", m1)):
                model = torch.load(path, map_location="cpu", weights_only=False).eval()
                golden["models"][name] = shortest(model(x)[1][0])
            net = convert(onnx.load(glint)).eval()
            golden["models"]["glint"] = shortest(net(x)[0])

        Image.fromarray(rgb, "RGB").save(os.path.join(a.out, "input.png"), optimize=True)
        for f in ("bundle.toml", "m0.onnx", "m1.onnx", "glint.onnx"):
            shutil.copyfile(os.path.join(bundle, f), os.path.join(a.out, f))
        golden["sha256"] = {f: sha256(os.path.join(a.out, f)) for f in ("input.png", "m0.onnx", "m1.onnx", "glint.onnx")}
        with open(os.path.join(a.out, "torch.json"), "w") as f:
            json.dump(golden, f, indent=1)
            f.write("\n")
    print("wrote", os.path.normpath(a.out))


if __name__ == "__main__":
    main()
