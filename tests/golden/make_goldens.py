#!/usr/bin/env python3
"""Regenerate the alignment goldens under tests/golden/align/ (see tests/golden/README.md).

The reference arithmetic, run once with the reference libraries (numpy, OpenCV 4.11,
scikit-image 0.25), on the real demo photos:

  * the 5-point similarity: skimage SimilarityTransform.estimate(landmarks, template),
    the ArcFace 112x112 template being the reference's float32 values widened to float64
    (given float32, numpy would take the template mean in float32 and move the translation
    by ~2e-6 px; the float64 fit is the exact one, and what the Rust code computes);
  * the aligned crop: cv2.warpAffine(rgb, M, (112, 112), INTER_LINEAR, BORDER_CONSTANT 0);
  * its gray view: cv2.cvtColor(crop, COLOR_RGB2GRAY), stored single-channel (the
    embedder replicates it to 3 channels);
  * the levelling rotation of the reference's second detection pass:
    cv2.getRotationMatrix2D(nose, atan2(dy, dx) of the eye line in degrees, 1.0) and
    cv2.warpAffine of the whole photo onto the same canvas; only small windows of the
    rotated photo are stored (one around the nose, one at the top-left corner where the
    black border comes in).

JPEG decoders differ slightly (OpenCV's libjpeg-turbo vs the Rust image crate: mean 0.1-0.2,
max 5 in u8 units), so photo crops can only agree to a tolerance. To check the warp bit for
bit, the same warps are also applied to a synthetic image of the photo's size that both
sides compute from a formula (see synthetic()), and those results are stored too.

Landmarks are fixed numbers kept in LANDMARKS below, so the goldens do not depend on a
detector. They were found once with OpenCV's cv2.FaceDetectorYN on the YuNet model of
the demo bundle (face_detection_yunet_2023mar_int8bq.onnx, input size = photo size,
highest-score face) and rounded to 1/64 pixel, which is exact in f32, f64 and decimal.
`--detect MODEL.onnx` reruns that detection and prints fresh values to paste.

Usage (from the repository root):
    python3 tests/golden/make_goldens.py [PHOTO_DIR] [--out tests/golden/align]
PHOTO_DIR defaults to models/demo/photos (filled by the demo set-up script).
"""

import argparse
import hashlib
import json
import pathlib
import sys

import cv2
import numpy as np
import skimage
from skimage.transform import SimilarityTransform

REPO = pathlib.Path(__file__).resolve().parents[2]

TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)

# photo -> 5 landmarks [x, y] in pixels (eye image-left, eye image-right, nose,
# mouth left, mouth right), from cv2.FaceDetectorYN, rounded to 1/64 px.
LANDMARKS = {
    "person_a_1.jpg": [[86.328125, 87.6875], [119.1875, 87.53125], [104.125, 107.703125], [90.625, 122.703125], [119.46875, 123.015625]],
    "person_b_2.jpg": [[282.953125, 284.640625], [413.75, 272.625], [362.671875, 353.453125], [301.515625, 411.125], [421.65625, 400.71875]],
    "impostor_2.jpg": [[312.609375, 323.109375], [450.953125, 311.0], [386.90625, 398.953125], [332.234375, 464.0], [458.671875, 453.609375]],
}

NOSE_WINDOW = 128  # side of the stored window around the nose, pixels
CORNER_WINDOW = 48  # side of the stored window at the top-left corner, pixels


SYN_WINDOW = 48  # side of the synthetic rotation windows, pixels


