#!/usr/bin/env python3
"""genlm vs PyTorch on the same machine, same workloads, same threads; plus the machine's limits.

Runs, one process per measurement (so each process's max RSS is that workload's peak memory):
  * genlm:   build-perf/benchmarks/genlm_workload --config C --workload W --threads N ...
  * PyTorch: this script with --torch-worker (transformers RobertaModel, relative_key_query,
             float32, eager attention, + Linear(plm+1 -> hidden) input and the two gLM heads)
  * the machine's float32 FMA peak (genlm_fma_peak) and the float32 GEMM ceiling: genlm::cpu's
    own sgemm (oneDNN, else OpenBLAS; genlm_bench_gemm, 2048^3 product) at each thread count,
and prints a table: time per step, genes/s, the PyTorch/genlm time ratio (> 1: genlm faster),
achieved GFLOP/s (analytic FLOP count of the model's products) against both limits, and max RSS.

Workloads (B contigs x L genes, default 8 x 30; all genes real, 15% masked):
  forward: inference forward (eval mode: no dropout; PyTorch under torch.inference_mode()).
  train:   forward (dropout 0.1) + masked-gene loss (closest-hypothesis MSE + 1e-4 CE) +
           backward + clip_grad_value(1.0) + AdamW (lr 1e-4, eps 1e-6, wd 0).
           PyTorch: torch.optim.AdamW, by default its default CPU implementation (for-loop);
           --torch-adamw foreach|fused selects the others.

Each (config, workload, threads) is measured --rounds times alternating genlm and PyTorch; the
table reports the fastest round's median step time (the machine may be shared: see --rounds).

--precision fp32,bf16 (CPU): bf16 runs genlm::cpu_bf16 (bf16-rounded GEMM inputs, float32
accumulation, AMX tiles where the CPU has them) against PyTorch under torch.autocast("cpu",
bfloat16) (oneDNN; AMX where present); master weights and optimizer float32 on both sides. Its
"% GEMM ceil" is of genlm::cpu_bf16's own 2048^3 product.

GPU mode (--device cuda): genlm's CUDA backend (build/benchmarks/genlm_workload_cuda --precision P)
against the same PyTorch model on the same GPU, one process per measurement, for each precision P of
--precision (fp32: IEEE float32 products on both sides, torch allow_tf32 = False; tf32: tensor-core
TF32 products, torch allow_tf32 = True; bf16: bf16 GEMM inputs with float32 master weights, torch
autocast(bfloat16)) and each batch size of --batch (e.g. 8,64). Step times are host wall-clock
between device synchronisations (both sides); the table adds achieved TFLOP/s against cuBLAS's own
8192^3 GEMM rate in the same precision (genlm_workload_cuda --peak) and peak allocated GPU memory
(genlm: cuda_allocator peak_bytes; PyTorch: torch.cuda.max_memory_allocated). torch.optim.AdamW's
default on CUDA is its foreach implementation. Without a torch that sees a GPU it stops with a
message saying why.

The PyTorch encoder is transformers' RobertaModel when the installed transformers still has
relative_key_query attention (transformers < 5); transformers 5 removed it, and then the script uses
its own transcription of transformers 4.57's RoBERTa code (builtin_roberta: same modules, parameter
names and operations); --torch-impl forces one. --check-builtin compares that transcription with
transformers 4.57.6's outputs and gradients stored in tests/fixtures/hf/relkq_f64.safetensors.

Usage:
  /opt/fixenv/bin/python scripts/compare_pytorch.py [--build build-perf] [--configs small,paper]
      [--workloads forward,train] [--threads 1,2] [--batch 8] [--len 30] [--iters 5] [--rounds 2]
      [--precision fp32,bf16] [--markdown] [--json out.json]
  python3 scripts/compare_pytorch.py --device cuda --build build-gpu [--precision fp32,tf32,bf16]
      [--batch 8,64] [--configs paper,small] [--iters 20] [--warmup 3] [--torch-adamw default|fused]
  python3 scripts/compare_pytorch.py --check-builtin
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIGS = {  # genlm::configs (include/genlm/model/config.hpp)
    "paper": dict(layers=19, hidden=1280, heads=10, inter=3072, plm=1280, pca=99, hyp=4, maxpos=512),
    "small": dict(layers=4, hidden=128, heads=4, inter=512, plm=256, pca=99, hyp=4, maxpos=32),
}


# ----------------------------------------------------------------------------- PyTorch model
def print_table(hdr, cells, markdown):
    """Prints rows of cell strings under hdr, as a markdown table or right-aligned columns."""
    if markdown:
        print("| " + " | ".join(hdr) + " |")
        print("|" + "---|" * len(hdr))
        for c in cells:
            print("| " + " | ".join(c) + " |")
    else:
        w = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(hdr)]
        print("  ".join(h.rjust(w[i]) for i, h in enumerate(hdr)))
        for c in cells:
            print("  ".join(v.rjust(w[i]) for i, v in enumerate(c)))


def builtin_roberta(torch, nn, F, c, hidden_dropout, attn_dropout, layer_norm_eps=1e-12):
    """transformers 4.x RobertaModel(add_pooling_layer=False) with position_embedding_type
    "relative_key_query", eager attention, fed through inputs_embeds: the same modules, parameter
    names and operations (einsum relative terms, finfo.min mask, exact GELU), transcribed from
    transformers 4.57's modeling_roberta.py. transformers 5 removed the relative position
    embeddings (huggingface/transformers#41170), so this stands in when the installed transformers
    has none; --check-builtin compares it with tests/fixtures/hf/relkq_f64.safetensors (made by
    transformers 4.57.6's own RobertaModel). Returns a module m with m(x_emb, mask) -> hidden."""
    H, hid, maxpos = c["heads"], c["hidden"], c["maxpos"]
    hd = hid // H

    class Embeddings(nn.Module):
        def __init__(self):
            super().__init__()
            # word / absolute position tables exist (unused with inputs_embeds + relative
            # positions) as in transformers, so parameter counts and state dicts match
            self.word_embeddings = nn.Embedding(c.get("vocab", 2), hid)
            self.position_embeddings = nn.Embedding(maxpos, hid)
            self.token_type_embeddings = nn.Embedding(1, hid)
            self.LayerNorm = nn.LayerNorm(hid, eps=layer_norm_eps)
            self.dropout = nn.Dropout(hidden_dropout)

        def forward(self, x):
            tt = torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)
            return self.dropout(self.LayerNorm(x + self.token_type_embeddings(tt)))

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.query = nn.Linear(hid, hid)
            self.key = nn.Linear(hid, hid)
            self.value = nn.Linear(hid, hid)
            self.dropout = nn.Dropout(attn_dropout)
            self.distance_embedding = nn.Embedding(2 * maxpos - 1, hd)

        def forward(self, h, ext_mask):
            B, L, _ = h.shape
            q = self.query(h).view(B, L, H, hd).transpose(1, 2)
            k = self.key(h).view(B, L, H, hd).transpose(1, 2)
            v = self.value(h).view(B, L, H, hd).transpose(1, 2)
            scores = torch.matmul(q, k.transpose(-1, -2))
            pl = torch.arange(L, dtype=torch.long, device=h.device).view(-1, 1)
            pr = torch.arange(L, dtype=torch.long, device=h.device).view(1, -1)
            pos = self.distance_embedding(pl - pr + maxpos - 1).to(dtype=q.dtype)
            scores = scores + torch.einsum("bhld,lrd->bhlr", q, pos) + torch.einsum("bhrd,lrd->bhlr", k, pos)
            scores = scores / math.sqrt(hd) + ext_mask
            probs = self.dropout(F.softmax(scores, dim=-1))
            return torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous().view(B, L, hid)

    class DenseLN(nn.Module):  # RobertaSelfOutput / RobertaOutput
        def __init__(self, n_in):
            super().__init__()
            self.dense = nn.Linear(n_in, hid)
            self.LayerNorm = nn.LayerNorm(hid, eps=layer_norm_eps)
            self.dropout = nn.Dropout(hidden_dropout)

        def forward(self, h, res):
            return self.LayerNorm(self.dropout(self.dense(h)) + res)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            setattr(self, "self", SelfAttention())
            self.output = DenseLN(hid)

        def forward(self, h, ext_mask):
            return self.output(getattr(self, "self")(h, ext_mask), h)

    class Intermediate(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(hid, c["inter"])

        def forward(self, h):
            return F.gelu(self.dense(h))

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = Attention()
            self.intermediate = Intermediate()
            self.output = DenseLN(c["inter"])

        def forward(self, h, ext_mask):
            a = self.attention(h, ext_mask)
            return self.output(self.intermediate(a), a)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.ModuleList([Layer() for _ in range(c["layers"])])

    class Roberta(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = Embeddings()
            self.encoder = Encoder()
            for m in self.modules():  # RobertaPreTrainedModel._init_weights
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, mean=0.0, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
                if isinstance(m, nn.LayerNorm):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

        def forward(self, x, mask):
            dt = self.embeddings.LayerNorm.weight.dtype
            ext = (1.0 - mask[:, None, None, :].to(dt)) * torch.finfo(dt).min
            h = self.embeddings(x)
            for lay in self.encoder.layer:
                h = lay(h, ext)
            return h

    return Roberta()


def make_encoder(torch, nn, F, c, impl: str, hidden_dropout=0.1, attn_dropout=0.1):
    """The RoBERTa encoder of the comparison: (module, impl name). impl: auto | transformers |
    builtin. auto = transformers' RobertaModel when it has relative_key_query (transformers < 5),
    else builtin_roberta (same operations)."""
    if impl == "auto":
        try:
            from importlib.metadata import version

            if int(version("transformers").split(".")[0]) >= 5:  # no relative_key_query: skip the import
                impl = "builtin"
        except Exception:  # noqa: BLE001  (not installed: builtin)
            impl = "builtin"
    if impl in ("auto", "transformers"):
        try:
            import transformers
            from transformers import RobertaConfig, RobertaModel

            cfg = RobertaConfig(
                vocab_size=2, pad_token_id=1, hidden_size=c["hidden"], num_hidden_layers=c["layers"],
                num_attention_heads=c["heads"], intermediate_size=c["inter"], max_position_embeddings=c["maxpos"],
                position_embedding_type="relative_key_query", type_vocab_size=1, hidden_dropout_prob=hidden_dropout,
                attention_probs_dropout_prob=attn_dropout, layer_norm_eps=1e-12, hidden_act="gelu")
            cfg._attn_implementation = "eager"
            m = RobertaModel(cfg, add_pooling_layer=False)
            if hasattr(m.encoder.layer[0].attention.self, "distance_embedding"):

                class HF(nn.Module):
                    def __init__(self):
                        super().__init__()
                        self.roberta = m

                    def forward(self, x, mask):
                        return self.roberta(inputs_embeds=x, attention_mask=mask).last_hidden_state

                return HF(), f"transformers-{transformers.__version__}"
            if impl == "transformers":
                sys.exit(f"transformers {transformers.__version__} has no relative_key_query attention "
                         "(removed in transformers 5); use --torch-impl builtin or auto")
        except ImportError as e:
            if impl == "transformers":
                sys.exit(f"--torch-impl transformers: cannot import transformers ({e})")
    return builtin_roberta(torch, nn, F, c, hidden_dropout, attn_dropout), "builtin-roberta-rkq"


def check_builtin(args) -> int:
    """builtin_roberta against transformers 4.57.6's own outputs and gradients
    (tests/fixtures/hf/relkq_f64.safetensors, float64, CPU): prints the max errors, returns 0/1."""
    try:
        import torch
        import torch.nn.functional as F
        from torch import nn
        from safetensors.torch import load_file
    except ImportError as e:
        print(f"--check-builtin needs torch and safetensors: {e}", file=sys.stderr)
        return 2

    path = os.path.join(REPO, "tests", "fixtures", "hf", "relkq_f64.safetensors")
    t = load_file(path)
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        meta = json.loads(f.metadata()["config"])
    c = dict(layers=meta["num_hidden_layers"], hidden=meta["hidden_size"], heads=meta["num_attention_heads"],
             inter=meta["intermediate_size"], maxpos=meta["max_position_embeddings"], vocab=meta["vocab_size"])
    m = builtin_roberta(torch, nn, F, c, 0.0, 0.0).double().eval()
    weights = {k: v for k, v in t.items() if not k.split(".")[0] in ("input", "output", "grad")}
    m.load_state_dict(weights, strict=True)
    x = t["input.inputs_embeds"].clone().requires_grad_(True)
    h = m(x, t["input.attention_mask"])
    (h * t["input.cotangent"]).sum().backward()
    err_h = (h - t["output.last_hidden_state"]).abs().max().item()
    err_g = 0.0
    n_g = 0
    for name, p in list(m.named_parameters()) + [("inputs_embeds", x)]:
        ref = t.get("grad." + name)
        if ref is None:
            continue
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        err_g = max(err_g, ((g - ref).abs().max() / (ref.abs().max() + 1e-30)).item())
        n_g += 1
    ok = err_h < 1e-10 and err_g < 1e-9 and n_g > 0
    print(json.dumps(dict(check="builtin-roberta-rkq vs transformers 4.57.6 fixture", file=os.path.relpath(path, REPO),
                          max_abs_err_hidden=err_h, max_rel_err_grads=err_g, grads_compared=n_g,
                          result="pass" if ok else "FAIL")))
    return 0 if ok else 1


# ----------------------------------------------------------------------------- PyTorch worker
def torch_worker(args) -> None:
    cuda = args.device == "cuda"
    if not cuda:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    import torch.nn.functional as F
    from torch import nn

    if cuda:
        if not torch.cuda.is_available():
            sys.exit(f"torch {torch.__version__} sees no CUDA device (torch.version.cuda={torch.version.cuda})")
        tf32 = args.precision == "tf32"  # fp32 / bf16: IEEE float32 products outside autocast
        if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9 (allow_tf32 deprecated)
            torch.backends.cuda.matmul.fp32_precision = "tf32" if tf32 else "ieee"
        else:
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        dev = torch.device("cuda")
    else:
        torch.set_num_threads(args.threads)
        dev = torch.device("cpu")
    torch.manual_seed(0)
    c = CONFIGS[args.config]
    D = c["pca"] + 1
    K = c["hyp"]
    t_init = time.perf_counter()
    with torch.device(dev):  # parameters are created (and initialised) on the device directly
        enc, impl_name = make_encoder(torch, nn, F, c, args.torch_impl)

    class GLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(c["plm"] + 1, c["hidden"])
            self.roberta = enc
            self.hyp = nn.Linear(c["hidden"], K * D)
            self.prob = nn.Linear(c["hidden"], K)

        def forward(self, x, mask):
            h = self.roberta(self.dense(x), mask)
            return self.hyp(h).view(x.shape[0], x.shape[1], K, D), self.prob(h)

    with torch.device(dev):
        model = GLM().float()
    init_s = time.perf_counter() - t_init  # building the model: its random initial weights
    B, L = args.batch, args.len
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, L, c["plm"] + 1, generator=g)
    mask = torch.ones(B, L)
    sel = torch.rand(B, L, generator=g) < 0.15
    if not sel.any():
        sel[0, 0] = True
    x[sel] = -1.0
    bi, li = sel.nonzero(as_tuple=True)
    y = torch.randn(len(bi), D, generator=g).clamp(-10, 10)
    x, mask, bi, li, y = (t.to(dev) for t in (x, mask, bi, li, y))
    autocast = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if args.precision == "bf16" else None

    if args.workload == "forward":
        model.eval()

        def once():
            with torch.inference_mode():
                if autocast:
                    with autocast():
                        model(x, mask)
                else:
                    model(x, mask)
    else:
        model.train()
        impl = {"default": {}, "foreach": dict(foreach=True), "fused": dict(fused=True)}[args.torch_adamw]
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, **impl)
        ar = torch.arange(len(bi), device=dev)

        def loss_fn():
            hyp, logits = model(x, mask)
            hm = hyp[bi, li].float()                           # (n, K, D)
            k = ((hm - y[:, None]) ** 2).sum(-1).argmin(1)     # closest hypothesis
            best = hm[ar, k]
            return F.mse_loss(best, y) + 1e-4 * F.cross_entropy(logits[bi, li].float(), k)

        def once():
            opt.zero_grad(set_to_none=True)
            if autocast:
                with autocast():
                    loss = loss_fn()
            else:
                loss = loss_fn()
            loss.backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), 1.0)
            opt.step()

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(args.warmup):
        once()
    sync()
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        once()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    prof = {}
    if args.torch_profile:  # after the timed runs (max RSS already read): PyTorch's own time in products
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as p:
            for _ in range(args.iters):
                once()
            sync()
        gemm_ops = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm")
        ev = {e.key: e.self_cpu_time_total for e in p.key_averages()}
        prof = dict(products_s=sum(ev.get(k, 0.0) for k in gemm_ops) / 1e6 / args.iters,
                    products_by_op={k: ev[k] / 1e6 / args.iters for k in gemm_ops if k in ev})
    out = dict(impl="pytorch", workload=args.workload, batch=B, len=L, median_s=med, min_s=times[0],
               genes_per_s=B * L / med, params=sum(p.numel() for p in model.parameters()), max_rss_mb=rss,
               torch=torch.__version__, torch_impl=impl_name, precision=args.precision, init_s=init_s, **prof)
    if not cuda and hasattr(torch.backends, "cpu") and hasattr(torch.backends.cpu, "get_cpu_capability"):
        out.update(cpu_capability=torch.backends.cpu.get_cpu_capability())
    if cuda:
        free, total = torch.cuda.mem_get_info()
        out.update(device="cuda", precision=args.precision, device_name=torch.cuda.get_device_name(),
                   gpu_peak_alloc_mb=torch.cuda.max_memory_allocated() / 2**20,
                   gpu_peak_reserved_mb=torch.cuda.max_memory_reserved() / 2**20,
                   gpu_used_mb=(total - free) / 2**20, adamw=args.torch_adamw,
                   matmul_fp32=getattr(torch.backends.cuda.matmul, "fp32_precision",
                                       "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"))
    print(json.dumps(out))


