#!/usr/bin/env python3
"""Reference fixtures for genlm's training parts (tests/test_train_parts.cpp).

Writes, deterministically (fixed seeds, float64):

tests/fixtures/train/pca.safetensors
    input.X (n, d)                    correlated random data (low-rank signal + noise + offset)
    sklearn.components (k, d)         PCA(n_components=k, svd_solver="full").fit(X).components_
    sklearn.mean (d)                  .mean_
    sklearn.explained_variance (k)    .explained_variance_
    sklearn.explained_variance_ratio (k)
    sklearn.transform (n, k)          .transform(X)
    sklearn.inverse_transform (n, d)  .inverse_transform(.transform(X))
    numpy.norm_mean, numpy.norm_std (d)   X.mean(0), X.std(0) (ddof=0) of input.X with column 3
                                          set to 1.25 (metadata norm_const_col / norm_const_value):
                                          std 0 there, which genlm's normalizer replaces by 1

tests/fixtures/train/adamw.safetensors
    input.p0 (P), input.grads (S, P)  initial parameters and the gradient of every step
    torch.trajectory (S, P)           parameters after each torch.optim.AdamW step
                                      (lr 1e-2, betas (0.9, 0.999), eps 1e-6, weight_decay 0.01)
    torch_f32.trajectory (S, P) F32   the same run in float32
    hf422.trajectory (S, P)           transformers 4.22 AdamW (re-implemented in numpy from its
                                      source; same hyper-parameters, correct_bias=True)
    hf422_nowd.trajectory (S, P)      same with weight_decay 0 (the gLM reference setting)
    sched.constant / sched.constant_with_warmup / sched.linear_with_warmup (25)
                                      optimizer.param_groups[0]["lr"] before each of 25
                                      optimizer.step() calls, from transformers' real schedule
                                      functions (base lr 1e-3, warmup 5, total 20)
    clip.grads (3 tensors flattened, sizes in clip.sizes), clip.norm.max_norm (2),
    clip.norm.total (2), clip.norm.out (2, G), clip.value.c (1), clip.value.out (1, G)
                                      torch.nn.utils.clip_grad_norm_ / clip_grad_value_ results

Usage:  /opt/fixenv/bin/python scripts/gen_train_fixtures.py [--out-dir tests/fixtures/train]
"""
import argparse
import json
import math
import os
import sys

import numpy as np


def make_pca(out_dir):
    from sklearn.decomposition import PCA
    import sklearn

    rng = np.random.default_rng(20240611)
    n, d, k, latent = 160, 24, 7, 10
    scales = np.array([6.0, 4.5, 3.4, 2.6, 2.0, 1.5, 1.15, 0.85, 0.6, 0.4])
    Z = rng.standard_normal((n, latent)) * scales
    A = rng.standard_normal((latent, d))
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    X = Z @ A + 0.1 * rng.standard_normal((n, d)) + rng.normal(0.0, 3.0, size=d)

    p = PCA(n_components=k, svd_solver="full").fit(X)
    T = p.transform(X)
    Xr = p.inverse_transform(T)

    # Fixture sanity: well separated eigenvalues (components unique to ~1e-12) and an unambiguous
    # largest-|entry| per component (the sign convention is decidable).
    full = PCA(svd_solver="full").fit(X)
    ev = full.explained_variance_
    gaps = ev[: k] / ev[1 : k + 1]
    assert gaps.min() > 1.1, f"eigenvalue gaps too small: {gaps}"
    for i, c in enumerate(p.components_):
        a = np.sort(np.abs(c))[::-1]
        assert a[0] - a[1] > 1e-3, f"component {i}: ambiguous largest entry {a[:2]}"
        assert c[np.argmax(np.abs(c))] > 0, "sklearn sign convention changed?"
    # At least one component whose sign rule is not "sum positive" - guards against lucky signs.
    assert any(c.sum() < 0 for c in p.components_), "pick another seed: all component sums > 0"

    Xc = X.copy()
    Xc[:, 3] = 1.25  # a constant column: population std 0 -> genlm's normalizer uses std 1
    tensors = {
        "input.X": X,
        "sklearn.components": p.components_,
        "sklearn.mean": p.mean_,
        "sklearn.explained_variance": p.explained_variance_,
        "sklearn.explained_variance_ratio": p.explained_variance_ratio_,
        "sklearn.transform": T,
        "sklearn.inverse_transform": Xr,
        "numpy.norm_mean": Xc.mean(axis=0),
        "numpy.norm_std": Xc.std(axis=0),
    }
    meta = {"n": str(n), "d": str(d), "k": str(k), "sklearn": sklearn.__version__,
            "norm_const_col": "3", "norm_const_value": "1.25",
            "generator": "scripts/gen_train_fixtures.py"}
    return tensors, meta


