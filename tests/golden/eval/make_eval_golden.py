#!/usr/bin/env python3
"""Regenerate the evaluation goldens under tests/golden/eval/ (checked by tests/it/eval.rs).

A tiny, independent re-implementation of the GestaltMatcher-Arc paper's metric (Eq. 1,
top-k mean accuracy) and protocol, run on a seeded synthetic data set written in the
reference file formats:

  encodings.csv          img_name;model;flip;gray;class_conf;representations (2 models x 4 views)
  syndromes.tsv          syndrome_id, syndrome_name, OMIM (with a header)
  frequent_gallery.csv   image_id,subject,label
  frequent_test.csv      image_id,subject,label       (one syndrome has a single test image)
  rare_gallery.csv       image_id,subject,label,split (3 splits; images reused across splits)
  rare_test.csv          image_id,subject,label,split
  expected.json          top-k mean accuracy (k = 1, 5, 10, 30 and the curve k = 1..30) and
                         each test image's ranked syndrome list, for the frequent, rare and
                         unified settings

The ranking is the one `gestalt-edge` uses (src/rank): per (model, flip, gray) key the
cosine distance between the query and each gallery image, the plain mean over keys, images
sorted by distance with ties kept in gallery order (stable sort), a syndrome placed at its
nearest image. Gallery vectors are stored as IEEE half floats on the device (the default
f16 gallery storage), so they are rounded to float16 here before normalising; queries stay
float32. One gallery image duplicates another's vectors under another syndrome, so exact
ties occur and must be broken by gallery order on both sides; all other neighbouring
syndrome distances are kept at least MARGIN apart so float rounding cannot reorder them.

Usage (from the repository root; numpy only):  python3 tests/golden/eval/make_eval_golden.py
"""

import json
import pathlib

import numpy as np

OUT = pathlib.Path(__file__).resolve().parent
SEED = 20240611
MODELS = {"m0": 8, "m1": 6}  # name -> width
VIEWS = [(0, 0), (0, 1), (1, 0), (1, 1)]
KS = [1, 5, 10, 30]
MARGIN = 1e-4


def keys():
    return [(m, f, g) for m in MODELS for (f, g) in VIEWS]


def make_data(rng):
    synd = {101 + i: f"Syndrome {chr(65 + i)}" for i in range(12)}
    omim = {s: (100000 + s if s % 3 else None) for s in synd}
    centres = {s: {k: rng.normal(size=MODELS[k[0]]) for k in keys()} for s in synd}
    vecs = {}
    next_id = [1000]

    def image(s, noise):
        i = next_id[0]
        next_id[0] += 1
        # 4 decimals as written to the CSV; both sides read them as float32
        vecs[i] = {k: np.round(centres[s][k] + rng.normal(scale=noise, size=MODELS[k[0]]), 4) for k in keys()}
        return i

    frequent = list(synd)[:6]
    rare = list(synd)[6:]
    fg, ft = [], []
    for n, s in enumerate(frequent):
        for j in range(4):
            fg.append((image(s, 2.6), f"p{s}_{j}", s))
        for j in range(1 if n == 0 else 2):  # syndrome 101 has a single test image
            ft.append((image(s, 2.6), f"q{s}_{j}", s))
    # an exact duplicate of the first gallery image, labelled with another syndrome: ties
    dup = next_id[0]
    next_id[0] += 1
    vecs[dup] = {k: v.copy() for k, v in vecs[fg[0][0]].items()}
    fg.append((dup, "dup", frequent[1]))

    rg, rt = [], []
    pool = {s: [image(s, 2.2) for _ in range(3)] for s in rare}
    for split in range(3):
        for s in rare:
            imgs = pool[s]
            t = imgs[split % 3]
            for g in imgs:
                if g != t:
                    rg.append((g, f"r{g}", s, split))
            rt.append((t, f"r{t}", s, split))
    return synd, omim, vecs, fg, ft, rg, rt


def query(v):
    return np.float32(v).astype(np.float64)


def stored(v):
    return np.float16(np.float32(v)).astype(np.float64)


def unit(v):
    n = np.linalg.norm(v)
    return v / n if n > 0 else v * 0


