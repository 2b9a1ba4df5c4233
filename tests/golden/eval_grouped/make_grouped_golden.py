#!/usr/bin/env python3
"""Regenerate the patient-grouped evaluation golden under tests/golden/eval_grouped/.

A seeded synthetic set with several test photos per patient, in the reference file formats
(see tests/golden/eval/make_eval_golden.py for the formats and the ranking rules):

  encodings.csv   img_name;model;flip;gray;class_conf;representations (2 models x 4 views)
  syndromes.tsv   syndrome_id, syndrome_name, OMIM
  gallery.csv     image_id,subject,label   (4 patients x 2 photos per syndrome)
  test.csv        image_id,subject,label   (3 patients x 3 photos per syndrome)
  expected.json   top-k mean accuracy (k = 1, 5, 10, 30) per test photo ("single") and per
                  test patient with the patient's photos fused ("grouped"), and each
                  query's ranked syndromes

A photo = syndrome centre + the patient's own offset + photo noise (pose, light). Fusion
per key: every photo's vector normalised, averaged, normalised again; the fused query is
ranked like a photo. The photo noise is large, so single photos often miss and fusion
recovers many of them, as in the authors' multi-image evaluation.

Usage (from the repository root; numpy only):
    python3 tests/golden/eval_grouped/make_grouped_golden.py
"""

import json
import pathlib

import numpy as np

OUT = pathlib.Path(__file__).resolve().parent
SEED = 1311
MODELS = {"m0": 8, "m1": 6}
VIEWS = [(0, 0), (0, 1), (1, 0), (1, 1)]
KS = [1, 5, 10, 30]
MARGIN = 1e-4
SYNDROMES = 8
PATIENT_SCALE = 0.8
PHOTO_NOISE = 2.4


def keys():
    return [(m, f, g) for m in MODELS for (f, g) in VIEWS]


def unit(v):
    n = np.linalg.norm(v)
    return v / n if n > 0 else v * 0


def stored(v):
    return np.float16(np.float32(v)).astype(np.float64)


def query(v):
    return np.float32(v).astype(np.float64)


def make_data(rng):
    synd = {201 + i: f"Disorder {chr(65 + i)}" for i in range(SYNDROMES)}
    centres = {s: {k: rng.normal(size=MODELS[k[0]]) for k in keys()} for s in synd}
    vecs, gallery, test = {}, [], []
    next_id = [5000]

    def photo(s, offset):
        i = next_id[0]
        next_id[0] += 1
        vecs[i] = {
            k: np.round(centres[s][k] + offset[k] + rng.normal(scale=PHOTO_NOISE, size=MODELS[k[0]]), 4)
            for k in keys()
        }
        return i

    for s in synd:
        for p in range(4):
            off = {k: rng.normal(scale=PATIENT_SCALE, size=MODELS[k[0]]) for k in keys()}
            for _ in range(2):
                gallery.append((photo(s, off), f"g{s}_{p}", s))
        for p in range(3):
            off = {k: rng.normal(scale=PATIENT_SCALE, size=MODELS[k[0]]) for k in keys()}
            for _ in range(3):
                test.append((photo(s, off), f"t{s}_{p}", s))
    return synd, vecs, gallery, test


def rank_query(q, vecs, gallery):
    """q: key -> float64 vector (already the query's values) -> ranked syndrome ids"""
    d = np.zeros(len(gallery))
    for k in keys():
        g = np.stack([unit(stored(vecs[gid][k])) for gid, _, _ in gallery])
        d += 1.0 - g @ unit(q[k])
    d /= len(keys())
    order = np.argsort(d, kind="stable")
    ranked, best = [], {}
    for i in order:
        s = gallery[i][2]
        if s not in best:
            best[s] = d[i]
            ranked.append(s)
    vals = [best[s] for s in ranked]
    for a, b in zip(vals, vals[1:]):
        assert b - a > MARGIN, f"near tie {a} {b}: pick another SEED"
    return ranked


def top_k(outcomes, k):
    per = {}
    for truth, ranked in outcomes:
        hit, n = per.get(truth, (0, 0))
        per[truth] = (hit + (truth in ranked[:k]), n + 1)
    return 100.0 * sum(h / n for h, n in per.values()) / len(per)


def main():
    rng = np.random.default_rng(SEED)
    synd, vecs, gallery, test = make_data(rng)
    single, single_ranked = [], {}
    for tid, _, s in test:
        r = rank_query({k: query(vecs[tid][k]) for k in keys()}, vecs, gallery)
        single.append((s, r))
        single_ranked[str(tid)] = [str(x) for x in r]
    grouped, grouped_ranked = [], {}
    subjects = []
    for _, subj, _ in test:
        if subj not in subjects:
            subjects.append(subj)
    for subj in subjects:
        rows = [r for r in test if r[1] == subj]
        fused = {}
        for k in keys():
            m = np.mean([unit(query(vecs[tid][k])) for tid, _, _ in rows], axis=0)
            fused[k] = np.float32(unit(m)).astype(np.float64)
        r = rank_query(fused, vecs, gallery)
        grouped.append((rows[0][2], r))
        grouped_ranked[subj] = [str(x) for x in r]

    with open(OUT / "syndromes.tsv", "w") as f:
        f.write("syndrome_id\tsyndrome_name\tOMIM\n")
        for s, name in synd.items():
            f.write(f"{s}\t{name}\t{300000 + s}\n")
    for name, rows in [("gallery.csv", gallery), ("test.csv", test)]:
        with open(OUT / name, "w") as f:
            f.write("image_id,subject,label\n")
            for r in rows:
                f.write(",".join(str(x) for x in r) + "\n")
    with open(OUT / "encodings.csv", "w") as f:
        f.write("img_name;model;flip;gray;class_conf;representations\n")
        for i in sorted(vecs):
            for m, fl, g in keys():
                rep = json.dumps([round(float(x), 4) for x in vecs[i][(m, fl, g)]])
                f.write(f"{i}_crop_square.jpg;{m};{fl};{g};[0];{rep}\n")
    expected = {
        "about": "made by tests/golden/eval_grouped/make_grouped_golden.py (numpy %s)" % np.__version__,
        "single": {"queries": len(single), "top_k": [top_k(single, k) for k in KS], "ranked": single_ranked},
        "grouped": {"queries": len(grouped), "top_k": [top_k(grouped, k) for k in KS], "ranked": grouped_ranked},
    }
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    for k in ["single", "grouped"]:
        print(k, expected[k]["queries"], "queries, top-1/5/10/30:", [round(x, 2) for x in expected[k]["top_k"]])


if __name__ == "__main__":
    main()
