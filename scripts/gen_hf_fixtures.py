#!/usr/bin/env python3
"""Generate Hugging Face RoBERTa reference fixtures for genlm's C++ tests.

Writes tests/fixtures/hf/{relkq_f32,relkq_f64,relk_f64}.safetensors using
transformers' own RobertaModel (add_pooling_layer=False, eager attention,
eval mode so every dropout is off), fed through ``inputs_embeds`` with a
padded attention mask.  Each file holds:

  * every entry of ``model.state_dict()`` under its Hugging Face name;
  * ``input.inputs_embeds`` (B, L, H), ``input.attention_mask`` (B, L),
    ``input.cotangent`` (B, L, H), all in the model's float dtype;
  * ``output.last_hidden_state`` (B, L, H) and ``output.attentions.{i}``
    (B, heads, L, L) for every layer i;
  * gradients of ``loss = sum(last_hidden_state * cotangent)``:
    ``grad.<param name>`` for every parameter that receives a gradient and
    ``grad.inputs_embeds``;
  * ``__metadata__``: ``config`` (JSON), ``torch_version``,
    ``transformers_version``, ``generator``.

After writing, the files are re-read and checked against an independent
numpy float64 implementation of the forward pass written from
/work/shared/SPEC.md (plus a finite-difference spot check of the stored
gradients).  ``--check`` runs only that verification on existing files.

Python is only needed to regenerate the fixtures; the C++ tests read the
committed files.

Usage:
  python3 -m venv /opt/fixenv
  /opt/fixenv/bin/pip install 'transformers<5' torch safetensors scikit-learn numpy
  /opt/fixenv/bin/python scripts/gen_hf_fixtures.py            # generate + check
  /opt/fixenv/bin/python scripts/gen_hf_fixtures.py --check    # check only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np

GENERATOR = "scripts/gen_hf_fixtures.py"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO_ROOT, "tests", "fixtures", "hf")

SEED = 20240402
BATCH = 3
SEQ_LEN = 30
REAL_LENGTHS = (30, 17, 5)  # real positions per sequence, then padding

BASE_CONFIG = dict(
    vocab_size=8,  # unused (inputs_embeds only)
    hidden_size=32,
    num_attention_heads=4,
    num_hidden_layers=2,
    intermediate_size=48,
    max_position_embeddings=32,
    type_vocab_size=1,
    hidden_act="gelu",  # exact erf GELU
    layer_norm_eps=1e-12,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)

# (file stem, position_embedding_type, dtype name)
FIXTURES = (
    ("relkq_f32", "relative_key_query", "float32"),
    ("relkq_f64", "relative_key_query", "float64"),
    ("relk_f64", "relative_key", "float64"),
)

FWD_TOL = 1e-10  # numpy float64 vs transformers float64
FWD_TOL_F32 = 2e-4  # numpy float64 vs transformers float32 (sanity only)


def fixture_config(pos_type: str, dtype_name: str) -> dict:
    cfg = dict(BASE_CONFIG)
    cfg["position_embedding_type"] = pos_type
    cfg["attn_implementation"] = "eager"
    cfg["add_pooling_layer"] = False
    cfg["dtype"] = dtype_name
    cfg["batch"] = BATCH
    cfg["seq_len"] = SEQ_LEN
    cfg["real_lengths"] = list(REAL_LENGTHS)
    cfg["seed"] = SEED
    cfg["loss"] = "sum(last_hidden_state * cotangent)"
    return cfg


# --------------------------------------------------------------------------
# Generation (torch + transformers)
# --------------------------------------------------------------------------


def _init_params(model, gen):
    """Deterministic, non-trivial initialisation of every parameter.

    LayerNorm weight = 1 + N(0, 0.1), LayerNorm bias = N(0, 0.1), everything
    else (Linear weights/biases, distance_embedding, token_type embedding and
    the unused word/position embeddings) N(0, 0.2).  Values are drawn in
    float32 in the order of ``named_parameters()``.
    """
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.1 * noise)
            elif "LayerNorm.bias" in name:
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.2 * noise)


def _make_inputs(gen, hidden):
    import torch

    x = torch.randn((BATCH, SEQ_LEN, hidden), generator=gen, dtype=torch.float32)
    mask = torch.zeros((BATCH, SEQ_LEN), dtype=torch.float32)
    for b, n in enumerate(REAL_LENGTHS):
        mask[b, :n] = 1.0
    cot = torch.randn((BATCH, SEQ_LEN, hidden), generator=gen, dtype=torch.float32)
    return x, mask, cot


def generate_one(stem, pos_type, dtype_name):
    import safetensors.torch
    import torch
    import transformers
    from transformers import RobertaConfig, RobertaModel

    dtype = {"float32": torch.float32, "float64": torch.float64}[dtype_name]

    config = RobertaConfig(
        position_embedding_type=pos_type, attn_implementation="eager", **BASE_CONFIG
    )
    # Parameters are created in float32 and initialised from a seeded
    # generator, so every fixture with the same config shares bit-identical
    # float32 weights; float64 fixtures use those values exactly (upcast).
    torch.manual_seed(SEED)
    model = RobertaModel(config, add_pooling_layer=False)
    gen = torch.Generator().manual_seed(SEED)
    _init_params(model, gen)
    x, mask, cot = _make_inputs(gen, config.hidden_size)

    model = model.to(dtype)
    model.eval()  # dropout off (the probabilities are 0 anyway)
    for mod in model.modules():
        if isinstance(mod, torch.nn.Dropout):
            assert not mod.training and mod.p == 0.0
    attn_cls = type(model.encoder.layer[0].attention.self).__name__
    assert attn_cls == "RobertaSelfAttention", attn_cls

    x = x.to(dtype).requires_grad_(True)
    mask = mask.to(dtype)
    cot = cot.to(dtype)

    model.zero_grad(set_to_none=True)
    out = model(inputs_embeds=x, attention_mask=mask, output_attentions=True, return_dict=True)
    hs = out.last_hidden_state
    loss = (hs * cot).sum()
    loss.backward()

    tensors = {}
    for name, t in model.state_dict().items():
        tensors[name] = t.detach().clone().contiguous()
    tensors["input.inputs_embeds"] = x.detach().clone().contiguous()
    tensors["input.attention_mask"] = mask.detach().clone().contiguous()
    tensors["input.cotangent"] = cot.detach().clone().contiguous()
    tensors["output.last_hidden_state"] = hs.detach().clone().contiguous()
    assert len(out.attentions) == config.num_hidden_layers
    for i, a in enumerate(out.attentions):
        tensors[f"output.attentions.{i}"] = a.detach().clone().contiguous()
    no_grad = []
    for name, p in model.named_parameters():
        if p.grad is None:
            no_grad.append(name)
            continue
        tensors[f"grad.{name}"] = p.grad.detach().clone().contiguous()
    tensors["grad.inputs_embeds"] = x.grad.detach().clone().contiguous()

    for k, t in tensors.items():
        assert t.dtype == dtype, (k, t.dtype)

    metadata = {
        "config": json.dumps(fixture_config(pos_type, dtype_name), sort_keys=True),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "generator": GENERATOR,
    }
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, f"{stem}.safetensors")
    safetensors.torch.save_file(tensors, path, metadata=metadata)
    _canonicalise_header(path)
    os.chmod(path, 0o644)  # save_file creates the file 0600
    return path, tensors, no_grad


def _canonicalise_header(path):
    """Make the file byte-reproducible.

    safetensors serialises ``__metadata__`` from a Rust HashMap, so its key
    order changes from run to run.  Rewrite the header in place with the
    metadata keys sorted (same bytes otherwise, same header length, tensor
    entries and data untouched).
    """
    import struct

    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        raw = f.read(n)
        header = json.loads(raw.decode("utf-8"))
        meta = header.pop("__metadata__")
        canon = {"__metadata__": dict(sorted(meta.items()))}
        canon.update(header)  # tensor entries keep safetensors' own order
        text = json.dumps(canon, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        assert len(text) <= n, "canonical header longer than the original"
        text = text + b" " * (n - len(text))
        assert json.loads(text.decode("utf-8")) == json.loads(raw.decode("utf-8"))
        f.seek(8)
        f.write(text)


def generate_all():
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    results = []
    for stem, pos_type, dtype_name in FIXTURES:
        path, tensors, no_grad = generate_one(stem, pos_type, dtype_name)
        results.append((path, tensors, no_grad))
    print("Generated fixtures:")
    for path, tensors, no_grad in results:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        print(
            f"  {os.path.relpath(path, REPO_ROOT)}: {len(tensors)} tensors, "
            f"{size} bytes ({size / 1024:.1f} KiB), sha256 {digest}..."
        )
        if no_grad:
            print(f"    parameters without a gradient (not stored as grad.*): {', '.join(no_grad)}")
        assert size < 1024 * 1024, "fixture too large"


# --------------------------------------------------------------------------
# Independent numpy float64 reference (written from SPEC.md, no torch)
# --------------------------------------------------------------------------


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _layer_norm(x, w, b, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)  # biased variance
    return (x - mu) / np.sqrt(var + eps) * w + b


def _linear(x, w, b):
    return x @ w.T + b  # nn.Linear: weight [out, in]


def np_forward(W, x, m, cfg):
    """Forward pass per SPEC.md. W: name -> float64 array. Returns (hidden, attentions)."""
    B, L, H = x.shape
    nh = cfg["num_attention_heads"]
    d = H // nh
    M = cfg["max_position_embeddings"]
    eps = cfg["layer_norm_eps"]
    pos_type = cfg["position_embedding_type"]
    assert pos_type in ("relative_key", "relative_key_query")
    assert L <= M

    # Embeddings: inputs_embeds + token_type row 0, no absolute positions, LayerNorm.
    h = x + W["embeddings.token_type_embeddings.weight"][0]
    h = _layer_norm(h, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], eps)

    # Additive key mask: (1 - m_r) * finfo(float).min.
    mask_add = (1.0 - m)[:, None, None, :] * np.finfo(np.float64).min
    # Relative distances from array positions only: P[l, r] = E[l - r + M - 1].
    idx = np.arange(L)[:, None] - np.arange(L)[None, :] + M - 1

    def heads(t):
        return t.reshape(B, L, nh, d).transpose(0, 2, 1, 3)

    attentions = []
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q = heads(_linear(h, W[p + "attention.self.query.weight"], W[p + "attention.self.query.bias"]))
        k = heads(_linear(h, W[p + "attention.self.key.weight"], W[p + "attention.self.key.bias"]))
        v = heads(_linear(h, W[p + "attention.self.value.weight"], W[p + "attention.self.value.bias"]))
        P = W[p + "attention.self.distance_embedding.weight"][idx]  # (L, L, d)
        S = np.einsum("bhld,bhrd->bhlr", q, k) + np.einsum("bhld,lrd->bhlr", q, P)
        if pos_type == "relative_key_query":
            S = S + np.einsum("bhrd,lrd->bhlr", k, P)
        S = S / math.sqrt(d) + mask_add
        S = S - S.max(axis=-1, keepdims=True)
        A = np.exp(S)
        A = A / A.sum(axis=-1, keepdims=True)
        attentions.append(A)
        ctx = (A @ v).transpose(0, 2, 1, 3).reshape(B, L, H)
        a = _layer_norm(
            _linear(ctx, W[p + "attention.output.dense.weight"], W[p + "attention.output.dense.bias"]) + h,
            W[p + "attention.output.LayerNorm.weight"],
            W[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        f = _gelu(_linear(a, W[p + "intermediate.dense.weight"], W[p + "intermediate.dense.bias"]))
        h = _layer_norm(
            _linear(f, W[p + "output.dense.weight"], W[p + "output.dense.bias"]) + a,
            W[p + "output.LayerNorm.weight"],
            W[p + "output.LayerNorm.bias"],
            eps,
        )
    return h, attentions


def check_file(path, fd_check=True):
    """Re-read a fixture and compare it with the numpy reference. Returns max diffs."""
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
        T = {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    for key in ("torch_version", "transformers_version"):
        assert key in meta, key
    assert meta["generator"] == GENERATOR
    dtype = np.dtype(cfg["dtype"])
    for k, t in T.items():
        assert t.dtype == dtype, (k, t.dtype)

    W = {k: v.astype(np.float64) for k, v in T.items() if not k.split(".")[0] in ("input", "output", "grad")}
    x = T["input.inputs_embeds"].astype(np.float64)
    m = T["input.attention_mask"].astype(np.float64)
    cot = T["input.cotangent"].astype(np.float64)
    B, L, H = x.shape
    assert (B, L, H) == (cfg["batch"], cfg["seq_len"], cfg["hidden_size"])
    for b, n in enumerate(cfg["real_lengths"]):
        assert np.all(m[b, :n] == 1) and np.all(m[b, n:] == 0)

    hs, atts = np_forward(W, x, m, cfg)
    d_hidden = float(np.abs(hs - T["output.last_hidden_state"]).max())
    d_att = max(float(np.abs(a - T[f"output.attentions.{i}"]).max()) for i, a in enumerate(atts))
    tol = FWD_TOL if dtype == np.float64 else FWD_TOL_F32
    ok = d_hidden <= tol and d_att <= tol
    # Attention to padded keys is exactly zero in the stored probabilities.
    pad_att = 0.0
    for i in range(cfg["num_hidden_layers"]):
        A = T[f"output.attentions.{i}"]
        for b, n in enumerate(cfg["real_lengths"]):
            pad_att = max(pad_att, float(np.abs(A[b, :, :, n:]).max()) if n < L else 0.0)
    print(
        f"  {os.path.relpath(path, REPO_ROOT)} [{cfg['position_embedding_type']}, {cfg['dtype']}]: "
        f"max|numpy - hf| last_hidden_state {d_hidden:.3e}, attentions {d_att:.3e} "
        f"(tol {tol:g}) {'OK' if ok else 'FAIL'}; max attention on padded keys {pad_att:.1e}"
    )
    if not ok:
        raise AssertionError(f"{path}: numpy reference disagrees with transformers")

    fd_max_rel = None
    if fd_check and dtype == np.float64:
        fd_max_rel = _fd_spot_check(T, W, x, m, cot, cfg)
    return d_hidden, d_att, fd_max_rel


def _fd_spot_check(T, W, x, m, cot, cfg):
    """Central finite differences of the numpy loss vs the stored gradients."""
    M = cfg["max_position_embeddings"]
    L = x.shape[1]

    def loss(Wd, xd):
        hs, _ = np_forward(Wd, xd, m, cfg)
        return float((hs * cot).sum())

    probes = [
        ("inputs_embeds", (0, 3, 7)),
        ("inputs_embeds", (1, 20, 5)),  # padding position of sequence 1
        ("inputs_embeds", (2, 29, 31)),  # padding position of sequence 2
        ("embeddings.token_type_embeddings.weight", (0, 4)),
        ("embeddings.LayerNorm.weight", (9,)),
        ("encoder.layer.0.attention.self.query.weight", (5, 11)),
        ("encoder.layer.0.attention.self.key.bias", (30,)),
        ("encoder.layer.0.attention.self.value.weight", (17, 2)),
        ("encoder.layer.0.attention.self.distance_embedding.weight", (M - 1, 3)),  # distance 0
        ("encoder.layer.0.attention.self.distance_embedding.weight", (M - 1 + L - 1, 6)),  # distance +29
        ("encoder.layer.1.attention.self.distance_embedding.weight", (M - 1 - 4, 0)),  # distance -4
        ("encoder.layer.1.attention.output.LayerNorm.bias", (12,)),
        ("encoder.layer.1.intermediate.dense.weight", (40, 8)),
        ("encoder.layer.1.output.dense.bias", (3,)),
        ("encoder.layer.1.output.LayerNorm.weight", (21,)),
    ]
    h = 1e-6
    worst = 0.0
    for name, ix in probes:
        if name == "inputs_embeds":
            base = x
        else:
            base = W[name]
        plus = base.copy()
        minus = base.copy()
        plus[ix] += h
        minus[ix] -= h
        if name == "inputs_embeds":
            fd = (loss(W, plus) - loss(W, minus)) / (2 * h)
        else:
            fd = (loss({**W, name: plus}, x) - loss({**W, name: minus}, x)) / (2 * h)
        g = float(T[f"grad.{name}"][ix])
        rel = abs(fd - g) / max(1.0, abs(g))
        worst = max(worst, rel)
    print(f"    finite-difference spot check of {len(probes)} stored gradients: max rel err {worst:.2e}")
    if worst > 1e-6:
        raise AssertionError("stored gradients disagree with finite differences")
    # Distance rows that no |l - r| <= L - 1 reaches get an exact-zero gradient.
    for i in range(cfg["num_hidden_layers"]):
        gE = T[f"grad.encoder.layer.{i}.attention.self.distance_embedding.weight"]
        used = np.zeros(gE.shape[0], bool)
        used[M - L : M + L - 1] = True
        assert np.all(gE[~used] == 0.0)
        assert np.all(np.abs(gE[used]).sum(axis=1) > 0.0)
    return worst


def check_all():
    print("Checking fixtures against the numpy float64 reference (SPEC.md):")
    worst64 = 0.0
    for stem, _, dtype_name in FIXTURES:
        path = os.path.join(OUT_DIR, f"{stem}.safetensors")
        d_hidden, d_att, _ = check_file(path)
        if dtype_name == "float64":
            worst64 = max(worst64, d_hidden, d_att)
    print(f"  max |numpy - transformers| over float64 fixtures: {worst64:.3e}")
    return worst64


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only verify existing fixtures (no torch needed)")
    args = ap.parse_args(argv)
    if not args.check:
        generate_all()
    check_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
