// A 64-bit guest for translator tests, shared by the test files of tests/translator.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "rove/mmu/guest_memory.h"
#include "rove/translator/bt_cpu.h"
#include "rove/translator/cpu_state.h"

namespace rove {

// Long-mode guest: identity-mapped first 1 GiB with 2 MiB pages, code at 0x100000,
// stack top at 0x80000, data at 0x200000.
class LongModeGuest {
 public:
  static constexpr uint64_t kCode = 0x100000;
  static constexpr uint64_t kData = 0x200000;
  static constexpr uint64_t kStackTop = 0x80000;

  explicit LongModeGuest(BtOptions options = {}) : mem(GuestMemory::Create(64ull << 20)) {
    const uint64_t pml4 = 0x1000, pdpt = 0x2000, pd = 0x3000;
    mem->WriteU64(pml4, pdpt | 0x7);
    mem->WriteU64(pdpt, pd | 0x7);
    for (uint64_t i = 0; i < 512; ++i) mem->WriteU64(pd + 8 * i, (i << 21) | 0x87);
    ResetCpuState(state);
    state.cr0 = cr0::kPe | cr0::kPg | cr0::kEt | cr0::kNe | cr0::kWp;
    state.cr3 = pml4;
    state.cr4 = cr4::kPae | cr4::kOsfxsr | cr4::kOsxmmexcpt;
    state.efer = efer::kLme | efer::kLma | efer::kNxe | efer::kSce;
    for (auto& s : state.seg) {
      s.base = 0;
      s.limit = 0xFFFFFFFF;
      s.attr = seg_attr::kP | seg_attr::kS | seg_attr::kTypeWritable | seg_attr::kTypeAccessed |
               seg_attr::kDb | seg_attr::kG;
    }
    state.seg[kCs].attr = seg_attr::kP | seg_attr::kS | seg_attr::kTypeCode |
                          seg_attr::kTypeReadable | seg_attr::kL | seg_attr::kG;
    state.seg[kCs].selector = 0x8;
    state.rip = kCode;
    state.gpr[kRsp] = kStackTop;
    cpu = std::make_unique<BtCpu>(*mem, state, options);
  }

  void Load(const std::vector<uint8_t>& code) { mem->Write(kCode, code.data(), code.size()); }

  // Runs until the emulator would be needed (HLT ends every program here).
  Exit RunToEmulate() {
    for (int i = 0; i < 1000; ++i) {
      Exit e = cpu->Run();
      if (e.reason != ExitReason::kRequest) return e;
    }
    return Exit{};
  }

  std::unique_ptr<GuestMemory> mem;
  CpuState state;
  std::unique_ptr<BtCpu> cpu;
};

// Runs the guest on another thread, asks it to stop after `delay` and returns the exit. Runs
// that end for other reasons first (translation, chaining) are resumed. A guest that does not
// stop within 20 s ends the test program: its thread cannot be stopped otherwise.
inline Exit RunThenRequestExit(LongModeGuest& g,
                               std::chrono::milliseconds delay = std::chrono::milliseconds(50)) {
  std::atomic<bool> running{false};
  auto done = std::async(std::launch::async, [&] {
    running = true;
    Exit e{};
    for (int i = 0; i < 1000; ++i) {
      e = g.cpu->Run();
      if (e.reason == ExitReason::kRequest) break;
    }
    return e;
  });
  while (!running) std::this_thread::yield();
  std::this_thread::sleep_for(delay);
  g.cpu->RequestExit();
  if (done.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    ADD_FAILURE() << "RequestExit did not stop the guest";
    std::fflush(nullptr);
    std::_Exit(1);
  }
  Exit e = done.get();
  g.cpu->ClearExitRequest();
  return e;
}

}  // namespace rove