# ----------------------------------------------------------------------------- driver
def run_json(cmd, env=None) -> dict:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    for line in out.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON from {' '.join(cmd)}:\n{out}")


def env_threads(n: int) -> dict:
    e = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        e[k] = str(n)
    return e


def machine_limits(build: str, threads: list[int]) -> dict:
    lim = {}
    out = subprocess.run([os.path.join(build, "benchmarks", "genlm_fma_peak"), str(max(threads))], check=True,
                         capture_output=True, text=True).stdout
    for m in re.finditer(r"threads=(\d+) gflops=([\d.]+)", out):
        lim.setdefault(int(m.group(1)), {})["fma_peak"] = float(m.group(2))
    # the GEMM ceilings: float32 (genlm::cpu: oneDNN or OpenBLAS) and bf16 (genlm::cpu_bf16) on 2048^3
    out = subprocess.run([os.path.join(build, "benchmarks", "genlm_bench_gemm"),
                          "--benchmark_filter=^run_gemm(_bf16)?/square_2048/", "--benchmark_min_time=1",
                          "--benchmark_format=json"], check=True, capture_output=True, text=True).stdout
    for b in json.loads(out)["benchmarks"]:
        fn, _, t = b["name"].split("/")[:3]
        key = "gemm_ceiling" if fn == "run_gemm" else "bf16_gemm_ceiling"
        if int(t) in threads:
            lim.setdefault(int(t), {})[key] = b["FLOPS"] / 1e9
    return lim


def lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return re.search(r"Model name:\s*(.+)", out).group(1).strip()
    except Exception:  # noqa: BLE001
        return "unknown"


def torch_cuda_status() -> tuple[bool, str]:
    """(usable, description) of this Python's torch for the GPU comparison, without touching the GPU
    in this process (a subprocess asks)."""
    code = ("import json, torch; print(json.dumps(dict(v=torch.__version__, cuda=torch.version.cuda, "
            "ok=torch.cuda.is_available(), n=torch.cuda.device_count(), "
            "name=torch.cuda.get_device_name() if torch.cuda.is_available() else '')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return False, f"{sys.executable} cannot import torch ({last})"
    info = json.loads(r.stdout.strip().splitlines()[-1])
    if not info["ok"]:
        why = "a CPU-only build" if not info["cuda"] else f"built for CUDA {info['cuda']} but no device is visible"
        return False, f"torch {info['v']} in {sys.executable} is {why}"
    return True, f"torch {info['v']} (CUDA {info['cuda']}), {info['n']} device(s), {info['name']}"


def cublas_peaks(build: str, precisions: list[str]) -> dict:
    """cuBLAS's own rate on an 8192^3 GEMM per precision (genlm_workload_cuda --peak), TFLOP/s."""
    out = {}
    wl_bin = os.path.join(build, "benchmarks", "genlm_workload_cuda")
    for p in precisions:
        try:
            out[p] = run_json([wl_bin, "--peak", "--precision", p])["tflops"]
        except Exception as e:  # noqa: BLE001
            print(f"# cuBLAS peak ({p}) not measured: {e}", flush=True)
    return out


def err_tail(e: subprocess.CalledProcessError) -> str:
    """The last lines of a failed run's stderr, on one line."""
    lines = [ln.strip() for ln in (e.stderr or "").strip().splitlines() if ln.strip()]
    return " | ".join(lines[-3:])[-600:] or "(no stderr)"


def main_cuda(args) -> None:
    """genlm's CUDA backend (genlm_workload_cuda) vs PyTorch on the same GPU, one process each."""
    wl_bin = os.path.join(args.build, "benchmarks", "genlm_workload_cuda")
    if not os.path.exists(wl_bin):
        sys.exit(f"{wl_bin} not found: configure with nvcc + cuBLAS available and -DGENLM_BUILD_BENCHMARKS=ON, "
                 "then build the target genlm_workload_cuda (scripts/gpu-check.sh does both)")
    ok, desc = torch_cuda_status()
    if not ok:
        sys.exit(f"compare_pytorch.py --device cuda: no PyTorch with CUDA here: {desc}. Run it with a Python whose "
                 "torch sees the GPU ($PYTHON for scripts/bench.sh / scripts/gpu-check.sh)")
    print(f"# PyTorch: {desc}", flush=True)
    precisions = args.precision.split(",")
    for p in precisions:
        if p not in ("fp32", "tf32", "bf16"):
            sys.exit(f"--precision: unknown precision {p!r} (fp32, tf32 or bf16)")
    batches = [int(b) for b in str(args.batch).split(",")]
    peaks = cublas_peaks(args.build, precisions)
    for p, v in peaks.items():
        print(f"# cuBLAS 8192^3 GEMM peak, {p}: {v:.1f} TFLOP/s", flush=True)

    rows = []
    failures = 0
    for cfg in args.configs.split(","):
        for wl in args.workloads.split(","):
            for prec in precisions:
                for B in batches:
                    common = ["--batch", str(B), "--len", str(args.len), "--iters", str(args.iters),
                              "--warmup", str(args.warmup)]
                    best_g = best_p = None
                    for _ in range(args.rounds):
                        try:
                            g = run_json([wl_bin, "--config", cfg, "--workload", wl, "--precision", prec] + common)
                        except subprocess.CalledProcessError as e:
                            print(f"# genlm {cfg}/{wl}/{prec}/B={B} failed (exit {e.returncode}): "
                                  f"{err_tail(e)}", flush=True)
                            g = None
                            failures += 1
                        try:
                            pt = run_json([sys.executable, os.path.abspath(__file__), "--torch-worker", "--device",
                                           "cuda", "--precision", prec, "--threads", "1", "--config", cfg, "--workload", wl,
                                           "--torch-adamw", args.torch_adamw, "--torch-impl", args.torch_impl]
                                          + common)
                        except subprocess.CalledProcessError as e:
                            print(f"# PyTorch {cfg}/{wl}/{prec}/B={B} failed (exit {e.returncode}): "
                                  f"{err_tail(e)}", flush=True)
                            pt = None
                            failures += 1
                        if g and (best_g is None or g["median_s"] < best_g["median_s"]):
                            best_g = g
                        if pt and (best_p is None or pt["median_s"] < best_p["median_s"]):
                            best_p = pt
                    if best_g is None and best_p is None:
                        continue
                    nan = float("nan")
                    gs = best_g["median_s"] if best_g else nan
                    ps = best_p["median_s"] if best_p else nan
                    flop = best_g["flop"] if best_g else nan
                    r = dict(config=cfg, workload=wl, precision=prec, batch=B, genlm_s=gs, torch_s=ps,
                             speedup=ps / gs, genlm_genes_s=best_g["genes_per_s"] if best_g else nan,
                             torch_genes_s=best_p["genes_per_s"] if best_p else nan,
                             genlm_tflops=flop / gs / 1e12, torch_tflops=flop / ps / 1e12,
                             pct_cublas_peak=100 * flop / gs / 1e12 / peaks[prec] if prec in peaks else nan,
                             genlm_gpu_mb=best_g["gpu_peak_alloc_mb"] if best_g else nan,
                             torch_gpu_mb=best_p["gpu_peak_alloc_mb"] if best_p else nan,
                             genlm_gpu_used_mb=best_g.get("gpu_used_mb", nan) if best_g else nan,
                             torch_gpu_used_mb=best_p.get("gpu_used_mb", nan) if best_p else nan,
                             torch_impl=best_p["torch_impl"] if best_p else "",
                             device=(best_g or best_p).get("device_name", ""))
                    rows.append(r)
                    print(json.dumps(r), flush=True)

    hdr = ["config", "workload", "prec", "B", "genlm ms", "torch ms", "torch/genlm", "genlm genes/s",
           "torch genes/s", "genlm TFLOP/s", "% cuBLAS peak", "genlm GPU MB", "torch GPU MB"]
    fmt = lambda r: [r["config"], r["workload"], r["precision"], str(r["batch"]), f"{1e3 * r['genlm_s']:.2f}",
                     f"{1e3 * r['torch_s']:.2f}", f"{r['speedup']:.2f}x", f"{r['genlm_genes_s']:.0f}",
                     f"{r['torch_genes_s']:.0f}", f"{r['genlm_tflops']:.1f}", f"{r['pct_cublas_peak']:.0f}%",
                     f"{r['genlm_gpu_mb']:.0f}", f"{r['torch_gpu_mb']:.0f}"]
    print()
    print("# torch/genlm > 1: genlm faster. GPU MB: peak allocated device memory (genlm: cuda_allocator peak_bytes; "
          "PyTorch: torch.cuda.max_memory_allocated), CUDA context excluded.")
    if rows:
        print_table(hdr, [fmt(r) for r in rows], args.markdown)
    inits = [f"{r['config']} {r['workload']} {r['threads']} thr: genlm {r['genlm_init_s']:.2f} / torch {r['torch_init_s']:.2f}"
             for r in rows if r.get("genlm_init_s") is not None and r.get("torch_init_s") is not None]
    if inits:  # from the fastest round of each side
        print("# model construction (random initial weights), seconds: " + "; ".join(inits))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=rows[0]["device"] if rows else "", torch=desc, cublas_peak_tflops=peaks, rows=rows,
                           args=vars(args)), f, indent=1)
    if not rows:
        sys.exit("no workload ran")
    if failures:
        sys.exit(f"{failures} run(s) failed (see the messages above)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--config", default="small", help=argparse.SUPPRESS)
    ap.add_argument("--workload", default="forward", help=argparse.SUPPRESS)
    ap.add_argument("--build", default=os.path.join(REPO, "build-perf"))
    ap.add_argument("--configs", default="small,paper")
    ap.add_argument("--workloads", default="forward,train")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", default="8", help="contigs per batch (cuda mode: a comma list, e.g. 8,64)")
    ap.add_argument("--len", type=int, default=30)
    ap.add_argument("--iters", type=int, default=None, help="timed runs (default: cpu 5, cuda 20)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: cpu 1, cuda 3)")
    ap.add_argument("--rounds", type=int, default=None, help="default: cpu 2, cuda 1")
    ap.add_argument("--torch-adamw", default="default", choices=["default", "foreach", "fused"],
                    help="torch.optim.AdamW implementation of the PyTorch training step")
    ap.add_argument("--torch-impl", default="auto", choices=["auto", "transformers", "builtin"],
                    help="PyTorch encoder: transformers' RobertaModel (needs transformers < 5 for relative_key_query), "
                         "the script's transcription of it (builtin), or auto (transformers when it can)")
    ap.add_argument("--torch-profile", action="store_true",
                    help="with --torch-worker: also run --iters steps under torch.profiler and report PyTorch's "
                         "own seconds per step in product ops (aten::addmm/mm/bmm/baddbmm self time) as products_s")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="cpu: genlm::cpu vs PyTorch on the CPU; cuda: genlm's CUDA backend vs PyTorch on the GPU")
    ap.add_argument("--precision", default="fp32",
                    help="comma list of fp32 (IEEE float32 products), tf32 (cuda mode only: tensor-core TF32 "
                         "products; torch allow_tf32), bf16 (bf16 GEMM inputs, fp32 master weights; genlm::cpu_bf16 / "
                         "cuda_bf16, torch autocast(bfloat16))")
    ap.add_argument("--check-builtin", action="store_true",
                    help="only compare the builtin RoBERTa with transformers 4.57's fixture outputs and exit")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    cuda_mode = args.device == "cuda" and not args.torch_worker
    for k, cpu_default, cuda_default in (("iters", 5, 20), ("warmup", 1, 3), ("rounds", 2, 1)):
        if getattr(args, k) is None:
            setattr(args, k, cuda_default if cuda_mode else cpu_default)
    if args.check_builtin:
        sys.exit(check_builtin(args))
    if args.torch_worker:
        args.threads = int(args.threads)
        args.batch = int(args.batch)
        torch_worker(args)
        return
    if args.device == "cuda":
        main_cuda(args)
        return
    args.batch = int(args.batch)
    precisions = args.precision.split(",")
    for p in precisions:
        if p not in ("fp32", "bf16"):
            sys.exit(f"--precision: unknown precision {p!r} for the CPU (fp32 or bf16)")

    threads = [int(t) for t in args.threads.split(",")]
    wl_bin = os.path.join(args.build, "benchmarks", "genlm_workload")
    if not os.path.exists(wl_bin):
        sys.exit(f"{wl_bin} not found: build with -DGENLM_BUILD_BENCHMARKS=ON (scripts/bench.sh)")
    print(f"# machine: {lscpu_model()}, {os.cpu_count()} CPUs, load average {os.getloadavg()}", flush=True)
    lim = machine_limits(args.build, threads)
    for t in threads:
        print(f"# threads={t}: FMA peak {lim[t]['fma_peak']:.1f} GFLOP/s, "
              f"genlm::cpu sgemm 2048^3 {lim[t]['gemm_ceiling']:.1f} GFLOP/s, "
              f"genlm::cpu_bf16 gemm 2048^3 {lim[t]['bf16_gemm_ceiling']:.1f} GFLOP/s", flush=True)

    rows = []
    for cfg in args.configs.split(","):
        for wl in args.workloads.split(","):
            for prec in precisions:
                for t in threads:
                    common = ["--batch", str(args.batch), "--len", str(args.len), "--iters", str(args.iters),
                              "--warmup", str(args.warmup), "--precision", prec]
                    best_g = best_p = None
                    for _ in range(args.rounds):
                        g = run_json([wl_bin, "--config", cfg, "--workload", wl, "--threads", str(t)] + common,
                                     env_threads(t))
                        p = run_json([sys.executable, os.path.abspath(__file__), "--torch-worker", "--config", cfg,
                                      "--workload", wl, "--threads", str(t), "--torch-adamw", args.torch_adamw,
                                      "--torch-impl", args.torch_impl] + common,
                                     env_threads(t))
                        best_g = g if best_g is None or g["median_s"] < best_g["median_s"] else best_g
                        best_p = p if best_p is None or p["median_s"] < best_p["median_s"] else best_p
                    ceiling = lim[t]["gemm_ceiling" if prec == "fp32" else "bf16_gemm_ceiling"]
                    r = dict(config=cfg, workload=wl, precision=prec, threads=t, genlm_s=best_g["median_s"],
                             torch_s=best_p["median_s"], speedup=best_p["median_s"] / best_g["median_s"],
                             genlm_genes_s=best_g["genes_per_s"], torch_genes_s=best_p["genes_per_s"],
                             genlm_gflops=best_g["gflops"], torch_gflops=best_g["flop"] / best_p["median_s"] / 1e9,
                             pct_fma=100 * best_g["gflops"] / lim[t]["fma_peak"] if prec == "fp32" else None,
                             pct_gemm=100 * best_g["gflops"] / ceiling,
                             genlm_rss_mb=best_g["max_rss_mb"], torch_rss_mb=best_p["max_rss_mb"],
                             genlm_params=best_g["params"], torch_params=best_p["params"],
                             genlm_amx=best_g.get("amx"), torch_cpu_capability=best_p.get("cpu_capability"),
                             genlm_init_s=best_g.get("init_s"), torch_init_s=best_p.get("init_s"))
                    rows.append(r)
                    print(json.dumps(r), flush=True)

    hdr = ["config", "workload", "prec", "thr", "genlm s", "torch s", "torch/genlm", "genlm genes/s", "torch genes/s",
           "genlm GFLOP/s", "% FMA peak", "% GEMM ceil", "genlm RSS MB", "torch RSS MB"]
    fmt = lambda r: [r["config"], r["workload"], r["precision"], str(r["threads"]), f"{r['genlm_s']:.4f}",
                     f"{r['torch_s']:.4f}", f"{r['speedup']:.2f}x", f"{r['genlm_genes_s']:.0f}",
                     f"{r['torch_genes_s']:.0f}", f"{r['genlm_gflops']:.1f}",
                     "-" if r["pct_fma"] is None else f"{r['pct_fma']:.0f}%", f"{r['pct_gemm']:.0f}%",
                     f"{r['genlm_rss_mb']:.0f}", f"{r['torch_rss_mb']:.0f}"]
    print()
    print("# % GEMM ceil: of the same precision's 2048^3 product (fp32: genlm::cpu, oneDNN/OpenBLAS; bf16: genlm::cpu_bf16). "
          "% FMA peak: float32 rows only.")
    print_table(hdr, [fmt(r) for r in rows], args.markdown)
    inits = [f"{r['config']} {r['workload']} {r['threads']} thr: genlm {r['genlm_init_s']:.2f} / torch {r['torch_init_s']:.2f}"
             for r in rows if r.get("genlm_init_s") is not None and r.get("torch_init_s") is not None]
    if inits:  # from the fastest round of each side
        print("# model construction (random initial weights), seconds: " + "; ".join(inits))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(machine=lscpu_model(), loadavg_end=os.getloadavg(), limits=lim, rows=rows, args=vars(args)), f,
                  indent=1)


if __name__ == "__main__":
    main()
