// One virtual CPU, run on the calling thread by an accelerator: binary translation (translator
// plus the engine's emulation of privileged and sensitive instructions, exceptions and
// interrupts) or KVM. Whenever Run() is not active, state() holds the complete architectural
// state, whichever accelerator ran it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rove/engine/accelerator.h"
#include "rove/engine/io_ports.h"
#include "rove/mmu/guest_memory.h"
#include "rove/translator/cpu_state.h"

namespace rove {

class VcpuInterrupts;
class StateWriter;
class StateReader;
class PlatformHooks;
class GuestClock;

enum class StopReason : uint8_t {
  kHalted,         // HLT with interrupts disabled and nothing that could wake it
  kShutdown,       // triple fault; `message` describes the guest state
  kStopRequested,  // RequestStop() was called
  kInstructionLimit,
  kDebugExit,  // an IoPorts implementation asked to end the run (see RequestStop)
};

struct StopInfo {
  StopReason reason = StopReason::kHalted;
  std::string message;
};

struct VcpuStats {
  uint64_t blocks_translated = 0;
  uint64_t instructions_translated = 0;
  uint64_t code_flushes = 0;
  uint64_t tlb_misses = 0;
  uint64_t counted_loops = 0;      // blocks translated with a fast counted-loop version
  uint64_t loop_fast_entries = 0;  // entries into those fast versions
  uint64_t emulated_instructions = 0;
  uint64_t exceptions = 0;
  uint64_t interrupts = 0;
  uint64_t kvm_exits = 0;  // KVM_RUN returns (KVM accelerator)
};

class Vcpu {
 public:
  // `index` is the vCPU number (its initial APIC ID) of `cpu_count`. vCPUs of one machine share
  // `clock` so their TSCs agree; without one the vCPU has its own.
  Vcpu(GuestMemory& memory, IoPorts& io, int index = 0, GuestClock* clock = nullptr,
       int cpu_count = 1);
  ~Vcpu();
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  CpuState& state();
  // Runs until a stop condition. `max_guest_exits` bounds exits to the engine (0 = unbounded);
  // it exists so tests executing garbage end deterministically.
  StopInfo Run(uint64_t max_guest_exits = 0);
  // Thread-safe: makes Run() return at the next instruction boundary (within microseconds).
  void RequestStop();

  // Connects the machine: the interrupt controllers this vCPU takes interrupts from (as vCPU
  // `cpu_index`) and the platform registers (local APIC MSRs, CR8). With interrupts attached,
  // HLT sleeps until an interrupt is deliverable instead of ending Run().
  void AttachPlatform(VcpuInterrupts* interrupts, unsigned cpu_index, PlatformHooks* hooks);
  // Thread-safe: something may have become deliverable to this vCPU. Kicks translated code and
  // wakes a halted vCPU.
  void Wake();

  // Multi-vCPU: the other vCPUs sharing the guest memory (for translated-code coherence).
  void SetPeers(const std::vector<Vcpu*>& peers);
  // Thread-safe: guest code at `page_gpa` was written (GuestMemory's code-write observer).
  void NotifyCodeWrite(uint64_t page_gpa);
  // Application processors: until a startup IPI arrives, Run() waits. Thread-safe.
  void SetWaitForStartup(bool wait);
  // INIT (reset to the wait-for-SIPI state) or SIPI (start in real mode at vector * 0x1000).
  void Startup(bool init, uint8_t vector);
  // Moves the vCPU to another accelerator; only while Run() is not active. The state carries
  // over (it is in state()); events one accelerator had accepted but not delivered are
  // delivered first by the next. kKvm needs the machine's KvmVm (the first time); throws
  // KvmUnavailable when KVM refuses the vCPU.
  void SetAccelerator(AccelKind kind, KvmVm* vm = nullptr);
  AccelKind accelerator() const;

  // Snapshot of this vCPU (state(), the guest TSC, INIT/SIPI state, events accepted but not
  // delivered) as one "VCPU" record; only while Run() is not active. LoadState throws
  // StateError on malformed input and then leaves the vCPU unchanged.
  void SaveState(StateWriter& out) const;
  void LoadState(StateReader& in);
  // Parses and checks one "VCPU" record as LoadState would, changing nothing.
  static void CheckState(StateReader& in);

  const VcpuStats& stats() const;
  // The most often emulated instructions (mnemonic, count), most frequent first.
  std::vector<std::pair<std::string, uint64_t>> EmulatedProfile(size_t top_n) const;
  // The guest's current TSC value (as RDTSC would return it now).
  uint64_t ReadTsc() const;
  uint64_t tsc_hz() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rove
