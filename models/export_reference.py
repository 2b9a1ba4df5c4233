#!/usr/bin/env python3
"""Turns the GestaltMatcher-Arc reference models into a gestalt-edge model bundle.

Workstation tool for researchers who hold the reference weights (Python 3.11 or newer, torch
+ onnx2torch, see models/requirements-reference.txt; not needed on a device, in CI or for the
demo).

Each `--embedder NAME=FILE` is one ensemble member, in the order given (the reference's order:
the two fine-tuned models, then the glint360k iResNet-100):

- FILE.pth / .pt: a whole-module PyTorch pickle as the reference saves it (an onnx2torch base,
  a fully connected layer and a batch norm giving the representation, dropout and a
  classifier; forward returns (logits, representation)). It is exported to ONNX with the
  representation as the only output `embedding` (input 1x3x112x112, opset 13 by default), and
  the export is converted back with onnx2torch and compared with the pickle;
- FILE.onnx: used as is (glint360k_r100.onnx); its output width is checked.

The detector ONNX (`--detector`, RetinaFace by default, or YuNet) is copied beside them, and
OUT/bundle.toml is written: RGB input normalised as (x/255 - 0.5)/0.5 (mean 127.5, scale
1/127.5), width 512, the four test-time views (flip, gray) in the reference order, and the
sha256 of every file. `gestalt-edge model compile --bundle OUT/bundle.toml` and `model
quantize` take it as is.

    python3 models/export_reference.py \\
        --embedder r50=FINETUNED_R50.pth --embedder r100=FINETUNED_R100.pth \\
        --embedder glint=glint360k_r100.onnx \\
        --detector retinaface.onnx --out bundle/

Pickles need the classes they were saved with: onnx2torch's (installed) and the model class of
the code that trained them. When that code is not importable, pass its folder with
`--class-path DIR`; a class saved from a script run directly (`__main__.X`) is looked up in the
modules named by `--class-module MODULE`. Loading a pickle runs code from it: export only
files you trust.

Exit codes: 0 written; 1 a file could not be written; 2 bad arguments (or torch, onnx or
onnx2torch not installed); 3 a named file is missing or unreadable; 4 a file without the
expected structure (not loadable, a class that cannot be found, a state_dict instead of a
whole module, a forward that does not return (logits, representation), an ONNX file without
one image input); 5 an output of the wrong width; 6 the export failed or does not reproduce
the pickle's representation.
"""

import argparse
import hashlib
import importlib
import json
import os
import pickle
import re
import sys
import tempfile
import tomllib
import warnings

OK, WRITE, USAGE, MISSING, STRUCTURE, WIDTH, EXPORT = 0, 1, 2, 3, 4, 5, 6

# The reference's input: RGB, (x/255 - 0.5)/0.5 = (x - 127.5) / 127.5.
MEAN = 127.5
SCALE = 1.0 / 127.5
SIZE = 112
REFERENCE_VIEWS = [[False, False], [False, True], [True, False], [True, True]]
# Detector defaults per kind (the RetinaFace values are the reference's).
DETECTORS = {
    "retinaface": {"mean": [104.0, 117.0, 123.0], "score_threshold": 0.02, "nms_iou": 0.4},
    "yunet": {"mean": [0.0, 0.0, 0.0], "score_threshold": 0.6, "nms_iou": 0.3},
}
# Agreement the round trip (exported ONNX back through onnx2torch vs the pickle) must reach.
MIN_COSINE = 0.99999
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Failure(Exception):
    """An error with its exit code; the message names the file and what is wrong."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def readable(path, what):
    if not os.path.isfile(path):
        raise Failure(MISSING, f"{path}: {what}: no such file")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise Failure(MISSING, f"{path}: {what}: cannot read: {e.strerror}")


def write_atomic(path, data=None, copy_from=None):
    """Writes bytes (or copies a file) to a temporary name in the same folder, then renames."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".export-")
        try:
            with os.fdopen(fd, "wb") as out:
                if copy_from is None:
                    out.write(data)
                else:
                    with open(copy_from, "rb") as src:
                        for block in iter(lambda: src.read(1 << 20), b""):
                            out.write(block)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as e:
        raise Failure(WRITE, f"{path}: cannot write: {e.strerror or e}")


