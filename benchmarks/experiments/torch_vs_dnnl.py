# EXPERIMENT (not part of the test or benchmark suites; removed again in the next commit,
# docs/PERFORMANCE.md seventh session): PyTorch's float32 product (torch.nn.functional.linear /
# torch.matmul, 1 thread) against oneDNN's dnnl_sgemm - the call genlm::cpu makes - in the same
# process, interleaved, best of 25, on the forward's shapes; prints the rates and the largest
# difference of the two results (0: the same kernel's bits).
#   /opt/fixenv/bin/python benchmarks/experiments/torch_vs_dnnl.py /usr/lib/x86_64-linux-gnu/libdnnl.so
import ctypes, time, torch, numpy as np, sys
torch.set_num_threads(1)
dnnl = ctypes.CDLL(sys.argv[1] if len(sys.argv) > 1 else "libdnnl.so")
gomp = ctypes.CDLL("libgomp.so.1"); gomp.omp_set_num_threads(1)
f = dnnl.dnnl_sgemm
f.argtypes=[ctypes.c_char,ctypes.c_char,ctypes.c_int64,ctypes.c_int64,ctypes.c_int64,ctypes.c_float,ctypes.c_void_p,ctypes.c_int64,ctypes.c_void_p,ctypes.c_int64,ctypes.c_float,ctypes.c_void_p,ctypes.c_int64]
shapes=[(240,1280,1280),(240,3072,1280),(240,1280,3072)]
for M,N,K in shapes:
    x=torch.randn(M,K); w=torch.randn(N,K); b=torch.randn(N); y=torch.empty(M,N); y2=torch.empty(M,N)
    best=[1e9]*3
    for r in range(25):
        t=time.perf_counter(); torch.nn.functional.linear(x,w,b,); best[0]=min(best[0],time.perf_counter()-t)
        t=time.perf_counter(); torch.matmul(x,w.t(),out=y2); best[1]=min(best[1],time.perf_counter()-t)
        t=time.perf_counter(); f(b'N',b'T',M,N,K,1.0,x.data_ptr(),K,w.data_ptr(),K,0.0,y.data_ptr(),N); best[2]=min(best[2],time.perf_counter()-t)
    fl=2*M*N*K/1e9
    print(f"{M}x{N}x{K}: torch linear {fl/best[0]:.1f}  torch matmul {fl/best[1]:.1f}  dnnl_sgemm {fl/best[2]:.1f} GFLOP/s  maxdiff {float((y-y2).abs().max()):.2e}")
