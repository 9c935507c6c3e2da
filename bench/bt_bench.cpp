// Benchmarks of the BT vCPU against native execution of the same bytes.
//
//   BM_ChecksumNative / BM_ChecksumRove   the guest compute kernel (bench/guest/*.asm) over
//                                         1 MiB; the rove case reports x_native = rove/native
//   BM_Translate                          guest instructions translated per second
//   BM_ChainedBranch                      a one-block loop (dec/jnz): ns per iteration
//   BM_IndirectBranch                     jmp through a register each iteration
//   BM_TlbHit / BM_TlbMiss                one load per iteration, hitting / missing the soft TLB
#include <benchmark/benchmark.h>
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "called_guest.h"

namespace rove {
namespace {

using bench::CalledGuest;
using bench::kCodeAddr;
using bench::ReadGuest;
using bench::ThreadCpuNs;

constexpr uint64_t kHistAddr = 0x900000;
constexpr uint64_t kBufAddr = 0x1000000;
constexpr uint64_t kBufLen = 1 << 20;

class NoPorts : public IoPorts {
 public:
  uint32_t In(uint16_t, unsigned) override { return ~0u; }
  void Out(uint16_t, unsigned, uint32_t) override {}
};

// Flat code called with the SysV argument registers.
struct FlatGuest : CalledGuest {
  explicit FlatGuest(const std::vector<uint8_t>& code)
      : CalledGuest(code, 256ull << 20, std::make_unique<NoPorts>()) {}
  StopInfo Call(uint64_t rdi, uint64_t rsi, uint64_t rdx, uint64_t rcx = 0) {
    return CallAt(kCodeAddr, {{kRdi, rdi}, {kRsi, rsi}, {kRdx, rdx}, {kRcx, rcx}});
  }
};

std::vector<uint8_t> TestData() {
  std::vector<uint8_t> data(kBufLen);
  uint32_t x = 12345;
  for (size_t i = 0; i < data.size(); ++i) {
    x = x * 1103515245u + 12345u;
    // Runs of repeated bytes, like compressible data.
    data[i] = (i % 7 < 3) ? static_cast<uint8_t>(x >> 24) : data[i ? i - 1 : 0];
  }
  return data;
}

using KernelFn = uint64_t (*)(const uint8_t*, uint64_t, uint64_t*);

struct NativeKernel {
  NativeKernel() {
    code = ReadGuest("checksum_kernel.bin");
    void* p =
        mmap(nullptr, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap");
    std::memcpy(p, code.data(), code.size());
    fn = reinterpret_cast<KernelFn>(p);
  }
  std::vector<uint8_t> code;
  KernelFn fn;
};

double NativeKernelNs(const NativeKernel& k, const std::vector<uint8_t>& data, uint64_t* result,
                      double* best_cpu) {
  std::vector<uint64_t> hist(256);
  double best = 1e30;
  *best_cpu = 1e30;
  for (int i = 0; i < 5; ++i) {
    std::fill(hist.begin(), hist.end(), 0);
    double c0 = ThreadCpuNs();
    auto t0 = std::chrono::steady_clock::now();
    *result = k.fn(data.data(), data.size(), hist.data());
    auto t1 = std::chrono::steady_clock::now();
    double c1 = ThreadCpuNs();
    best = std::min(best, std::chrono::duration<double, std::nano>(t1 - t0).count());
    *best_cpu = std::min(*best_cpu, c1 - c0);
  }
  return best;
}

void BM_ChecksumNative(benchmark::State& state) {
  NativeKernel k;
  auto data = TestData();
  std::vector<uint64_t> hist(256);
  for (auto _ : state) {
    std::fill(hist.begin(), hist.end(), 0);
    benchmark::DoNotOptimize(k.fn(data.data(), data.size(), hist.data()));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
}
BENCHMARK(BM_ChecksumNative)->Unit(benchmark::kMillisecond);

void BM_ChecksumRove(benchmark::State& state) {
  NativeKernel k;
  auto data = TestData();
  uint64_t native_result = 0;
  double native_cpu_ns = 0;
  double native_ns = NativeKernelNs(k, data, &native_result, &native_cpu_ns);
  FlatGuest g(k.code);
  g.mem->Write(kBufAddr, data.data(), data.size());
  std::vector<uint64_t> zero(256);
  std::vector<uint64_t> hist(256);
  double total_ns = 0;
  double best_cpu_ns = 1e30;
  std::vector<double> ratios;
  for (auto _ : state) {
    g.mem->Write(kHistAddr, zero.data(), zero.size() * 8);
    double c0 = ThreadCpuNs();
    auto t0 = std::chrono::steady_clock::now();
    StopInfo stop = g.Call(kBufAddr, kBufLen, kHistAddr);
    auto t1 = std::chrono::steady_clock::now();
    const double rove_cpu = ThreadCpuNs() - c0;
    best_cpu_ns = std::min(best_cpu_ns, rove_cpu);
    total_ns += std::chrono::duration<double, std::nano>(t1 - t0).count();
    if (stop.reason != StopReason::kHalted || g.vcpu->state().gpr[kRax] != native_result) {
      state.SkipWithError("guest result differs from native");
      return;
    }
    // The native kernel right after, so that both see the same machine load.
    state.PauseTiming();
    std::fill(hist.begin(), hist.end(), 0);
    double n0 = ThreadCpuNs();
    benchmark::DoNotOptimize(k.fn(data.data(), data.size(), hist.data()));
    const double native_cpu = ThreadCpuNs() - n0;
    native_cpu_ns = std::min(native_cpu_ns, native_cpu);
    ratios.push_back(rove_cpu / native_cpu);
    state.ResumeTiming();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kBufLen));
  state.counters["native_ms"] = native_ns / 1e6;
  state.counters["x_native"] = total_ns / static_cast<double>(state.iterations()) / native_ns;
  // Thread CPU time, robust when other processes load the machine: best run of each, and the
  // median ratio of back-to-back runs.
  state.counters["x_native_cpu"] = best_cpu_ns / native_cpu_ns;
  std::sort(ratios.begin(), ratios.end());
  if (!ratios.empty()) state.counters["x_native_med"] = ratios[ratios.size() / 2];
}
BENCHMARK(BM_ChecksumRove)->Unit(benchmark::kMillisecond);

// Straight-line code of `blocks` blocks of 64 instructions each, then RET.
std::vector<uint8_t> StraightLineCode(int blocks) {
  std::vector<uint8_t> code;
  for (int b = 0; b < blocks; ++b) {
    for (int i = 0; i < 63; ++i) {
      // add rax, imm8 / xor rbx, rax / lea rcx, [rcx+rax*2+imm8], rotating
      switch (i % 3) {
        case 0:
          code.insert(code.end(), {0x48, 0x83, 0xC0, static_cast<uint8_t>(i)});
          break;
        case 1:
          code.insert(code.end(), {0x48, 0x31, 0xC3});
          break;
        default:
          code.insert(code.end(), {0x48, 0x8D, 0x4C, 0x41, static_cast<uint8_t>(b)});
          break;
      }
    }
    code.insert(code.end(), {0x48, 0xFF, 0xC2});  // inc rdx
  }
  code.push_back(0xC3);
  return code;
}

void BM_Translate(benchmark::State& state) {
  const int blocks = 1000;
  double translated = 0;
  for (auto _ : state) {
    state.PauseTiming();
    FlatGuest fresh(StraightLineCode(blocks));
    state.ResumeTiming();
    fresh.Call(0, 0, 0);
    translated += static_cast<double>(fresh.vcpu->stats().instructions_translated);
  }
  state.counters["guest_insns_per_s"] = benchmark::Counter(translated, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Translate)->Unit(benchmark::kMillisecond);

// Runs a loop program with rcx = iterations and reports ns per iteration.
void RunLoop(benchmark::State& state, const std::vector<uint8_t>& code, uint64_t rdi = kBufAddr) {
  const uint64_t iters = 1000000;
  FlatGuest g(code);
  g.Call(rdi, 0, 0, 1000);  // warm up: translate and chain
  double ns = 0;
  double best_cpu = 1e30;
  for (auto _ : state) {
    double c0 = ThreadCpuNs();
    auto t0 = std::chrono::steady_clock::now();
    g.Call(rdi, 0, 0, iters);
    auto t1 = std::chrono::steady_clock::now();
    best_cpu = std::min(best_cpu, ThreadCpuNs() - c0);
    ns += std::chrono::duration<double, std::nano>(t1 - t0).count();
  }
  state.counters["ns_per_iter"] = ns / static_cast<double>(state.iterations()) / iters;
  state.counters["cpu_ns_per_iter"] = best_cpu / iters;
}

void BM_ChainedBranch(benchmark::State& state) {
  // L: dec rcx; jnz L; ret
  RunLoop(state, {0x48, 0xFF, 0xC9, 0x75, 0xFB, 0xC3});
}
BENCHMARK(BM_ChainedBranch)->Unit(benchmark::kMillisecond);

void BM_IndirectBranch(benchmark::State& state) {
  // lea rax, [rip+T]; L: jmp rax; T: dec rcx; jnz L; ret
  RunLoop(state, {0x48, 0x8D, 0x05, 0x02, 0, 0, 0, 0xFF, 0xE0, 0x48, 0xFF, 0xC9, 0x75, 0xF9, 0xC3});
}
BENCHMARK(BM_IndirectBranch)->Unit(benchmark::kMillisecond);

void BM_TlbHit(benchmark::State& state) {
  // L: mov rax, [rdi]; dec rcx; jnz L; ret
  RunLoop(state, {0x48, 0x8B, 0x07, 0x48, 0xFF, 0xC9, 0x75, 0xF8, 0xC3});
}
BENCHMARK(BM_TlbHit)->Unit(benchmark::kMillisecond);

void BM_TlbMiss(benchmark::State& state) {
  // L: mov rax, [rdi]; xor rdi, 0x400000 (same TLB index, other page); dec rcx; jnz L; ret
  RunLoop(state, {0x48, 0x8B, 0x07, 0x48, 0x81, 0xF7, 0x00, 0x00, 0x40, 0x00, 0x48, 0xFF, 0xC9,
                  0x75, 0xF1, 0xC3});
}
BENCHMARK(BM_TlbMiss)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace rove

BENCHMARK_MAIN();
