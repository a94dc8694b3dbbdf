#!/usr/bin/env python3
"""Reference fixtures for genlm's downstream-analysis statistics (tests/test_analysis_stats.cpp).

Writes, deterministically (fixed seeds, float64), tests/fixtures/analysis/sklearn.safetensors:

binary.X (120, 5), binary.y (120) int64, binary.Xtest (30, 5)
    two overlapping Gaussian classes with one useless and one constant-ish feature
binary.C{i}.coef (5), .intercept (1), .proba (30)    for C = binary.Cs[i] (0.05, 1, 20):
    LogisticRegression(C=C, solver="lbfgs", tol=1e-12, max_iter=100000).fit(X, y);
    coef_[0], intercept_, predict_proba(Xtest)[:, 1]
binary.noint.coef (5), binary.noint.proba (30)       the same at C=1 with fit_intercept=False
binary.separable.X (40, 2), .y (40), .coef (2), .intercept (1)
    linearly separable data at C=1 (the L2 penalty keeps the solution finite)

multi.X (150, 4), multi.y (150) int64 in 0..3, multi.Xtest (25, 4)
multi.C{i}.coef (4, 4), .intercept (4), .proba (25, 4)   for C = multi.Cs[i] (0.1, 2):
    LogisticRegression(C=C, solver="lbfgs", tol=1e-12, max_iter=100000) (multinomial softmax)

auc.score (200) with many ties, auc.y (200); auc.roc_auc (1) = roc_auc_score,
auc.average_precision (1) = average_precision_score

f1.y_true (90), f1.y_pred (90) int64 in 0..4 (class 3 never predicted, class 4 never true)
f1.precision / recall / f1 / support (5) = precision_recall_fscore_support(labels=range(5),
    zero_division=0); f1.accuracy, f1.macro, f1.weighted (1) = accuracy_score,
    f1_score(average="macro"/"weighted", labels=range(5), zero_division=0)

scaler.mean / scaler.scale (5) = StandardScaler().fit(binary.X)

Usage:  /opt/fixenv/bin/python scripts/gen_analysis_fixtures.py [--out-dir tests/fixtures/analysis]
"""
import argparse
import json
import os
import struct
import sys

import numpy as np


