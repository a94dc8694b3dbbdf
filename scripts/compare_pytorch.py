#!/usr/bin/env python3
"""genlm vs PyTorch on the same machine, same workloads, same threads; plus the machine's limits.

Runs, one process per measurement (so each process's max RSS is that workload's peak memory):
  * genlm:   build-perf/benchmarks/genlm_workload --config C --workload W --threads N ...
  * PyTorch: this script with --torch-worker (transformers RobertaModel, relative_key_query,
             float32, eager attention, + Linear(plm+1 -> hidden) input and the two gLM heads)
  * the machine's float32 FMA peak (genlm_fma_peak) and the OpenBLAS sgemm ceiling
    (genlm_bench_gemm, 2048^3 product) at each thread count,
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

Usage:
  /opt/fixenv/bin/python scripts/compare_pytorch.py [--build build-perf] [--configs small,paper]
      [--workloads forward,train] [--threads 1,2] [--batch 8] [--len 30] [--iters 5] [--rounds 2]
      [--markdown] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
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


# ----------------------------------------------------------------------------- PyTorch worker
def torch_worker(args) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    import torch.nn.functional as F
    from torch import nn
    from transformers import RobertaConfig, RobertaModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c = CONFIGS[args.config]
    D = c["pca"] + 1
    K = c["hyp"]
    cfg = RobertaConfig(
        vocab_size=2, pad_token_id=1, hidden_size=c["hidden"], num_hidden_layers=c["layers"],
        num_attention_heads=c["heads"], intermediate_size=c["inter"], max_position_embeddings=c["maxpos"],
        position_embedding_type="relative_key_query", type_vocab_size=1, hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1, layer_norm_eps=1e-12, hidden_act="gelu")
    cfg._attn_implementation = "eager"

    class GLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(c["plm"] + 1, c["hidden"])
            self.roberta = RobertaModel(cfg, add_pooling_layer=False)
            self.hyp = nn.Linear(c["hidden"], K * D)
            self.prob = nn.Linear(c["hidden"], K)

        def forward(self, x, mask):
            h = self.roberta(inputs_embeds=self.dense(x), attention_mask=mask).last_hidden_state
            return self.hyp(h).view(x.shape[0], x.shape[1], K, D), self.prob(h)

    model = GLM().float()
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

    if args.workload == "forward":
        model.eval()

        def once():
            with torch.inference_mode():
                model(x, mask)
    else:
        model.train()
        impl = {"default": {}, "foreach": dict(foreach=True), "fused": dict(fused=True)}[args.torch_adamw]
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, **impl)

        def once():
            opt.zero_grad(set_to_none=True)
            hyp, logits = model(x, mask)
            hm = hyp[bi, li]                                   # (n, K, D)
            k = ((hm - y[:, None]) ** 2).sum(-1).argmin(1)     # closest hypothesis
            best = hm[torch.arange(len(k)), k]
            loss = F.mse_loss(best, y) + 1e-4 * F.cross_entropy(logits[bi, li], k)
            loss.backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), 1.0)
            opt.step()

    for _ in range(args.warmup):
        once()
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(dict(impl="pytorch", workload=args.workload, batch=B, len=L, median_s=med, min_s=times[0],
                          genes_per_s=B * L / med, params=sum(p.numel() for p in model.parameters()),
                          max_rss_mb=rss, torch=torch.__version__)))


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
    out = subprocess.run([os.path.join(build, "benchmarks", "genlm_bench_gemm"), "--benchmark_filter=square_2048",
                          "--benchmark_min_time=1", "--benchmark_format=json"], check=True, capture_output=True,
                         text=True).stdout
    for b in json.loads(out)["benchmarks"]:
        t = int(b["name"].split("/")[2])
        lim.setdefault(t, {})["gemm_ceiling"] = b["FLOPS"] / 1e9
    return lim


def lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return re.search(r"Model name:\s*(.+)", out).group(1).strip()
    except Exception:  # noqa: BLE001
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--config", default="small", help=argparse.SUPPRESS)
    ap.add_argument("--workload", default="forward", help=argparse.SUPPRESS)
    ap.add_argument("--build", default=os.path.join(REPO, "build-perf"))
    ap.add_argument("--configs", default="small,paper")
    ap.add_argument("--workloads", default="forward,train")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--len", type=int, default=30)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--torch-adamw", default="default", choices=["default", "foreach", "fused"],
                    help="torch.optim.AdamW implementation of the PyTorch training step")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    if args.torch_worker:
        args.threads = int(args.threads)
        torch_worker(args)
        return

    threads = [int(t) for t in args.threads.split(",")]
    wl_bin = os.path.join(args.build, "benchmarks", "genlm_workload")
    if not os.path.exists(wl_bin):
        sys.exit(f"{wl_bin} not found: build with -DGENLM_BUILD_BENCHMARKS=ON (scripts/bench.sh)")
    print(f"# machine: {lscpu_model()}, {os.cpu_count()} CPUs, load average {os.getloadavg()}", flush=True)
    lim = machine_limits(args.build, threads)
    for t in threads:
        print(f"# threads={t}: FMA peak {lim[t]['fma_peak']:.1f} GFLOP/s, "
              f"OpenBLAS sgemm 2048^3 {lim[t]['gemm_ceiling']:.1f} GFLOP/s", flush=True)

    rows = []
    for cfg in args.configs.split(","):
        for wl in args.workloads.split(","):
            for t in threads:
                common = ["--batch", str(args.batch), "--len", str(args.len), "--iters", str(args.iters),
                          "--warmup", str(args.warmup)]
                best_g = best_p = None
                for _ in range(args.rounds):
                    g = run_json([wl_bin, "--config", cfg, "--workload", wl, "--threads", str(t)] + common,
                                 env_threads(t))
                    p = run_json([sys.executable, os.path.abspath(__file__), "--torch-worker", "--config", cfg,
                                  "--workload", wl, "--threads", str(t), "--torch-adamw", args.torch_adamw] + common,
                                 env_threads(t))
                    best_g = g if best_g is None or g["median_s"] < best_g["median_s"] else best_g
                    best_p = p if best_p is None or p["median_s"] < best_p["median_s"] else best_p
                r = dict(config=cfg, workload=wl, threads=t, genlm_s=best_g["median_s"], torch_s=best_p["median_s"],
                         speedup=best_p["median_s"] / best_g["median_s"], genlm_genes_s=best_g["genes_per_s"],
                         torch_genes_s=best_p["genes_per_s"], genlm_gflops=best_g["gflops"],
                         torch_gflops=best_g["flop"] / best_p["median_s"] / 1e9,
                         pct_fma=100 * best_g["gflops"] / lim[t]["fma_peak"],
                         pct_gemm=100 * best_g["gflops"] / lim[t]["gemm_ceiling"],
                         genlm_rss_mb=best_g["max_rss_mb"], torch_rss_mb=best_p["max_rss_mb"],
                         genlm_params=best_g["params"], torch_params=best_p["params"])
                rows.append(r)
                print(json.dumps(r), flush=True)

    hdr = ["config", "workload", "thr", "genlm s", "torch s", "torch/genlm", "genlm genes/s", "torch genes/s",
           "genlm GFLOP/s", "% FMA peak", "% GEMM ceil", "genlm RSS MB", "torch RSS MB"]
    fmt = lambda r: [r["config"], r["workload"], str(r["threads"]), f"{r['genlm_s']:.4f}", f"{r['torch_s']:.4f}",
                     f"{r['speedup']:.2f}x", f"{r['genlm_genes_s']:.0f}", f"{r['torch_genes_s']:.0f}",
                     f"{r['genlm_gflops']:.1f}", f"{r['pct_fma']:.0f}%", f"{r['pct_gemm']:.0f}%",
                     f"{r['genlm_rss_mb']:.0f}", f"{r['torch_rss_mb']:.0f}"]
    print()
    if args.markdown:
        print("| " + " | ".join(hdr) + " |")
        print("|" + "---|" * len(hdr))
        for r in rows:
            print("| " + " | ".join(fmt(r)) + " |")
    else:
        w = [max(len(h), *(len(fmt(r)[i]) for r in rows)) for i, h in enumerate(hdr)]
        print("  ".join(h.rjust(w[i]) for i, h in enumerate(hdr)))
        for r in rows:
            print("  ".join(v.rjust(w[i]) for i, v in enumerate(fmt(r))))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(machine=lscpu_model(), loadavg_end=os.getloadavg(), limits=lim, rows=rows, args=vars(args)), f,
                  indent=1)


if __name__ == "__main__":
    main()
