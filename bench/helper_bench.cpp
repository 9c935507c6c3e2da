// Micro benchmarks of the paths that leave translated code: exception delivery through the
// guest's IDT and the helper calls for CPUID, IN/OUT and RDMSR. They run the loops of
// bench/guest/helper_loops.asm on the real engine (Vcpu + SystemEmulator, the loader's
// identity-mapped long mode), and report ns per operation with the bare loop's cost subtracted.
//
//   BM_Cpuid          CPUID leaf 0                      (BM_CpuidNative: the host's own CPUID)
//   BM_PortIn/Out     IN AL,DX / OUT DX,AL to a device port (IoPorts::In/Out)
//   BM_Rdmsr          RDMSR of IA32_EFER
//   BM_UdRoundTrip    UD2 -> #UD through the IDT -> handler -> IRETQ
//   BM_PfRoundTrip    load from a non-present page -> #PF -> handler -> IRETQ
#include <benchmark/benchmark.h>
#include <cpuid.h>
#include <time.h>

#include <algorithm>
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

constexpr uint64_t kIdtAddr = 0x0FE000;
constexpr uint16_t kBenchPort = 0x510;

// Entry points: the 64-byte slots of helper_loops.asm.
enum Slot : uint64_t {
  kSlotCpuid = 0x000,
  kSlotIn = 0x040,
  kSlotOut = 0x080,
  kSlotRdmsr = 0x0C0,
  kSlotUd = 0x100,
  kSlotPf = 0x140,
  kUdHandler = 0x180,
  kPfHandler = 0x1C0,
  kSlotLoop = 0x200,
};
constexpr uint64_t kUdCount = 0x200000;  // counters the guest's handlers increment
constexpr uint64_t kPfCount = 0x200008;

constexpr uint8_t kVectorUd = 6;
constexpr uint8_t kVectorPf = 14;

// A device port that counts what reaches it (so the benchmark can check every access did).
class CountingPort : public IoPorts {
 public:
  uint32_t In(uint16_t port, unsigned) override {
    if (port == kBenchPort) ++ins;
    return 0x5A;
  }
  void Out(uint16_t port, unsigned, uint32_t) override {
    if (port == kBenchPort) ++outs;
  }
  uint64_t ins = 0;
  uint64_t outs = 0;
};

// A 64-bit interrupt gate (type 0xE, present, DPL 0) to `handler` in code segment `cs`.
void WriteGate(GuestMemory& mem, uint8_t vector, uint16_t cs, uint64_t handler) {
  uint64_t low = (handler & 0xFFFF) | (uint64_t{cs} << 16) | (uint64_t{0x8E} << 40) |
                 ((handler >> 16 & 0xFFFF) << 48);
  mem.WriteU64(kIdtAddr + vector * 16ull, low);
  mem.WriteU64(kIdtAddr + vector * 16ull + 8, handler >> 32);
}

struct HelperGuest : CalledGuest {
  HelperGuest()
      : CalledGuest(ReadGuest("helper_loops.bin"), 64ull << 20, std::make_unique<CountingPort>()) {
    CpuState& s = vcpu->state();
    s.idtr = {kIdtAddr, 256 * 16 - 1};
    WriteGate(*mem, kVectorUd, s.seg[kCs].selector, kCodeAddr + kUdHandler);
    WriteGate(*mem, kVectorPf, s.seg[kCs].selector, kCodeAddr + kPfHandler);
  }

  // Calls the loop at `slot` as a function returning to a HLT.
  StopInfo Call(Slot slot, uint64_t iterations) {
    return CallAt(kCodeAddr + slot, {{kRcx, iterations}, {kRdx, kBenchPort}});
  }

  const CountingPort& counting_port() const { return static_cast<const CountingPort&>(*ports); }
};

// Best-of thread CPU ns per iteration of `slot` (translated and warm).
double CpuNsPerIteration(HelperGuest& g, Slot slot, uint64_t iterations, int runs) {
  double best = 1e30;
  for (int i = 0; i < runs; ++i) {
    double t0 = ThreadCpuNs();
    g.Call(slot, iterations);
    best = std::min(best, ThreadCpuNs() - t0);
  }
  return best / static_cast<double>(iterations);
}

