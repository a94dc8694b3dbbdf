// A host-only stand-in for the NCCL calls of genlm/parallel/nccl.hpp (see cuda_runtime_api.h in
// this directory): communicators made by ncclCommInitAll are threads of one process that meet
// in each collective. A collective call returns at once, as NCCL's does: it publishes its
// buffers and leaves a pending operation on the stream; the last member to join computes the
// result into every member's receive buffer and completes it. A member that never joins (its
// thread failed, its communicator was aborted) leaves the others' streams pending. NOT NCCL.
#pragma once
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include <cuda_runtime_api.h>  // this directory's, or the CUDA host emulator's (tests/cuda_emu)

enum ncclResult_t { ncclSuccess = 0, ncclInvalidUsage = 5, ncclInProgress = 7 };
enum ncclDataType_t { ncclInt8 = 0, ncclUint8 = 1, ncclInt32 = 2, ncclUint32 = 3, ncclInt64 = 4, ncclUint64 = 5,
                      ncclFloat16 = 6, ncclFloat32 = 7, ncclFloat64 = 8 };
enum ncclRedOp_t { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3 };
struct ncclUniqueId {
  char internal[128];
};

struct fake_nccl_group {
  int n = 0;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;              // members that joined the open collective
  std::uint64_t completed = 0;  // collectives completed
  std::vector<const void*> send;
  std::vector<void*> recv;
};
struct fake_nccl_comm {
  std::shared_ptr<fake_nccl_group> group;
  int rank = 0;
};
using ncclComm_t = fake_nccl_comm*;

inline const char* ncclGetErrorString(ncclResult_t r) { return r == ncclSuccess ? "no error" : "fake NCCL error"; }
inline ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  std::memset(id, 0, sizeof *id);
  return ncclSuccess;
}
inline ncclResult_t ncclCommInitRank(ncclComm_t*, int, ncclUniqueId, int) { return ncclInvalidUsage; }
inline ncclResult_t ncclCommInitAll(ncclComm_t* comms, int ndev, const int*) {
  auto g = std::make_shared<fake_nccl_group>();
  g->n = ndev;
  g->send.resize(std::size_t(ndev));
  g->recv.resize(std::size_t(ndev));
  for (int i = 0; i < ndev; ++i) comms[i] = new fake_nccl_comm{g, i};
  return ncclSuccess;
}
inline ncclResult_t ncclCommDestroy(ncclComm_t c) {
  delete c;
  return ncclSuccess;
}
inline ncclResult_t ncclCommAbort(ncclComm_t c) { return ncclCommDestroy(c); }
inline ncclResult_t ncclCommCount(ncclComm_t c, int* n) {
  *n = c->group->n;
  return ncclSuccess;
}
inline ncclResult_t ncclCommUserRank(ncclComm_t c, int* r) {
  *r = c->rank;
  return ncclSuccess;
}
inline ncclResult_t ncclCommGetAsyncError(ncclComm_t, ncclResult_t* r) {
  *r = ncclSuccess;
  return ncclSuccess;
}

namespace fake_nccl {
inline std::size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    default: return 8;
  }
}
template <class T>
void reduce(std::vector<unsigned char>& out, const std::vector<const void*>& in, std::size_t count, ncclRedOp_t op) {
  out.resize(count * sizeof(T));
  T* o = reinterpret_cast<T*>(out.data());
  for (std::size_t i = 0; i < count; ++i) {
    T acc = static_cast<const T*>(in[0])[i];
    for (std::size_t r = 1; r < in.size(); ++r) {
      const T v = static_cast<const T*>(in[r])[i];
      acc = op == ncclMax ? std::max(acc, v) : op == ncclMin ? std::min(acc, v) : acc + v;
    }
    o[i] = acc;
  }
}
/// Waits for the stream's previous operation (so a member joins collectives in order), publishes
/// `send` and `recv`, and leaves the collective pending on the stream. The last member to join
/// computes the result from all members' inputs (before writing any output: inputs may alias
/// outputs), writes it to every member's `recv` and completes the collective.
template <class F>
ncclResult_t collective(ncclComm_t c, const void* send, void* recv, cudaStream_t s, F&& compute) {
  fake_cuda_drain(s);
  const std::shared_ptr<fake_nccl_group> g = c->group;
  std::lock_guard<std::mutex> lk(g->mu);
  const std::uint64_t ticket = g->completed + 1;
  g->send[std::size_t(c->rank)] = send;
  g->recv[std::size_t(c->rank)] = recv;
  if (++g->arrived == g->n) {
    std::vector<unsigned char> out;
    compute(g->send, out);
    if (!out.empty())
      for (void* r : g->recv) std::memcpy(r, out.data(), out.size());
    g->arrived = 0;
    ++g->completed;
    g->cv.notify_all();
  }
  s->done = [g, ticket] {
    std::lock_guard<std::mutex> l(g->mu);
    return g->completed >= ticket;
  };
  s->block = [g, ticket] {
    std::unique_lock<std::mutex> l(g->mu);
    g->cv.wait(l, [&] { return g->completed >= ticket; });
  };
  return ncclSuccess;
}
}  // namespace fake_nccl

inline ncclResult_t ncclAllReduce(const void* send, void* recv, std::size_t count, ncclDataType_t t, ncclRedOp_t op,
                                  ncclComm_t c, cudaStream_t s) {
  return fake_nccl::collective(c, send, recv, s, [&](const std::vector<const void*>& in, std::vector<unsigned char>& out) {
    switch (t) {
      case ncclFloat32: fake_nccl::reduce<float>(out, in, count, op); break;
      case ncclFloat64: fake_nccl::reduce<double>(out, in, count, op); break;
      case ncclInt32: fake_nccl::reduce<std::int32_t>(out, in, count, op); break;
      case ncclInt64: fake_nccl::reduce<std::int64_t>(out, in, count, op); break;
      case ncclUint64: fake_nccl::reduce<std::uint64_t>(out, in, count, op); break;
      default: fake_nccl::reduce<std::uint8_t>(out, in, count, op); break;
    }
  });
}
inline ncclResult_t ncclBroadcast(const void* send, void* recv, std::size_t count, ncclDataType_t t, int root,
                                  ncclComm_t c, cudaStream_t s) {
  return fake_nccl::collective(c, send, recv, s, [&](const std::vector<const void*>& in, std::vector<unsigned char>& out) {
    const auto* p = static_cast<const unsigned char*>(in[std::size_t(root)]);
    out.assign(p, p + count * fake_nccl::type_size(t));
  });
}
inline ncclResult_t ncclAllGather(const void* send, void* recv, std::size_t count, ncclDataType_t t, ncclComm_t c,
                                  cudaStream_t s) {
  return fake_nccl::collective(c, send, recv, s, [&](const std::vector<const void*>& in, std::vector<unsigned char>& out) {
    const std::size_t b = count * fake_nccl::type_size(t);
    out.resize(b * in.size());
    for (std::size_t r = 0; r < in.size(); ++r) std::memcpy(out.data() + r * b, in[r], b);
  });
}