def hf422_adamw(p0, grads, lr, betas, eps, weight_decay):
    """transformers 4.22 AdamW.step (correct_bias=True), transcribed from its source:

        exp_avg.mul_(beta1).add_(grad, alpha=(1.0 - beta1))
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        denom = exp_avg_sq.sqrt().add_(group["eps"])
        step_size = group["lr"]
        if group["correct_bias"]:
            bias_correction1 = 1.0 - beta1 ** state["step"]
            bias_correction2 = 1.0 - beta2 ** state["step"]
            step_size = step_size * math.sqrt(bias_correction2) / bias_correction1
        p.data.addcdiv_(exp_avg, denom, value=-step_size)
        if group["weight_decay"] > 0.0:
            p.data.add_(p.data, alpha=(-group["lr"] * group["weight_decay"]))
    """
    b1, b2 = betas
    p = p0.astype(np.float64).copy()
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    out = []
    for t, g in enumerate(grads, start=1):
        m = m * b1 + g * (1.0 - b1)
        v = v * b2 + (g * g) * (1.0 - b2)
        denom = np.sqrt(v) + eps
        step_size = lr
        bc1 = 1.0 - b1 ** t
        bc2 = 1.0 - b2 ** t
        step_size = step_size * math.sqrt(bc2) / bc1
        p = p + (-step_size) * (m / denom)
        if weight_decay > 0.0:
            p = p + (-lr * weight_decay) * p
        out.append(p.copy())
    return np.stack(out)


def torch_adamw(p0, grads, lr, betas, eps, weight_decay, dtype):
    import torch

    p = torch.nn.Parameter(torch.tensor(p0, dtype=dtype))
    opt = torch.optim.AdamW([p], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                            foreach=False, fused=False)
    out = []
    for g in grads:
        p.grad = torch.tensor(g, dtype=dtype)
        opt.step()
        out.append(p.detach().clone().numpy())
    return np.stack(out)


