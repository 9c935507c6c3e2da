// `--accel auto`: measure rather than assume. A tiny real-mode loop (dec ecx / jnz) runs on each
// accelerator; the faster per iteration wins. KVM's fixed entry/exit cost is taken out by timing
// two loop lengths, so a real VT-x host (where KVM runs the loop at native speed) picks kvm and
// software-emulated KVM (kvm-pvm, thousands of times slower) picks bt.
#include <fmt/core.h>

#include <chrono>
#include <cstring>

#include "rove/engine/accelerator.h"
#include "rove/engine/io_ports.h"
#include "rove/engine/vcpu.h"
#include "rove/mmu/guest_memory.h"

namespace rove {

namespace {

class NoPorts : public IoPorts {
 public:
  uint32_t In(uint16_t, unsigned) override { return 0xFFFFFFFF; }
  void Out(uint16_t, unsigned, uint32_t) override {}
};

constexpr uint64_t kLoopAddr = 0x1000;

// Runs `iterations` of the loop on `vcpu`; returns nanoseconds of wall time, or a negative
// value when the guest did not end as expected.
double TimeLoop(Vcpu& vcpu, GuestMemory& mem, uint32_t iterations) {
  // l: dec ecx; jnz l; hlt (IF=0: the run ends). The count comes in ECX, so the code bytes
  // never change (a write through the host pointer would bypass the translator's SMC check).
  const uint8_t code[] = {0x66, 0x49, 0x75, 0xFC, 0xF4};
  std::memcpy(mem.host_base() + kLoopAddr, code, sizeof code);
  CpuState& s = vcpu.state();
  ResetCpuState(s);
  s.gpr[kRcx] = iterations;
  s.seg[kCs].selector = 0;
  s.seg[kCs].base = 0;
  s.rip = kLoopAddr;
  const auto start = std::chrono::steady_clock::now();
  const StopInfo stop = vcpu.Run(1000);
  const auto end = std::chrono::steady_clock::now();
  if (stop.reason != StopReason::kHalted || s.gpr[kRcx] != 0) return -1;
  return std::chrono::duration<double, std::nano>(end - start).count();
}

std::string Figure(double ns) {
  return ns < 10 ? fmt::format("{:.2f}", ns) : fmt::format("{:.0f}", ns);
}

}  // namespace

AccelChoice ChooseAccelerator(const std::string& kvm_device) {
  AccelChoice choice;
  const std::string unusable = KvmUnusableReason(kvm_device);
  if (!unusable.empty()) {
    choice.summary = fmt::format("accel: bt (kvm unusable: {})", unusable);
    return choice;
  }
  try {
    auto mem = GuestMemory::Create(1 << 20);
    NoPorts ports;

    Vcpu bt_vcpu(*mem, ports);
    TimeLoop(bt_vcpu, *mem, 1000);  // translate first
    constexpr uint32_t kBtIterations = 2'000'000;
    const double bt_ns = TimeLoop(bt_vcpu, *mem, kBtIterations);
    if (bt_ns <= 0) throw std::runtime_error("the calibration loop failed under bt");
    choice.bt_ns_per_iteration = bt_ns / kBtIterations;

    auto vm = KvmVm::Create(*mem, kvm_device);
    Vcpu kvm_vcpu(*mem, ports);
    kvm_vcpu.SetAccelerator(AccelKind::kKvm, vm.get());
    TimeLoop(kvm_vcpu, *mem, 100);  // first entry
    constexpr uint32_t kShort = 1000;
    const double short_ns = TimeLoop(kvm_vcpu, *mem, kShort);
    if (short_ns <= 0) throw KvmUnavailable("the calibration loop failed under kvm");
    double kvm_per_iteration = short_ns / kShort;
    // Clearly slower even counting entry and exit: no need for the long run.
    if (kvm_per_iteration < 20 * choice.bt_ns_per_iteration) {
      constexpr uint32_t kLong = 1'000'000;
      const double long_ns = TimeLoop(kvm_vcpu, *mem, kLong);
      if (long_ns <= 0) throw KvmUnavailable("the calibration loop failed under kvm");
      kvm_per_iteration = std::max(long_ns - short_ns, 1.0) / (kLong - kShort);
    }
    choice.kvm_ns_per_iteration = kvm_per_iteration;
    choice.kind = kvm_per_iteration < choice.bt_ns_per_iteration ? AccelKind::kKvm : AccelKind::kBt;
    choice.summary = fmt::format("accel: {} (calibration: bt {} ns/iter, kvm {} ns/iter)",
                                 AccelName(choice.kind), Figure(choice.bt_ns_per_iteration),
                                 Figure(choice.kvm_ns_per_iteration));
  } catch (const KvmUnavailable& e) {
    choice.kind = AccelKind::kBt;
    choice.kvm_ns_per_iteration = 0;
    choice.summary = fmt::format("accel: bt (kvm unusable: {})", e.what());
  }
  return choice;
}

}  // namespace rove
