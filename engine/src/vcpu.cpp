// The vCPU loop: translated execution until an exit, then the engine's emulation of what the
// translator hands back (instructions, exceptions), interrupt windows and stop requests.
#include "rove/engine/vcpu.h"

#include <atomic>

#include "rove/engine/cpu_model.h"
#include "rove/engine/guest_clock.h"
#include "rove/engine/system_emulator.h"
#include "rove/mmu/linear_memory.h"
#include "rove/translator/bt_cpu.h"

namespace rove {

struct Vcpu::Impl {
  Impl(GuestMemory& memory_in, IoPorts& io_in, int index_in)
      : memory(memory_in),
        io(io_in),
        index(index_in),
        linear(memory_in),
        clock(model.tsc_hz()),
        bt(memory_in, state),
        emulator(state, memory_in, linear, io_in, bt, model, clock) {
    ResetCpuState(state);
  }

  GuestMemory& memory;
  IoPorts& io;
  int index;
  CpuState state;
  LinearMemory linear;
  CpuModel model;
  GuestClock clock;
  BtCpu bt;
  SystemEmulator emulator;
  std::atomic<bool> stop_requested{false};
  VcpuStats stats;
};

Vcpu::Vcpu(GuestMemory& memory, IoPorts& io, int index)
    : impl_(std::make_unique<Impl>(memory, io, index)) {}

Vcpu::~Vcpu() = default;

CpuState& Vcpu::state() { return impl_->state; }

void Vcpu::RequestStop() {
  impl_->stop_requested.store(true);
  impl_->bt.RequestExit();
}

const VcpuStats& Vcpu::stats() const {
  const BtStats& b = impl_->bt.stats();
  impl_->stats.blocks_translated = b.blocks_translated;
  impl_->stats.instructions_translated = b.instructions_translated;
  impl_->stats.code_flushes = b.cache_flushes;
  impl_->stats.tlb_misses = b.tlb_misses;
  return impl_->stats;
}

StopInfo Vcpu::Run(uint64_t max_guest_exits) {
  Impl& im = *impl_;
  CpuState& st = im.state;
  uint64_t exits = 0;
  for (;;) {
    if (im.stop_requested.load()) {
      im.stop_requested.store(false);
      im.bt.ClearExitRequest();
      return StopInfo{StopReason::kStopRequested, {}};
    }
    if (max_guest_exits && exits++ >= max_guest_exits)
      return StopInfo{StopReason::kInstructionLimit, {}};
    if (st.halted) {
      // No interrupt source can wake this vCPU yet: interrupts come from the machine.
      return StopInfo{StopReason::kHalted, {}};
    }
    // After STI / MOV SS exactly one instruction runs before interrupts are looked at again.
    const bool shadow = st.interrupt_shadow;
    Exit exit = im.bt.Run(shadow);
    EmulationResult result;
    switch (exit.reason) {
      case ExitReason::kEmulate:
        st.interrupt_shadow = false;
        result = im.emulator.EmulateInstruction();
        im.stats.emulated_instructions++;
        break;
      case ExitReason::kException:
        st.interrupt_shadow = false;
        result = im.emulator.DeliverException(exit.exception);
        im.stats.exceptions++;
        break;
      case ExitReason::kRequest:
        if (shadow) st.interrupt_shadow = false;
        if (!im.stop_requested.load()) im.bt.ClearExitRequest();
        break;
    }
    switch (result.outcome) {
      case EmulationOutcome::kContinue:
        break;
      case EmulationOutcome::kHalt:
        if (!(st.rflags & rflags::kIf)) return StopInfo{StopReason::kHalted, {}};
        return StopInfo{StopReason::kHalted, "halted with interrupts enabled"};
      case EmulationOutcome::kShutdown:
        return StopInfo{StopReason::kShutdown, result.message};
      case EmulationOutcome::kReset:
        return StopInfo{StopReason::kShutdown, "reset requested: " + result.message};
    }
  }
}

}  // namespace rove