def make_adamw(out_dir):
    import torch
    import transformers
    from transformers import (get_constant_schedule, get_constant_schedule_with_warmup,
                              get_linear_schedule_with_warmup)

    rng = np.random.default_rng(7)
    P, S = 50, 12
    p0 = rng.standard_normal(P)
    # Per-element gradient scales from 1e-7 (eps matters) to 10; a few exact zeros.
    scale = np.logspace(-7, 1, P)
    rng.shuffle(scale)
    grads = rng.standard_normal((S, P)) * scale
    grads[:, 5] = 0.0
    grads[3, 11] = 0.0
    lr, betas, eps, wd = 1e-2, (0.9, 0.999), 1e-6, 0.01

    tr = torch_adamw(p0, grads, lr, betas, eps, wd, torch.float64)
    tr32 = torch_adamw(p0.astype(np.float32), grads.astype(np.float32), lr, betas, eps, wd,
                       torch.float32)
    hf = hf422_adamw(p0, grads, lr, betas, eps, wd)
    hf0 = hf422_adamw(p0, grads, lr, betas, eps, 0.0)

    # Self-check of the transcription: with eps = 0, wd = 0 and no zero gradients both update
    # rules are mathematically identical.
    g_nz = rng.standard_normal((S, P))
    a = hf422_adamw(p0, g_nz, lr, betas, 0.0, 0.0)
    b = torch_adamw(p0, g_nz, lr, betas, 0.0, 0.0, torch.float64)
    assert np.abs(a - b).max() < 1e-12, np.abs(a - b).max()
    assert np.abs(hf - tr).max() > 1e-9  # the two rules do differ with eps and weight decay

    # Schedules: lr in effect at each optimizer.step() (LambdaLR indexing).
    base_lr, warmup, total, steps = 1e-3, 5, 20, 25

    def sched_values(make):
        q = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
        opt = torch.optim.SGD([q], lr=base_lr)
        sch = make(opt)
        vals = []
        for _ in range(steps):
            vals.append(opt.param_groups[0]["lr"])
            q.grad = torch.zeros_like(q)
            opt.step()
            sch.step()
        return np.array(vals, dtype=np.float64)

    s_const = sched_values(get_constant_schedule)
    s_cw = sched_values(lambda o: get_constant_schedule_with_warmup(o, num_warmup_steps=warmup))
    s_lin = sched_values(lambda o: get_linear_schedule_with_warmup(o, warmup, total))

    # Clipping on three "parameters" of sizes 7, 13, 5.
    sizes = [7, 13, 5]
    cg = [rng.standard_normal(s) * 1.5 for s in sizes]
    flat = np.concatenate(cg)
    max_norms = [1.0, 100.0]
    totals, norm_out = [], []
    for mn in max_norms:
        ps = [torch.nn.Parameter(torch.zeros(s, dtype=torch.float64)) for s in sizes]
        for q, g in zip(ps, cg):
            q.grad = torch.tensor(g)
        tot = torch.nn.utils.clip_grad_norm_(ps, mn)
        totals.append(float(tot))
        norm_out.append(np.concatenate([q.grad.numpy() for q in ps]))
    cvals = [0.5]
    value_out = []
    for c in cvals:
        ps = [torch.nn.Parameter(torch.zeros(s, dtype=torch.float64)) for s in sizes]
        for q, g in zip(ps, cg):
            q.grad = torch.tensor(g)
        torch.nn.utils.clip_grad_value_(ps, c)
        value_out.append(np.concatenate([q.grad.numpy() for q in ps]))
    assert totals[0] > max_norms[0] and totals[1] < max_norms[1]
    assert np.abs(value_out[0]).max() == cvals[0]

    tensors = {
        "input.p0": p0,
        "input.grads": grads,
        "torch.trajectory": tr,
        "torch_f32.trajectory": tr32.astype(np.float32),
        "hf422.trajectory": hf,
        "hf422_nowd.trajectory": hf0,
        "sched.constant": s_const,
        "sched.constant_with_warmup": s_cw,
        "sched.linear_with_warmup": s_lin,
        "clip.sizes": np.array(sizes, dtype=np.int64),
        "clip.grads": flat,
        "clip.norm.max_norm": np.array(max_norms),
        "clip.norm.total": np.array(totals),
        "clip.norm.out": np.stack(norm_out),
        "clip.value.c": np.array(cvals),
        "clip.value.out": np.stack(value_out),
    }
    meta = {"lr": repr(lr), "beta1": repr(betas[0]), "beta2": repr(betas[1]), "eps": repr(eps),
            "weight_decay": repr(wd), "sched.base_lr": repr(base_lr), "sched.warmup": str(warmup),
            "sched.total": str(total), "torch": torch.__version__,
            "transformers": transformers.__version__, "generator": "scripts/gen_train_fixtures.py"}
    return tensors, meta


def canonicalise_header(path):
    """Byte-reproducible files: safetensors writes ``__metadata__`` from a Rust HashMap, so its key
    order changes from run to run. Rewrite the header in place with the metadata keys sorted (same
    length, tensor entries and data untouched)."""
    import struct

    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        raw = f.read(n)
        header = json.loads(raw.decode("utf-8"))
        canon = {"__metadata__": dict(sorted(header.pop("__metadata__").items()))}
        canon.update(header)
        text = json.dumps(canon, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        assert len(text) <= n, "canonical header longer than the original"
        text += b" " * (n - len(text))
        assert json.loads(text.decode("utf-8")) == json.loads(raw.decode("utf-8"))
        f.seek(8)
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out-dir", default=os.path.join(here, "..", "tests", "fixtures", "train"))
    args = ap.parse_args()
    from safetensors.numpy import save_file
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    os.makedirs(args.out_dir, exist_ok=True)
    for name, make in (("pca", make_pca), ("adamw", make_adamw)):
        tensors, meta = make(args.out_dir)
        tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        path = os.path.join(args.out_dir, name + ".safetensors")
        save_file(tensors, path, metadata=meta)
        canonicalise_header(path)
        os.chmod(path, 0o644)  # save_file creates the file 0600
        size = os.path.getsize(path)
        print(f"{path}: {len(tensors)} tensors, {size} bytes")
        for k in sorted(tensors):
            v = tensors[k]
            print(f"  {k:34s} {str(v.dtype):8s} {str(v.shape):10s} "
                  f"absmax {np.abs(v).max():.6g}")
        assert size < 100_000, f"{path} is too large ({size} bytes)"
    return 0


if __name__ == "__main__":
    sys.exit(main())
