// The engine's emulation of everything translated code does not run itself: privileged and
// sensitive instructions, string and I/O instructions, far control transfers, and the delivery
// of exceptions and interrupts, all on the architectural state in CpuState and as the Intel SDM
// defines them (every fault check included).
//
// How the vCPU loop uses it:
//   Exit{kEmulate}            -> EmulateInstruction()
//   Exit{kException, e}       -> DeliverException(e)
//   external interrupt/NMI    -> if CanTakeInterrupt() / CanTakeNmi(): DeliverInterrupt(v, kind)
//   then, by outcome:
//     kContinue  re-enter translated code at CpuState::rip
//     kHalt      CpuState::halted is set (HLT, MWAIT): wait for an interrupt, then
//                DeliverInterrupt() (which clears `halted`)
//     kShutdown  triple fault or an unsupported architectural feature: stop the VM and show
//                `message` (one line, then a dump of the guest state)
//     kReset     the guest asked for a CPU reset (not produced by the emulator today; reserved
//                for the machine's reset paths)
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "rove/engine/cpu_model.h"
#include "rove/engine/guest_clock.h"
#include "rove/engine/io_ports.h"
#include "rove/engine/platform_hooks.h"
#include "rove/mmu/guest_memory.h"
#include "rove/mmu/linear_memory.h"
#include "rove/translator/cpu_state.h"
#include "rove/translator/exit.h"

namespace rove {

enum class EmulationOutcome : uint8_t { kContinue, kHalt, kShutdown, kReset };

struct EmulationResult {
  EmulationOutcome outcome = EmulationOutcome::kContinue;
  std::string message;  // for kShutdown: what happened plus a dump of the guest state

  bool ok() const { return outcome == EmulationOutcome::kContinue; }
};

enum class InterruptKind : uint8_t {
  kExternal,            // from the interrupt controller (EXT = 1, no DPL check)
  kNmi,                 // vector 2
  kSoftware,            // INT n (DPL check, EXT = 0)
  kSoftwareException,   // INT3, INTO (DPL check, EXT = 0)
  kPrivilegedSoftware,  // INT1 / ICEBP (no DPL check, EXT = 1)
};

struct EmulatorStats {
  uint64_t instructions = 0;
  uint64_t exceptions = 0;
  uint64_t interrupts = 0;
  uint64_t string_bytes = 0;
};

class SystemEmulator {
 public:
  SystemEmulator(CpuState& state, GuestMemory& memory, LinearMemory& linear, IoPorts& io,
                 TranslationControl& control, const CpuModel& model, GuestClock& clock);
  ~SystemEmulator();
  SystemEmulator(const SystemEmulator&) = delete;
  SystemEmulator& operator=(const SystemEmulator&) = delete;

  // Executes exactly the one instruction at CS:RIP (a REP string instruction may execute a
  // bounded chunk of its iterations and leave RIP at itself with the count registers updated,
  // as hardware does at an interrupt window). Any exception it raises is delivered.
  EmulationResult EmulateInstruction();

  // Delivers an exception reported by translated code (RIP and state as described in exit.h).
  // Faults during delivery become #DF, and a fault while delivering #DF shuts down.
  EmulationResult DeliverException(const GuestException& exception);

  // Delivers an interrupt. For kExternal/kNmi the caller has checked it may be taken.
  // For the software kinds RIP must already point past the instruction.
  EmulationResult DeliverInterrupt(uint8_t vector, InterruptKind kind);

  // RFLAGS.IF set and no STI/MOV SS interrupt shadow.
  bool CanTakeInterrupt() const;
  // No NMI is being handled (NMIs are blocked from NMI delivery until the next IRET) and no
  // MOV SS/POP SS shadow.
  bool CanTakeNmi() const;

  // Routes the platform's registers (local APIC MSRs, CR8) to the machine; null detaches.
  void SetPlatformHooks(PlatformHooks* hooks);

  // A one-line-per-group dump of the guest state (registers, segments, control registers).
  std::string DumpState() const;

  const EmulatorStats& stats() const;
  // The `top_n` most often emulated instructions (mnemonic, count), most frequent first: what
  // the translator could learn to run inline.
  std::vector<std::pair<std::string, uint64_t>> EmulatedProfile(size_t top_n) const;

  // Largest number of bytes one EmulateInstruction() call moves for a REP string instruction
  // before returning with the instruction partly done (default 64 KiB).
  void set_string_chunk_bytes(uint64_t bytes);

  // Forgets cached linear-address translations (after another accelerator ran the guest).
  void FlushTlb();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rove
