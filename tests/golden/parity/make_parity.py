#!/usr/bin/env python3
"""Regenerate the fidelity goldens under tests/golden/parity/ (checked by tests/it/parity.rs).

Made once with the reference libraries (onnxruntime 1.22, OpenCV 4.11, numpy) on the real
demo bundle and photos; the Rust tests read the JSON and never run Python.

  embeddings.json  SFace (models/demo/sface.onnx, the prepared model the bundle loads) on
                   the aligned 112x112 crops made with OpenCV in tests/golden/align/, for the
                   four TTA views in the reference order (flip, gray) = (0,0), (0,1), (1,0),
                   (1,1). Gray is the reference's formula Y = (4899 R + 9617 G + 1868 B + 8192)
                   >> 14 (OpenCV 4.11's own cvtColor uses a 15-bit variant that is one level
                   off on ~0.3% of pixels; using the same formula on both sides isolates the
                   model), applied before the horizontal flip. Input `data` is 1x3x112x112
                   RGB 0..255 (SFace normalises inside).
  detections.json  YuNet (models/demo/yunet.onnx), decoded by the Python decoder below, on
                   (a) "composites": each aligned crop of tests/golden/align/ pasted at
                   PASTE on a black CANVAS (lossless: both sides see the same pixels), and
                   (b) "photos": every demo photo decoded by OpenCV. The int8-derived YuNet
                   is sensitive to the JPEG decoder (OpenCV's libjpeg-turbo and the Rust
                   image crate differ by 0.12 levels on average, 4 at most, which moves a box
                   edge by up to ~8 px), so only (a) is held to 1 px. Input: photo (BGR)
                   resized so the long side is
                   640 (cv2.resize with fx = fy = 640 / long side, INTER_LINEAR), placed
                   top-left on a 640x640 zero canvas, float NCHW BGR 0..255; per stride-S cell
                   score = sqrt(cls * obj), centre = (col + dx, row + dy) * S, size =
                   exp(dw, dh) * S, landmarks = (col + kx, row + ky) * S; score > 0.6, NMS
                   IoU 0.3 (plain areas), then divided by the resize factor.
  ranking.json     A seeded synthetic gallery (3 keys of widths 16, 16, 8; 12 images of 4
                   syndromes) and 4 queries: the mean key-paired cosine distance matrix and
                   the ranked syndrome lists (stable sort by distance, nearest image per
                   syndrome). Gallery vectors are rounded to float16 as the gallery file
                   stores them.

Usage (from the repository root, after scripts/setup.sh):
    python3 tests/golden/parity/make_parity.py
"""

import hashlib
import json
import pathlib

import cv2
import numpy as np
import onnxruntime as ort

REPO = pathlib.Path(__file__).resolve().parents[3]
OUT = pathlib.Path(__file__).resolve().parent
ALIGN = REPO / "tests/golden/align"
PHOTOS = REPO / "models/demo/photos"
MODELS = REPO / "models/demo"
VIEWS = [(0, 0), (0, 1), (1, 0), (1, 1)]
STRIDES = [8, 16, 32]


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def gray14(rgb):
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    y = ((4899 * r + 9617 * g + 1868 * b + 8192) >> 14).astype(np.uint8)
    return np.stack([y, y, y], -1)


def view(rgb, flip, gray):
    img = gray14(rgb) if gray else rgb
    return img[:, ::-1] if flip else img


def embeddings():
    sess = session(MODELS / "sface.onnx")
    name = sess.get_inputs()[0].name
    cases = []
    for png in sorted(ALIGN.glob("*_crop.png")):
        if "_syn_" in png.name:
            continue
        rgb = cv2.cvtColor(cv2.imread(str(png), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert rgb.shape == (112, 112, 3)
        views = []
        for flip, gray in VIEWS:
            x = np.ascontiguousarray(view(rgb, flip, gray).transpose(2, 0, 1)[None]).astype(np.float32)
            out = sess.run(["fc1"], {name: x})[0].reshape(-1)
            views.append({"flip": bool(flip), "gray": bool(gray), "embedding": [float(v) for v in out]})
        cases.append({"crop_png": png.name, "views": views})
    return {"model": "sface.onnx", "model_sha256": sha(MODELS / "sface.onnx"), "cases": cases}


def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detect(sess, bgr, size=640, threshold=0.6, nms_iou=0.3):
    h, w = bgr.shape[:2]
    scale = size / max(w, h)
    small = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    canvas = np.zeros((size, size, 3), np.float32)
    canvas[: small.shape[0], : small.shape[1]] = small
    x = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None])
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
    cands = []
    for s in STRIDES:
        cols = size // s
        cls = outs[f"cls_{s}"].reshape(-1)
        obj = outs[f"obj_{s}"].reshape(-1)
        box = outs[f"bbox_{s}"].reshape(-1, 4)
        kps = outs[f"kps_{s}"].reshape(-1, 10)
        score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
        for i in np.nonzero(score > threshold)[0]:
            row, col = divmod(int(i), cols)
            cx, cy = (col + box[i, 0]) * s, (row + box[i, 1]) * s
            bw, bh = np.exp(box[i, 2]) * s, np.exp(box[i, 3]) * s
            lm = [[(col + kps[i, 2 * k]) * s, (row + kps[i, 2 * k + 1]) * s] for k in range(5)]
            cands.append((float(score[i]), [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], lm))
    cands.sort(key=lambda c: -c[0])
    keep = []
    for c in cands:
        if all(iou(c[1], k[1]) <= nms_iou for k in keep):
            keep.append(c)
    return [
        {
            "score": sc,
            "bbox_px": [float(v / scale) for v in b],
            "landmarks_px": [[float(p[0] / scale), float(p[1] / scale)] for p in lm],
        }
        for sc, b, lm in keep
    ]