def synthetic(w, h):
    """RGB test card of w x h: R = (3x + 2y) mod 256, G = (x + 5y + 85) mod 256, B = x xor y
    (low 8 bits). Ramps with wrap-around edges and a high-frequency channel."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(3 * x + 2 * y) % 256, (x + 5 * y + 85) % 256, (x ^ y) & 255], -1).astype(np.uint8)


def warp(img, m, w, h):
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def detect(model, photo_dir):
    det = cv2.FaceDetectorYN.create(str(model), "", (320, 320))
    out = {}
    for name in LANDMARKS:
        bgr = cv2.imread(str(photo_dir / name), cv2.IMREAD_COLOR)
        if bgr is None:
            sys.exit(f"cannot read {photo_dir / name}")
        det.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = det.detect(bgr)
        if faces is None or len(faces) == 0:
            sys.exit(f"no face in {name}")
        best = faces[np.argmax(faces[:, 14])]
        lm = np.round(best[4:14].astype(np.float64).reshape(5, 2) * 64) / 64
        out[name] = lm.tolist()
    return out


def write_png(path, img):
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        sys.exit(f"cannot write {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", nargs="?", default=str(REPO / "models/demo/photos"), help="folder with the demo photos")
    ap.add_argument("--out", default=str(REPO / "tests/golden/align"), help="output folder")
    ap.add_argument("--detect", metavar="YUNET_ONNX", help="print landmarks found by cv2.FaceDetectorYN and exit")
    args = ap.parse_args()
    photo_dir = pathlib.Path(args.photos)
    out_dir = pathlib.Path(args.out)

    if args.detect:
        for name, lm in detect(args.detect, photo_dir).items():
            print(f'    "{name}": {lm},')
        return

    out_dir.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, lm in LANDMARKS.items():
        path = photo_dir / name
        if not path.is_file():
            sys.exit(f"missing photo {path}: run the demo set-up script first, or pass the photo folder")
        raw = path.read_bytes()
        bgr = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        stem = pathlib.Path(name).stem
        lm = np.asarray(lm, dtype=np.float64)
        assert np.all(lm * 64 == np.round(lm * 64)), "landmarks must be multiples of 1/64"

        tform = SimilarityTransform()
        if not tform.estimate(lm, TEMPLATE.astype(np.float64)):
            sys.exit(f"similarity estimate failed for {name}")
        m = tform.params[:2].copy()
        crop = warp(rgb, m, 112, 112)
        gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        write_png(out_dir / f"{stem}_crop.png", crop)
        write_png(out_dir / f"{stem}_gray.png", gray)

        # Second-pass levelling: rotate the whole photo about the nose.
        (lx, ly), (rx, ry) = lm[0], lm[1]
        angle = float(np.degrees(np.arctan2(ry - ly, rx - lx)))
        nose = (float(lm[2][0]), float(lm[2][1]))
        r = cv2.getRotationMatrix2D(nose, angle, 1.0)
        rotated = warp(rgb, r, w, h)

        def window(side):  # top-left of a side x side window centred on the nose, in the image
            x0 = min(max(int(round(nose[0])) - side // 2, 0), w - side)
            y0 = min(max(int(round(nose[1])) - side // 2, 0), h - side)
            return x0, y0

        def save_windows(img, prefix, specs):
            out = []
            for tag, (x0, y0), side in specs:
                png = f"{prefix}_{tag}.png"
                write_png(out_dir / png, img[y0 : y0 + side, x0 : x0 + side])
                out.append({"png": png, "x": x0, "y": y0, "width": side, "height": side})
            return out

        windows = save_windows(
            rotated, f"{stem}_rot", (("nose", window(NOSE_WINDOW), NOSE_WINDOW), ("corner", (0, 0), CORNER_WINDOW))
        )

        syn = synthetic(w, h)
        write_png(out_dir / f"{stem}_syn_crop.png", warp(syn, m, 112, 112))
        syn_windows = save_windows(
            warp(syn, r, w, h),
            f"{stem}_syn_rot",
            (("nose", window(SYN_WINDOW), SYN_WINDOW), ("corner", (0, 0), SYN_WINDOW)),
        )

        cases.append(
            {
                "name": stem,
                "photo": name,
                "photo_sha256": hashlib.sha256(raw).hexdigest(),
                "width": w,
                "height": h,
                "landmarks_px": lm.tolist(),
                "similarity": m.tolist(),
                "crop_png": f"{stem}_crop.png",
                "gray_png": f"{stem}_gray.png",
                "rotation": {
                    "center": list(nose),
                    "angle_deg": angle,
                    "matrix": r.tolist(),
                    "windows": windows,
                },
                "synthetic": {
                    "crop_png": f"{stem}_syn_crop.png",
                    "rotation_windows": syn_windows,
                },
            }
        )

    doc = {
        "about": "alignment goldens made by tests/golden/make_goldens.py; see tests/golden/README.md",
        "opencv": cv2.__version__,
        "scikit_image": skimage.__version__,
        "numpy": np.__version__,
        "template": TEMPLATE.astype(np.float64).tolist(),
        "cases": cases,
    }
    (out_dir / "cases.json").write_text(json.dumps(doc, indent=1) + "\n")
    total = sum(p.stat().st_size for p in out_dir.iterdir())
    print(f"wrote {len(cases)} cases to {out_dir} ({total / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
