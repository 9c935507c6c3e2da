// What a vCPU is apart from the accelerator running it: the architectural state, the CPU model
// and clock, the machine's interrupt controllers and platform registers, INIT/SIPI, halting and
// stop requests. Both accelerators run the same loop structure around it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>

#include "rove/devices/vcpu_interrupts.h"
#include "rove/engine/cpu_model.h"
#include "rove/engine/guest_clock.h"
#include "rove/engine/io_ports.h"
#include "rove/engine/platform_hooks.h"
#include "rove/engine/vcpu.h"
#include "rove/mmu/guest_memory.h"
#include "rove/translator/cpu_state.h"
#include "rove/translator/exit.h"

namespace rove {

struct VcpuCore {
  VcpuCore(GuestMemory& memory_in, IoPorts& io_in, int index_in, GuestClock* shared_clock,
           int cpu_count)
      : memory(memory_in),
        io(io_in),
        index(index_in),
        model(ModelOptions(index_in, cpu_count)),
        own_clock(model.tsc_hz()),
        clock(shared_clock ? *shared_clock : own_clock) {
    ResetCpuState(state);
  }

  static CpuModelOptions ModelOptions(int index, int cpu_count) {
    CpuModelOptions o;
    o.apic_id = static_cast<uint32_t>(index);
    o.cpu_count = static_cast<uint32_t>(cpu_count);
    return o;
  }

  // Handles INIT/SIPI requests; returns false while the vCPU must keep waiting for a SIPI.
  // Sets *state_replaced when INIT or SIPI rewrote `state` (an accelerator holding the state
  // elsewhere must reload it).
  bool HandleStartup(bool* state_replaced) {
    std::unique_lock lock(mu);
    if (pending_init) {
      pending_init = false;
      ResetCpuState(state);
      state.gpr[kRdx] = 0x600;
      waiting_for_sipi = true;
      pending_sipi = -1;
      pending_external_vector = -1;
      pending_exception.reset();
      *state_replaced = true;
    }
    if (!waiting_for_sipi) return true;
    if (pending_sipi >= 0) {
      const uint64_t vector = static_cast<uint64_t>(pending_sipi);
      pending_sipi = -1;
      waiting_for_sipi = false;
      state.seg[kCs].selector = static_cast<uint16_t>(vector << 8);
      state.seg[kCs].base = vector << 12;
      state.rip = 0;
      state.halted = false;
      *state_replaced = true;
      return true;
    }
    cv.wait(lock, [&] { return woken || stop_requested.load(); });
    woken = false;
    return false;
  }

  // Sleeps while halted until an interrupt may be deliverable or a stop is requested.
  void WaitWhileHalted() {
    while (!stop_requested.load() && !interrupts->HasInterrupt(cpu_index)) {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return woken || stop_requested.load(); });
      woken = false;
    }
  }

  void SetWoken() {
    {
      std::lock_guard lock(mu);
      woken = true;
    }
    cv.notify_all();
  }

  GuestMemory& memory;
  IoPorts& io;
  int index;
  CpuState state;
  CpuModel model;
  GuestClock own_clock;
  GuestClock& clock;
  std::atomic<bool> stop_requested{false};
  VcpuStats stats;

  VcpuInterrupts* interrupts = nullptr;
  unsigned cpu_index = 0;
  PlatformHooks* hooks = nullptr;
  std::mutex mu;
  std::condition_variable cv;
  bool woken = false;
  bool waiting_for_sipi = false;
  bool pending_init = false;
  int pending_sipi = -1;

  // Events one accelerator had accepted but not yet delivered when it stopped; the next
  // accelerator delivers them first. An external interrupt already acknowledged at the
  // controller (its vector), or an exception being delivered.
  int pending_external_vector = -1;
  std::optional<GuestException> pending_exception;
};

// One accelerator's execution of one vCPU.
class Accelerator {
 public:
  virtual ~Accelerator() = default;
  virtual AccelKind kind() const = 0;
  // Runs the guest from VcpuCore::state until a stop condition (Vcpu::Run's contract). When it
  // returns, VcpuCore::state holds the complete state again.
  virtual StopInfo Run(uint64_t max_guest_exits) = 0;
  // Thread-safe: a running Run() looks at stop requests, startups and interrupts soon.
  virtual void Kick() = 0;
  // Called when this accelerator takes over a vCPU another one ran: anything it cached about
  // guest memory or state may be stale.
  virtual void TakeOver() = 0;
};

}  // namespace rove