# ---------------------------------------------------------------- loading a whole-module pickle


def remapping_pickle_module(class_modules):
    """A pickle module for torch.load whose unpickler, when a class cannot be found where the
    pickle says, looks for a class of that name in `class_modules` (imported modules)."""

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError) as first:
                for m in class_modules:
                    if hasattr(m, name):
                        return getattr(m, name)
                raise first

    class Module:
        pass

    mod = Module()
    mod.Unpickler = Unpickler
    mod.load = pickle.load
    mod.dump = pickle.dump
    mod.Pickler = pickle.Pickler
    mod.__name__ = "pickle"
    return mod


def load_pickle(torch, path, class_modules):
    """The whole nn.Module saved in `path`, in eval mode."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False,
                         pickle_module=remapping_pickle_module(class_modules))
    except (ModuleNotFoundError, AttributeError) as e:
        raise Failure(STRUCTURE, (
            f"{path}: the pickle needs a class that cannot be found ({e}); put the folder of the "
            "code that defines it on --class-path, or name the module that has it with "
            "--class-module (onnx2torch must be installed: models/requirements-reference.txt)"))
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise Failure(STRUCTURE, f"{path}: not a loadable PyTorch file: {first}")
    except OSError as e:
        raise Failure(MISSING, f"{path}: cannot read: {e.strerror or e}")
    if isinstance(obj, dict):
        keys = ", ".join(list(map(str, obj.keys()))[:3])
        raise Failure(STRUCTURE, (
            f"{path}: holds a dict ({keys}, ...), not a whole module: this tool takes the "
            "whole-module pickles the reference saves (torch.save(model)), not a state_dict"))
    if not isinstance(obj, torch.nn.Module):
        raise Failure(STRUCTURE, f"{path}: holds a {type(obj).__name__}, not a torch.nn.Module")
    return obj.eval()


def representation(out, path, width):
    """The representation from a forward's result: (logits, representation) as the reference's
    models return, or a lone tensor; checked to be [1, width]."""
    import torch

    if isinstance(out, (tuple, list)):
        if len(out) != 2 or not all(isinstance(t, torch.Tensor) for t in out):
            raise Failure(STRUCTURE, (
                f"{path}: forward returns {len(out)} values; expected (logits, representation)"))
        rep = out[1]
    elif isinstance(out, torch.Tensor):
        rep = out
    else:
        raise Failure(STRUCTURE, (
            f"{path}: forward returns a {type(out).__name__}; expected (logits, representation)"))
    if tuple(rep.shape) != (1, width):
        raise Failure(WIDTH, (
            f"{path}: the representation has shape {list(rep.shape)}; expected [1, {width}] "
            "(is this the fine-tuned model with its 512-d head?)"))
    return rep


def cosine_and_max(a, b):
    a, b = a.flatten().double(), b.flatten().double()
    cos = float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-30))
    return cos, float((a - b).abs().max())


def export_pickle(torch, convert, onnx, path, out_path, width, opset, class_modules):
    """Exports the pickle's representation to `out_path`; returns the output name."""
    model = load_pickle(torch, path, class_modules)

    class Representation(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            out = self.m(x)
            return out[1] if isinstance(out, (tuple, list)) else out

    gen = torch.Generator().manual_seed(0)
    probes = [torch.rand(1, 3, SIZE, SIZE, generator=gen) * 2 - 1 for _ in range(2)]
    with torch.no_grad():
        try:
            first = model(probes[0])
        except Exception as e:  # a foreign module's forward can fail in any way
            raise Failure(STRUCTURE, (
                f"{path}: forward on a 1x3x{SIZE}x{SIZE} input failed: "
                f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"))
        representation(first, path, width)
        want = [representation(model(p), path, width) for p in probes]

    wrapper = Representation(model).eval()
    tmp = out_path + ".tmp"
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # dynamo=False: the TorchScript exporter, which runs the `symbolic` export hooks
            # onnx2torch gives its converted ops (the newer exporter needs onnxscript besides).
            # Its deprecation notice and the tracer's notes on onnx2torch's shape checks
            # (constant for the fixed 1x3x112x112 input) say nothing about this export.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(wrapper, (probes[0],), tmp, input_names=["input"],
                              output_names=["embedding"], opset_version=opset, dynamo=False,
                              do_constant_folding=True)
        exported = onnx.load(tmp)
        onnx.checker.check_model(exported)
    except Failure:
        raise
    except Exception as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise Failure(EXPORT, f"{path}: export to ONNX failed: {type(e).__name__}: {e}")
    try:
        outs = [o.name for o in exported.graph.output]
        if outs != ["embedding"]:
            raise Failure(EXPORT, f"{path}: the export has outputs {outs}; expected ['embedding']")
        back = convert(exported).eval()
        with torch.no_grad():
            for i, (p, w) in enumerate(zip(probes, want)):
                got = back(p)
                if tuple(got.shape) != (1, width):
                    raise Failure(WIDTH, f"{path}: the export's output is {list(got.shape)}")
                cos, diff = cosine_and_max(w, got)
                if not cos >= MIN_COSINE:
                    raise Failure(EXPORT, (
                        f"{path}: the exported ONNX does not reproduce the pickle: probe {i} "
                        f"cosine {cos:.7f} < {MIN_COSINE}, max abs difference {diff:.3g}"))
                log(f"  {os.path.basename(path)}: export vs pickle, probe {i}: cosine {cos:.8f}, "
                    f"max abs difference {diff:.2e}")
        write_atomic(out_path, copy_from=tmp)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return "embedding"


def check_onnx_embedder(torch, convert, onnx, path, width):
    """Checks an ONNX embedder used as is: one image input, one output of `width` (run once
    through onnx2torch). Returns the output name."""
    try:
        model = onnx.load(path)
    except Exception as e:
        raise Failure(STRUCTURE, f"{path}: not a loadable ONNX model: {type(e).__name__}: {e}")
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise Failure(STRUCTURE, f"{path}: {len(inputs)} inputs; an embedder takes one image")
    if len(model.graph.output) != 1:
        names = [o.name for o in model.graph.output]
        raise Failure(STRUCTURE, f"{path}: outputs {names}; expected one (the embedding)")
    output = model.graph.output[0].name
    try:
        net = convert(model).eval()
        with torch.no_grad():
            got = net(torch.zeros(1, 3, SIZE, SIZE))
    except Exception as e:
        raise Failure(STRUCTURE, (
            f"{path}: does not run on a 1x3x{SIZE}x{SIZE} input: {type(e).__name__}: {e}"))
    got = got[0] if isinstance(got, (tuple, list)) else got
    if tuple(got.shape) != (1, width):
        raise Failure(WIDTH, f"{path}: output '{output}' has shape {list(got.shape)}; expected [1, {width}]")
    return output


def detector_outputs(onnx, path, kind, given):
    """The RetinaFace output names for the manifest: given, or loc/conf/landms when the
    model names its outputs so; YuNet needs none."""
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:
        raise Failure(STRUCTURE, f"{path}: not a loadable ONNX model: {type(e).__name__}: {e}")
    names = [o.name for o in model.graph.output]
    if kind != "retinaface":
        return None
    if given:
        missing = [n for n in given if n not in names]
        if missing:
            raise Failure(STRUCTURE, f"{path}: no output named {missing} (it has {names})")
        return given
    if sorted(names) == ["conf", "landms", "loc"]:
        return ["loc", "conf", "landms"]
    if len(names) != 3:
        raise Failure(STRUCTURE, (
            f"{path}: a RetinaFace detector has 3 outputs (loc, conf, landmarks); this one has "
            f"{names}"))
    return None


# ----------------------------------------------------------------------------- the manifest


def toml_str(s):
    return json.dumps(s)  # a TOML basic string: same escapes as JSON for these characters


def toml_num(v):
    return repr(float(v))


def manifest_text(a, detector_file, detector_sha, det_outputs, embedders):
    d = DETECTORS[a.detector_kind]
    mean = d["mean"]
    lines = [
        "# Made by models/export_reference.py (reference models -> gestalt-edge bundle).",
        "# GestaltMatcher weights are released by GMDB to approved researchers only: a bundle",
        "# made from them must not be redistributed.",
        "",
        "[bundle]",
        f"name = {toml_str(a.name)}",
        f"version = {toml_str(a.version)}",
        f"description = {toml_str(a.description)}",
    ]
    if a.revision:
        lines.append(f"revision = {a.revision}")
    lines += [
        "",
        "[detector]",
        f"kind = {toml_str(a.detector_kind)}",
        f"file = {toml_str(detector_file)}",
        f"sha256 = {toml_str(detector_sha)}",
        "input = { width = 640, height = 640, channel_order = \"bgr\", mean = ["
        + ", ".join(toml_num(v) for v in mean) + "], scale = [1.0, 1.0, 1.0] }",
        f"score_threshold = {toml_num(a.score_threshold if a.score_threshold is not None else d['score_threshold'])}",
        f"nms_iou = {toml_num(a.nms_iou if a.nms_iou is not None else d['nms_iou'])}",
    ]
    if det_outputs:
        lines.append("outputs = [" + ", ".join(toml_str(n) for n in det_outputs) + "]")
    if a.conf_is_logits:
        lines.append("conf_is_logits = true")
    if a.input_mode == "exact":
        lines.append("input_mode = \"exact\"")
    views = [[False, False]] if a.no_tta else REFERENCE_VIEWS
    views_text = "[" + ", ".join(
        "[" + ", ".join("true" if b else "false" for b in v) + "]" for v in views) + "]"
    for name, file, sha, output, source in embedders:
        lines += [
            "",
            f"# {source}",
            "[[embedders]]",
            f"name = {toml_str(name)}",
            f"file = {toml_str(file)}",
            f"sha256 = {toml_str(sha)}",
            "input = { width = 112, height = 112, channel_order = \"rgb\", mean = ["
            + ", ".join([toml_num(MEAN)] * 3) + "], scale = ["
            + ", ".join([toml_num(SCALE)] * 3) + "] }",
            f"output = {toml_str(output)}",
            f"width = {a.width}",
            f"views = {views_text}   # [flip, gray], the reference's order",
        ]
    return "\n".join(lines) + "\n"


def check_manifest(text, folder):
    """Reads the written manifest back: TOML, and every sha256 matches its file."""
    m = tomllib.loads(text)
    for entry in [m["detector"]] + m["embedders"]:
        got = sha256(os.path.join(folder, entry["file"]))
        if got != entry["sha256"]:
            raise Failure(WRITE, f"{entry['file']}: changed while writing the bundle")


# ----------------------------------------------------------------------------------- main


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Export the GestaltMatcher-Arc reference models to a gestalt-edge bundle.",
        epilog="Exit codes: 0 ok, 1 write failed, 2 bad arguments, 3 missing file, "
               "4 unexpected structure, 5 wrong output width, 6 export failed.")
    ap.add_argument("--embedder", action="append", required=True, metavar="NAME=FILE",
                    help="ensemble member in order: a whole-module .pth pickle (exported) or an "
                         ".onnx file (used as is)")
    ap.add_argument("--detector", required=True, metavar="FILE.onnx", help="face detector ONNX")
    ap.add_argument("--detector-kind", choices=sorted(DETECTORS), default="retinaface")
    ap.add_argument("--detector-outputs", metavar="LOC,CONF,LANDMS",
                    help="RetinaFace output names (default: loc, conf, landms when so named, "
                         "else the first three outputs)")
    ap.add_argument("--conf-is-logits", action="store_true",
                    help="RetinaFace conf output holds logits (no softmax in the graph)")
    ap.add_argument("--input-mode", choices=["padded", "exact"], default="padded",
                    help="detector input: padded 640x640 (fast) or the reference's exact "
                         "long-side-640 input")
    ap.add_argument("--score-threshold", type=float, help="detector score threshold (default per kind)")
    ap.add_argument("--nms-iou", type=float, help="detector NMS IoU (default per kind)")
    ap.add_argument("--out", required=True, metavar="DIR", help="bundle folder to write")
    ap.add_argument("--name", default="gestaltmatcher-arc")
    ap.add_argument("--version", default="1")
    ap.add_argument("--description",
                    default="GestaltMatcher-Arc reference ensemble (GMDB weights, approved researchers only)")
    ap.add_argument("--revision", type=int, default=0, help="[bundle] revision (rollback counter)")
    ap.add_argument("--width", type=int, default=512, help="representation width (512)")
    ap.add_argument("--opset", type=int, default=13, help="ONNX opset of the export (13)")
    ap.add_argument("--no-tta", action="store_true",
                    help="one view per model (the service's /predict since Dec 2023) instead of "
                         "the paper's four")
    ap.add_argument("--class-path", action="append", default=[], metavar="DIR",
                    help="folder to import the pickles' model classes from")
    ap.add_argument("--class-module", action="append", default=[], metavar="MODULE",
                    help="module searched for classes the pickle cannot find where it says "
                         "(e.g. saved from a script as __main__.X)")
    a = ap.parse_args(argv)
    members = []
    for spec in a.embedder:
        name, sep, path = spec.partition("=")
        if not sep or not path or not NAME.match(name):
            ap.error(f"--embedder {spec!r}: expected NAME=FILE with NAME of letters, digits, _ . -")
        if any(name == n for n, _ in members):
            ap.error(f"--embedder: the name {name!r} is given twice")
        if not path.endswith((".pth", ".pt", ".onnx")):
            ap.error(f"--embedder {spec!r}: FILE must end in .pth, .pt (pickle) or .onnx")
        members.append((name, path))
    a.members = members
    a.detector_outputs = a.detector_outputs.split(",") if a.detector_outputs else None
    if a.detector_outputs is not None and (a.detector_kind != "retinaface" or len(a.detector_outputs) != 3):
        ap.error("--detector-outputs: three names, RetinaFace only")
    if a.width < 1 or a.revision < 0 or a.opset < 9:
        ap.error("--width and --opset must be positive (opset >= 9), --revision >= 0")
    for v, what in ((a.score_threshold, "--score-threshold"), (a.nms_iou, "--nms-iou")):
        if v is not None and not 0.0 <= v <= 1.0:
            ap.error(f"{what} must be in [0, 1]")
    return a


def run(a):
    for _, path in a.members:
        readable(path, "embedder")
    readable(a.detector, "detector")
    try:
        import onnx
        import torch
        from onnx2torch import convert
    except ImportError as e:
        raise Failure(USAGE, (
            f"{e.name} is not installed: pip install -r models/requirements-reference.txt "
            "(in a virtual environment)"))
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for d in a.class_path:
        sys.path.insert(0, os.path.abspath(d))
    class_modules = []
    for name in a.class_module:
        try:
            class_modules.append(importlib.import_module(name))
        except ImportError as e:
            raise Failure(USAGE, f"--class-module {name}: cannot import: {e}")

    try:
        os.makedirs(a.out, exist_ok=True)
    except OSError as e:
        raise Failure(WRITE, f"{a.out}: cannot create the folder: {e.strerror}")
    det_file = os.path.basename(a.detector)
    if det_file in {f"{n}.onnx" for n, _ in a.members}:
        det_file = "detector.onnx"
    det_outputs = detector_outputs(onnx, a.detector, a.detector_kind, a.detector_outputs)

    embedders = []
    for name, path in a.members:
        out_file = f"{name}.onnx"
        out_path = os.path.join(a.out, out_file)
        if path.endswith(".onnx"):
            log(f"{name}: {path} (ONNX, used as is)")
            output = check_onnx_embedder(torch, convert, onnx, path, a.width)
            if not (os.path.exists(out_path) and os.path.samefile(path, out_path)):
                write_atomic(out_path, copy_from=path)
            source = f"{os.path.basename(path)}, as is"
        else:
            log(f"{name}: {path} (whole-module pickle, exporting the representation)")
            output = export_pickle(torch, convert, onnx, path, out_path, a.width, a.opset,
                                   class_modules)
            source = f"{os.path.basename(path)}, representation exported (opset {a.opset})"
        embedders.append((name, out_file, sha256(out_path), output, source))

    det_path = os.path.join(a.out, det_file)
    if not (os.path.exists(det_path) and os.path.samefile(a.detector, det_path)):
        write_atomic(det_path, copy_from=a.detector)
    text = manifest_text(a, det_file, sha256(det_path), det_outputs, embedders)
    manifest = os.path.join(a.out, "bundle.toml")
    write_atomic(manifest, text.encode())
    check_manifest(text, a.out)
    print(f"wrote {manifest}: detector {det_file} ({a.detector_kind}), embedders "
          + ", ".join(e[0] for e in embedders))
    return OK


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(a)
    except Failure as f:
        log(f"export_reference: {f}")
        return f.code


if __name__ == "__main__":
    sys.exit(main())
