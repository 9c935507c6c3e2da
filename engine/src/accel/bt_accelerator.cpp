// The BT vCPU loop: translated execution until an exit, then the engine's emulation of what the
// translator hands back (instructions, exceptions), interrupt windows, halts and stop requests.
#include "bt_accelerator.h"

namespace rove {

namespace {

bool Finished(const EmulationResult& r, StopInfo* stop) {
  switch (r.outcome) {
    case EmulationOutcome::kContinue:
    case EmulationOutcome::kHalt:
      return false;
    case EmulationOutcome::kShutdown:
      *stop = StopInfo{StopReason::kShutdown, r.message};
      return true;
    case EmulationOutcome::kReset:
      *stop = StopInfo{StopReason::kShutdown, "reset requested: " + r.message};
      return true;
  }
  return false;
}

}  // namespace

void BtAccelerator::TakeOver() {
  // Another accelerator ran the guest: it wrote guest memory (code, page tables) without the
  // code-write notifications, so no translation or soft-TLB entry can be trusted.
  bt_.FlushTranslations();
  bt_.FlushTlb(true);
  emulator_.FlushTlb();
}

// Delivers an event left by another accelerator, else a pending NMI or external interrupt if
// the guest can take it now.
EmulationResult BtAccelerator::TakeInterrupts() {
  EmulationResult r;
  if (core_.pending_exception) {
    const GuestException e = *core_.pending_exception;
    core_.pending_exception.reset();
    core_.stats.exceptions++;
    return emulator_.DeliverException(e);
  }
  if (core_.pending_external_vector >= 0) {
    const auto vector = static_cast<uint8_t>(core_.pending_external_vector);
    core_.pending_external_vector = -1;
    core_.stats.interrupts++;
    return emulator_.DeliverInterrupt(vector, InterruptKind::kExternal);
  }
  if (!core_.interrupts) return r;
  if (emulator_.CanTakeNmi() && core_.interrupts->TakeNmi(core_.cpu_index)) {
    core_.stats.interrupts++;
    return emulator_.DeliverInterrupt(kNmi, InterruptKind::kNmi);
  }
  if (emulator_.CanTakeInterrupt() && core_.interrupts->HasInterrupt(core_.cpu_index)) {
    if (auto vector = core_.interrupts->AcknowledgeInterrupt(core_.cpu_index)) {
      core_.stats.interrupts++;
      return emulator_.DeliverInterrupt(*vector, InterruptKind::kExternal);
    }
  }
  return r;
}

StopInfo BtAccelerator::Run(uint64_t max_guest_exits) {
  VcpuCore& core = core_;
  CpuState& st = core.state;
  uint64_t exits = 0;
  StopInfo stop;
  for (;;) {
    if (core.stop_requested.load()) {
      core.stop_requested.store(false);
      bt_.ClearExitRequest();
      return StopInfo{StopReason::kStopRequested, {}};
    }
    if (max_guest_exits && exits++ >= max_guest_exits)
      return StopInfo{StopReason::kInstructionLimit, {}};
    // Clear the kick before looking at the controllers: a wake after this point re-arms it.
    bt_.ClearExitRequest();
    bool state_replaced = false;
    if (!core.HandleStartup(&state_replaced)) continue;
    if (Finished(TakeInterrupts(), &stop)) return stop;
    if (st.halted) {
      // HLT with interrupts disabled: only an NMI could resume it, and no device here raises
      // one on its own, so the run ends.
      if (!core.interrupts || !(st.rflags & rflags::kIf)) return StopInfo{StopReason::kHalted, {}};
      core.WaitWhileHalted();
      continue;
    }
    // After STI / MOV SS exactly one instruction runs before interrupts are looked at again.
    const bool shadow = st.interrupt_shadow;
    // RFLAGS.TF: run one instruction at a time and trap (#DB, DR6.BS) after each translated
    // one that completes.
    const bool trap_flag = (st.rflags & rflags::kTf) != 0;
    bt_.SetInterruptPending(core.interrupts && !(st.rflags & rflags::kIf) &&
                            core.interrupts->HasInterrupt(core.cpu_index));
    Exit exit = bt_.Run(shadow || trap_flag);
    EmulationResult result;
    bool completed = false;
    switch (exit.reason) {
      case ExitReason::kEmulate:
        // The emulator raises the single-step trap of the instructions it executes itself.
        st.interrupt_shadow = false;
        result = emulator_.EmulateInstruction();
        core.stats.emulated_instructions++;
        break;
      case ExitReason::kException:
        st.interrupt_shadow = false;
        result = emulator_.DeliverException(exit.exception);
        core.stats.exceptions++;
        break;
      case ExitReason::kRequest:
        if (shadow && exit.stepped) st.interrupt_shadow = false;
        completed = exit.stepped;
        break;
    }
    if (Finished(result, &stop)) return stop;
    if (trap_flag && completed && result.outcome == EmulationOutcome::kContinue) {
      st.dr[6] |= 1ull << 14;  // BS: single step
      GuestException db;
      db.vector = kDb;
      if (Finished(emulator_.DeliverException(db), &stop)) return stop;
    }
    if (Finished(result, &stop)) return stop;
  }
}

}  // namespace rove
