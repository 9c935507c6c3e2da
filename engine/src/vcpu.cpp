// The vCPU loop: translated execution until an exit, then the engine's emulation of what the
// translator hands back (instructions, exceptions), interrupt windows, halts and stop requests.
#include "rove/engine/vcpu.h"

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "rove/devices/vcpu_interrupts.h"
#include "rove/engine/cpu_model.h"
#include "rove/engine/guest_clock.h"
#include "rove/engine/platform_hooks.h"
#include "rove/engine/system_emulator.h"
#include "rove/mmu/linear_memory.h"
#include "rove/translator/bt_cpu.h"

namespace rove {

struct Vcpu::Impl {
  Impl(GuestMemory& memory_in, IoPorts& io_in, int index_in, GuestClock* shared_clock,
       int cpu_count)
      : memory(memory_in),
        io(io_in),
        index(index_in),
        linear(memory_in),
        model(ModelOptions(index_in, cpu_count)),
        own_clock(model.tsc_hz()),
        clock(shared_clock ? *shared_clock : own_clock),
        bt(memory_in, state),
        emulator(state, memory_in, linear, io_in, bt, model, clock) {
    ResetCpuState(state);
  }

  static CpuModelOptions ModelOptions(int index, int cpu_count) {
    CpuModelOptions o;
    o.apic_id = static_cast<uint32_t>(index);
    o.cpu_count = static_cast<uint32_t>(cpu_count);
    return o;
  }

  // Handles INIT/SIPI requests; returns false while the vCPU must keep waiting for a SIPI.
  bool HandleStartup() {
    std::unique_lock lock(mu);
    if (pending_init) {
      pending_init = false;
      ResetCpuState(state);
      state.gpr[kRdx] = 0x600;
      waiting_for_sipi = true;
      pending_sipi = -1;
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
      return true;
    }
    cv.wait(lock, [&] { return woken || stop_requested.load(); });
    woken = false;
    return false;
  }

  // Delivers a pending NMI or external interrupt if the guest can take it now.
  EmulationResult TakeInterrupts() {
    EmulationResult r;
    if (!interrupts) return r;
    if (emulator.CanTakeNmi() && interrupts->TakeNmi(cpu_index)) {
      stats.interrupts++;
      return emulator.DeliverInterrupt(kNmi, InterruptKind::kNmi);
    }
    if (emulator.CanTakeInterrupt() && interrupts->HasInterrupt(cpu_index)) {
      if (auto vector = interrupts->AcknowledgeInterrupt(cpu_index)) {
        stats.interrupts++;
        return emulator.DeliverInterrupt(*vector, InterruptKind::kExternal);
      }
    }
    return r;
  }

  // Sleeps while halted until an interrupt may be deliverable or a stop is requested.
  void WaitWhileHalted() {
    while (!stop_requested.load() && !interrupts->HasInterrupt(cpu_index)) {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return woken || stop_requested.load(); });
      woken = false;
    }
  }

  GuestMemory& memory;
  IoPorts& io;
  int index;
  CpuState state;
  LinearMemory linear;
  CpuModel model;
  GuestClock own_clock;
  GuestClock& clock;
  BtCpu bt;
  SystemEmulator emulator;
  std::atomic<bool> stop_requested{false};
  VcpuStats stats;

  VcpuInterrupts* interrupts = nullptr;
  unsigned cpu_index = 0;
  std::mutex mu;
  std::condition_variable cv;
  bool woken = false;
  bool waiting_for_sipi = false;
  bool pending_init = false;
  int pending_sipi = -1;
};

Vcpu::Vcpu(GuestMemory& memory, IoPorts& io, int index, GuestClock* clock, int cpu_count)
    : impl_(std::make_unique<Impl>(memory, io, index, clock, cpu_count)) {}

void Vcpu::SetPeers(const std::vector<Vcpu*>& peers) {
  std::vector<BtCpu*> bts;
  for (Vcpu* v : peers) bts.push_back(&v->impl_->bt);
  impl_->bt.SetPeers(bts);
}

void Vcpu::NotifyCodeWrite(uint64_t page_gpa) {
  impl_->bt.NotifyCodeWrite(page_gpa);
}

void Vcpu::SetWaitForStartup(bool wait) {
  std::lock_guard lock(impl_->mu);
  impl_->waiting_for_sipi = wait;
}