CANVAS = (320, 240)  # width, height of the composites
PASTE = (100, 60)  # top-left of the crop on the canvas


def composite(crop_bgr):
    """A lossless test photo: an aligned crop pasted on a black canvas (no JPEG decoder in
    between, so both sides see the same pixels)."""
    canvas = np.zeros((CANVAS[1], CANVAS[0], 3), np.uint8)
    x, y = PASTE
    canvas[y : y + crop_bgr.shape[0], x : x + crop_bgr.shape[1]] = crop_bgr
    return canvas


def detections():
    sess = session(MODELS / "yunet.onnx")
    composites = []
    for png in sorted(ALIGN.glob("*_crop.png")):
        if "_syn_" in png.name:
            continue
        canvas = composite(cv2.imread(str(png), cv2.IMREAD_COLOR))
        composites.append({"crop_png": png.name, "faces": detect(sess, canvas)})
    photos = []
    for p in sorted(PHOTOS.glob("*.jpg")):
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        photos.append({"photo": p.name, "photo_sha256": sha(p), "faces": detect(sess, bgr)})
    return {
        "model": "yunet.onnx",
        "model_sha256": sha(MODELS / "yunet.onnx"),
        "canvas": list(CANVAS),
        "paste": list(PASTE),
        "composites": composites,
        "photos": photos,
    }


def ranking():
    rng = np.random.default_rng(7)
    widths = [("a", False, False, 16), ("a", True, False, 16), ("b", False, True, 8)]
    synd = ["S0", "S1", "S2", "S3"]
    centres = {s: [rng.normal(size=w) for *_, w in widths] for s in synd}
    gallery = []
    for i in range(12):
        s = synd[i % 4]
        vecs = [np.round(c + rng.normal(scale=1.0, size=c.shape), 4) for c in centres[s]]
        gallery.append({"image_id": f"g{i}", "syndrome": s, "vectors": [[float(v) for v in x] for x in vecs]})
    queries = []
    for q in range(4):
        s = synd[q]
        vecs = [np.round(c + rng.normal(scale=1.2, size=c.shape), 4) for c in centres[s]]
        queries.append({"vectors": [[float(v) for v in x] for x in vecs]})

    def unit(v):
        return v / np.linalg.norm(v)

    matrix, ranked = [], []
    for q in queries:
        d = np.zeros(len(gallery))
        for k in range(len(widths)):
            qv = unit(np.float32(q["vectors"][k]).astype(np.float64))
            for j, g in enumerate(gallery):
                gv = unit(np.float16(np.float32(g["vectors"][k])).astype(np.float64))
                d[j] += 1.0 - gv @ qv
        d /= len(widths)
        order = np.argsort(d, kind="stable")
        names, best = [], []
        for j in order:
            s = gallery[j]["syndrome"]
            if s not in names:
                names.append(s)
                best.append(d[j])
        assert all(b - a > 1e-4 for a, b in zip(best, best[1:])), "near tie: change the seed"
        matrix.append([float(x) for x in d])
        ranked.append(names)
    return {
        "keys": [{"model": m, "flip": f, "gray": g, "width": w} for m, f, g, w in widths],
        "gallery": gallery,
        "queries": queries,
        "distances": matrix,
        "ranked_syndromes": ranked,
    }


def main():
    about = {
        "about": "made by tests/golden/parity/make_parity.py; see its docstring",
        "onnxruntime": ort.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }
    for name, fn in [("embeddings.json", embeddings), ("detections.json", detections), ("ranking.json", ranking)]:
        doc = dict(about, **fn())
        (OUT / name).write_text(json.dumps(doc, indent=1) + "\n")
        print("wrote", OUT / name)


if __name__ == "__main__":
    main()