def rank(vecs, gallery, test):
    """gallery: [(id, label)], test: [(id, label)] -> per test image the ranked syndrome ids"""
    out = []
    for tid, _ in test:
        d = np.zeros(len(gallery))
        for k in keys():
            q = unit(query(vecs[tid][k]))
            g = np.stack([unit(stored(vecs[gid][k])) for gid, _ in gallery])
            d += 1.0 - g @ q
        d /= len(keys())
        order = np.argsort(d, kind="stable")
        ranked, best = [], {}
        for i in order:
            s = gallery[i][1]
            if s not in best:
                best[s] = d[i]
                ranked.append(s)
        vals = [best[s] for s in ranked]
        for a, b in zip(vals, vals[1:]):
            assert b == a or b - a > MARGIN, f"near tie {a} {b}: pick another SEED"
        out.append(ranked)
    return out


def top_k(test, ranked, k):
    per = {}
    for (_, s), r in zip(test, ranked):
        hit, n = per.get(s, (0, 0))
        per[s] = (hit + (s in r[:k]), n + 1)
    return 100.0 * sum(h / n for h, n in per.values()) / len(per)


def evaluate(vecs, gallery_rows, test_rows):
    splits = sorted({r[3] for r in gallery_rows + test_rows if len(r) > 3})
    results = []
    for s in splits or [None]:
        g = [(r[0], r[2]) for r in gallery_rows if s is None or len(r) < 4 or r[3] == s]
        t = [(r[0], r[2]) for r in test_rows if s is None or len(r) < 4 or r[3] == s]
        ranked = rank(vecs, g, t)
        results.append(
            {
                "split": s,
                "gallery_images": len(g),
                "test_images": len(t),
                "top_k": [top_k(t, ranked, k) for k in KS],
                "curve": [top_k(t, ranked, k) for k in range(1, 31)],
                "ranked": {str(tid): [str(x) for x in r] for (tid, _), r in zip(t, ranked)},
            }
        )
    mean = lambda f: float(np.mean([f(r) for r in results]))
    return {
        "top_k": [mean(lambda r, i=i: r["top_k"][i]) for i in range(4)],
        "curve": [mean(lambda r, i=i: r["curve"][i]) for i in range(30)],
        "gallery_images": mean(lambda r: r["gallery_images"]),
        "test_images": mean(lambda r: r["test_images"]),
        "splits": results,
    }


def main():
    rng = np.random.default_rng(SEED)
    synd, omim, vecs, fg, ft, rg, rt = make_data(rng)
    with open(OUT / "syndromes.tsv", "w") as f:
        f.write("syndrome_id\tsyndrome_name\tOMIM\n")
        for s, name in synd.items():
            f.write(f"{s}\t{name}\t{omim[s] or ''}\n")
    for name, rows, split in [
        ("frequent_gallery.csv", fg, False),
        ("frequent_test.csv", ft, False),
        ("rare_gallery.csv", rg, True),
        ("rare_test.csv", rt, True),
    ]:
        with open(OUT / name, "w") as f:
            f.write("image_id,subject,label" + (",split" if split else "") + "\n")
            for r in rows:
                f.write(",".join(str(x) for x in r) + "\n")
    with open(OUT / "encodings.csv", "w") as f:
        f.write("img_name;model;flip;gray;class_conf;representations\n")
        for i in sorted(vecs):
            for m, fl, g in keys():
                rep = json.dumps([round(float(x), 4) for x in vecs[i][(m, fl, g)]])
                f.write(f"{i}_crop_square.jpg;{m};{fl};{g};[0];{rep}\n")
    expected = {
        "about": "made by tests/golden/eval/make_eval_golden.py (numpy %s); see its docstring" % np.__version__,
        "frequent": evaluate(vecs, fg, ft),
        "rare": evaluate(vecs, rg, rt),
        "unified_rare": evaluate(vecs, fg + rg, rt),
        "unified_frequent": evaluate(vecs, fg + rg, ft),
    }
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    for k in ["frequent", "rare", "unified_rare", "unified_frequent"]:
        print(k, [round(x, 2) for x in expected[k]["top_k"]])


if __name__ == "__main__":
    main()
