// A host-only stand-in for the parts of the CUDA runtime API that genlm/parallel/nccl.hpp uses,
// so that comm::nccl's logic (staging, buckets, gathers, broadcasts) is tested on machines
// without a GPU (tests/mpi/test_nccl_fake.cpp). "Device" memory is host memory. A stream holds at
// most one pending operation, a collective of the fake nccl.h: cudaStreamQuery reports
// cudaErrorNotReady until every member has joined it (so comm::nccl's bounded wait, its timeout
// and its failure flag run as on a GPU), and the next operation on the stream (a copy, another
// collective) first waits for it, unboundedly. Everything else completes immediately.
// NOT CUDA: never put this directory on a real build's path.
#pragma once
#include <cstdlib>
#include <cstring>
#include <functional>

enum cudaError_t { cudaSuccess = 0, cudaErrorNotReady = 600, cudaErrorInvalidValue = 1 };
enum cudaMemcpyKind { cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2 };
struct fake_cuda_stream {
  int device;
  std::function<bool()> done;   // the pending operation has completed (null: none pending)
  std::function<void()> block;  // waits until it has
};
using cudaStream_t = fake_cuda_stream*;
constexpr unsigned cudaStreamNonBlocking = 1;

inline int& fake_cuda_device_count() {
  static int n = 4;
  return n;
}
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = fake_cuda_device_count();
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) { return d >= 0 && d < fake_cuda_device_count() ? cudaSuccess : cudaErrorInvalidValue; }
inline const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "fake CUDA error"; }
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = new fake_cuda_stream{0, nullptr, nullptr};
  return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
inline cudaError_t cudaStreamQuery(cudaStream_t s) { return !s->done || s->done() ? cudaSuccess : cudaErrorNotReady; }
/// Waits for the stream's pending operation (stream order), then forgets it.
inline void fake_cuda_drain(cudaStream_t s) {
  if (!s) return;
  if (s->block) s->block();
  s->done = nullptr;
  s->block = nullptr;
}
inline cudaError_t cudaMalloc(void** p, std::size_t n) {
  *p = std::malloc(n);
  return *p ? cudaSuccess : cudaErrorInvalidValue;
}
inline cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t n, cudaMemcpyKind, cudaStream_t s) {
  fake_cuda_drain(s);
  if (n) std::memmove(dst, src, n);
  return cudaSuccess;
}