void Vcpu::Startup(bool init, uint8_t vector) {
  {
    std::lock_guard lock(impl_->mu);
    if (init) {
      impl_->pending_init = true;
    } else if (impl_->waiting_for_sipi || impl_->pending_init) {
      impl_->pending_sipi = vector;
    }
    impl_->woken = true;
  }
  impl_->bt.RequestExit();
  impl_->cv.notify_all();
}

Vcpu::~Vcpu() = default;

CpuState& Vcpu::state() {
  return impl_->state;
}

void Vcpu::RequestStop() {
  impl_->stop_requested.store(true);
  impl_->bt.RequestExit();
  {
    std::lock_guard lock(impl_->mu);
    impl_->woken = true;
  }
  impl_->cv.notify_all();
}

void Vcpu::AttachPlatform(VcpuInterrupts* interrupts, unsigned cpu_index, PlatformHooks* hooks) {
  impl_->interrupts = interrupts;
  impl_->cpu_index = cpu_index;
  impl_->emulator.SetPlatformHooks(hooks);
}

void Vcpu::Wake() {
  impl_->bt.RequestExit();
  {
    std::lock_guard lock(impl_->mu);
    impl_->woken = true;
  }
  impl_->cv.notify_all();
}

const VcpuStats& Vcpu::stats() const {
  const BtStats& b = impl_->bt.stats();
  impl_->stats.blocks_translated = b.blocks_translated;
  impl_->stats.instructions_translated = b.instructions_translated;
  impl_->stats.code_flushes = b.cache_flushes;
  impl_->stats.tlb_misses = b.tlb_misses;
  return impl_->stats;
}

std::vector<std::pair<std::string, uint64_t>> Vcpu::EmulatedProfile(size_t top_n) const {
  return impl_->emulator.EmulatedProfile(top_n);
}

uint64_t Vcpu::ReadTsc() const {
  return impl_->clock.ReadTsc(impl_->state);
}
uint64_t Vcpu::tsc_hz() const {
  return impl_->clock.tsc_hz();
}

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

StopInfo Vcpu::Run(uint64_t max_guest_exits) {
  Impl& im = *impl_;
  CpuState& st = im.state;
  uint64_t exits = 0;
  StopInfo stop;
  for (;;) {
    if (im.stop_requested.load()) {
      im.stop_requested.store(false);
      im.bt.ClearExitRequest();
      return StopInfo{StopReason::kStopRequested, {}};
    }
    if (max_guest_exits && exits++ >= max_guest_exits)
      return StopInfo{StopReason::kInstructionLimit, {}};
    // Clear the kick before looking at the controllers: a wake after this point re-arms it.
    im.bt.ClearExitRequest();
    if (!im.HandleStartup()) continue;
    if (Finished(im.TakeInterrupts(), &stop)) return stop;
    if (st.halted) {
      // HLT with interrupts disabled: only an NMI could resume it, and no device here raises
      // one on its own, so the run ends.
      if (!im.interrupts || !(st.rflags & rflags::kIf)) return StopInfo{StopReason::kHalted, {}};
      im.WaitWhileHalted();
      continue;
    }
    // After STI / MOV SS exactly one instruction runs before interrupts are looked at again.
    const bool shadow = st.interrupt_shadow;
    // RFLAGS.TF: run one instruction at a time and trap (#DB, DR6.BS) after each translated
    // one that completes.
    const bool trap_flag = (st.rflags & rflags::kTf) != 0;
    im.bt.SetInterruptPending(im.interrupts && !(st.rflags & rflags::kIf) &&
                              im.interrupts->HasInterrupt(im.cpu_index));
    Exit exit = im.bt.Run(shadow || trap_flag);
    EmulationResult result;
    bool completed = false;
    switch (exit.reason) {
      case ExitReason::kEmulate:
        // The emulator raises the single-step trap of the instructions it executes itself.
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
        if (shadow && exit.stepped) st.interrupt_shadow = false;
        completed = exit.stepped;
        break;
    }
    if (Finished(result, &stop)) return stop;
    if (trap_flag && completed && result.outcome == EmulationOutcome::kContinue) {
      st.dr[6] |= 1ull << 14;  // BS: single step
      GuestException db;
      db.vector = kDb;
      if (Finished(im.emulator.DeliverException(db), &stop)) return stop;
    }
    if (Finished(result, &stop)) return stop;
  }
}

}  // namespace rove