// Runs `slot` `iterations` times per benchmark iteration and reports ns per operation, the
// bare loop's cost per iteration subtracted (ns_per_op), and the engine's counters per op.
void RunHelper(benchmark::State& state, Slot slot, uint64_t iterations,
               bool (*verify)(const HelperGuest&, uint64_t calls)) {
  HelperGuest g;
  StopInfo warm = g.Call(slot, 100);  // translate and chain
  if (warm.reason != StopReason::kHalted) {
    state.SkipWithError(("guest did not return: " + warm.message).c_str());
    return;
  }
  const double loop_ns = CpuNsPerIteration(g, kSlotLoop, 1000000, 3);
  const VcpuStats before = g.vcpu->stats();
  uint64_t calls = 100;
  double best_cpu = 1e30;
  for (auto _ : state) {
    double c0 = ThreadCpuNs();
    StopInfo stop = g.Call(slot, iterations);
    best_cpu = std::min(best_cpu, ThreadCpuNs() - c0);
    calls += iterations;
    if (stop.reason != StopReason::kHalted) {
      state.SkipWithError(("guest stopped: " + stop.message).c_str());
      return;
    }
  }
  if (!verify(g, calls)) {
    state.SkipWithError("the guest's operations did not all reach the engine");
    return;
  }
  const VcpuStats after = g.vcpu->stats();
  const double ops = static_cast<double>(state.iterations() * iterations);
  state.SetItemsProcessed(static_cast<int64_t>(ops));
  state.counters["ns_per_op"] = best_cpu / static_cast<double>(iterations) - loop_ns;
  state.counters["loop_ns"] = loop_ns;
  state.counters["emulated_per_op"] =
      static_cast<double>(after.emulated_instructions - before.emulated_instructions) / ops;
  state.counters["exceptions_per_op"] =
      static_cast<double>(after.exceptions - before.exceptions) / ops;
}

// Every iteration ran the guest's handler once (the handlers count in guest memory).
bool HandlerRanEach(const HelperGuest& g, uint64_t counter, uint64_t calls) {
  return g.mem->ReadU64(counter) == calls;
}

void BM_Cpuid(benchmark::State& state) {
  RunHelper(state, kSlotCpuid, 100000, [](const HelperGuest& g, uint64_t) {
    return g.vcpu->state().gpr[kRbx] == 0x756E6547 || g.vcpu->state().gpr[kRbx] == 0x68747541;
  });
}
BENCHMARK(BM_Cpuid)->Unit(benchmark::kMillisecond);

void BM_CpuidNative(benchmark::State& state) {
  unsigned a = 0, b = 0, c = 0, d = 0;
  for (auto _ : state) {
    __cpuid(0, a, b, c, d);
    benchmark::DoNotOptimize(b);
  }
}
BENCHMARK(BM_CpuidNative);

void BM_PortIn(benchmark::State& state) {
  RunHelper(state, kSlotIn, 100000, [](const HelperGuest& g, uint64_t calls) {
    return g.counting_port().ins == calls && (g.vcpu->state().gpr[kRax] & 0xFF) == 0x5A;
  });
}
BENCHMARK(BM_PortIn)->Unit(benchmark::kMillisecond);

void BM_PortOut(benchmark::State& state) {
  RunHelper(state, kSlotOut, 100000,
            [](const HelperGuest& g, uint64_t calls) { return g.counting_port().outs == calls; });
}
BENCHMARK(BM_PortOut)->Unit(benchmark::kMillisecond);

void BM_Rdmsr(benchmark::State& state) {
  RunHelper(state, kSlotRdmsr, 100000, [](const HelperGuest& g, uint64_t) {
    return (g.vcpu->state().gpr[kRax] & 0x500) == 0x500;  // EFER.LME | LMA in long mode
  });
}
BENCHMARK(BM_Rdmsr)->Unit(benchmark::kMillisecond);

void BM_UdRoundTrip(benchmark::State& state) {
  RunHelper(state, kSlotUd, 20000, [](const HelperGuest& g, uint64_t calls) {
    return HandlerRanEach(g, kUdCount, calls);
  });
}
BENCHMARK(BM_UdRoundTrip)->Unit(benchmark::kMillisecond);

void BM_PfRoundTrip(benchmark::State& state) {
  RunHelper(state, kSlotPf, 20000, [](const HelperGuest& g, uint64_t calls) {
    return HandlerRanEach(g, kPfCount, calls) && g.vcpu->state().cr2 == 0x8000000000ull;
  });
}
BENCHMARK(BM_PfRoundTrip)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace rove