def make(out):
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import (accuracy_score, average_precision_score, f1_score,
                                 precision_recall_fscore_support, roc_auc_score)
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(20240612)
    t = {}
    kw = dict(solver="lbfgs", tol=1e-12, max_iter=100000)

    # binary
    n, d = 120, 5
    y = (rng.random(n) < 0.4).astype(np.int64)
    X = rng.standard_normal((n, d))
    X[:, 0] += 1.3 * y
    X[:, 1] -= 0.7 * y
    X[:, 2] = 3.0 + 0.5 * X[:, 2]          # offset feature
    X[:, 4] = 0.01 * rng.standard_normal(n)  # nearly constant
    Xt = rng.standard_normal((30, d))
    t["binary.X"], t["binary.y"], t["binary.Xtest"] = X, y, Xt
    Cs = np.array([0.05, 1.0, 20.0])
    t["binary.Cs"] = Cs
    for i, C in enumerate(Cs):
        m = LogisticRegression(C=C, **kw).fit(X, y)
        t[f"binary.C{i}.coef"] = m.coef_[0]
        t[f"binary.C{i}.intercept"] = m.intercept_
        t[f"binary.C{i}.proba"] = m.predict_proba(Xt)[:, 1]
    m = LogisticRegression(C=1.0, fit_intercept=False, **kw).fit(X, y)
    t["binary.noint.coef"] = m.coef_[0]
    t["binary.noint.proba"] = m.predict_proba(Xt)[:, 1]
    Xs = rng.standard_normal((40, 2))
    ys = (Xs[:, 0] + 0.5 * Xs[:, 1] > 0.1).astype(np.int64)
    m = LogisticRegression(C=1.0, **kw).fit(Xs, ys)
    t["binary.separable.X"], t["binary.separable.y"] = Xs, ys
    t["binary.separable.coef"], t["binary.separable.intercept"] = m.coef_[0], m.intercept_

    # multinomial
    n, d, K = 150, 4, 4
    centres = rng.standard_normal((K, d)) * 1.2
    y = rng.integers(0, K, n).astype(np.int64)
    X = centres[y] + rng.standard_normal((n, d))
    Xt = rng.standard_normal((25, d)) * 1.5
    t["multi.X"], t["multi.y"], t["multi.Xtest"] = X, y, Xt
    Cs = np.array([0.1, 2.0])
    t["multi.Cs"] = Cs
    for i, C in enumerate(Cs):
        m = LogisticRegression(C=C, **kw).fit(X, y)
        assert m.coef_.shape == (K, d)
        t[f"multi.C{i}.coef"] = m.coef_
        t[f"multi.C{i}.intercept"] = m.intercept_ - m.intercept_.mean()
        t[f"multi.C{i}.proba"] = m.predict_proba(Xt)

    # AUC with ties
    yb = (rng.random(200) < 0.3).astype(np.int64)
    s = np.round(rng.standard_normal(200) + 0.8 * yb, 1)  # rounding makes ties
    t["auc.score"], t["auc.y"] = s, yb
    t["auc.roc_auc"] = np.array([roc_auc_score(yb, s)])
    t["auc.average_precision"] = np.array([average_precision_score(yb, s)])

    # per-class metrics
    yt = rng.integers(0, 4, 90)
    yp = yt.copy()
    flip = rng.random(90) < 0.45
    yp[flip] = rng.integers(0, 5, flip.sum())
    yp[yp == 3] = 1  # class 3 never predicted; class 4 never true
    labels = list(range(5))
    p, r, f, sup = precision_recall_fscore_support(yt, yp, labels=labels, zero_division=0)
    t["f1.y_true"], t["f1.y_pred"] = yt.astype(np.int64), yp.astype(np.int64)
    t["f1.precision"], t["f1.recall"], t["f1.f1"] = p, r, f
    t["f1.support"] = sup.astype(np.int64)
    t["f1.accuracy"] = np.array([accuracy_score(yt, yp)])
    t["f1.macro"] = np.array([f1_score(yt, yp, average="macro", labels=labels, zero_division=0)])
    t["f1.weighted"] = np.array([f1_score(yt, yp, average="weighted", labels=labels, zero_division=0)])

    sc = StandardScaler().fit(t["binary.X"])
    t["scaler.mean"], t["scaler.scale"] = sc.mean_, sc.scale_

    meta = {"sklearn": sklearn.__version__, "numpy": np.__version__,
            "generator": "scripts/gen_analysis_fixtures.py"}
    return t, meta


def canonicalise_header(path):
    """Byte-reproducible files: sort the __metadata__ keys (safetensors writes them in hash order)."""
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        raw = f.read(n)
        header = json.loads(raw.decode("utf-8"))
        canon = {"__metadata__": dict(sorted(header.pop("__metadata__").items()))}
        canon.update(header)
        text = json.dumps(canon, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        assert len(text) <= n
        text += b" " * (n - len(text))
        f.seek(8)
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out-dir", default=os.path.join(here, "..", "tests", "fixtures", "analysis"))
    args = ap.parse_args()
    from safetensors.numpy import save_file

    os.makedirs(args.out_dir, exist_ok=True)
    tensors, meta = make(args.out_dir)
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    path = os.path.join(args.out_dir, "sklearn.safetensors")
    save_file(tensors, path, metadata=meta)
    canonicalise_header(path)
    os.chmod(path, 0o644)
    size = os.path.getsize(path)
    print(f"{path}: {len(tensors)} tensors, {size} bytes")
    assert size < 100_000, f"{path} is too large ({size} bytes)"
    return 0


if __name__ == "__main__":
    sys.exit(main())
