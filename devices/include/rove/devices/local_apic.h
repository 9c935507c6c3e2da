// One vCPU's local APIC: the xAPIC MMIO page (default 0xFEE00000) and the x2APIC MSRs
// (0x800-0x8FF), IA32_APIC_BASE (MSR 0x1B), IA32_TSC_DEADLINE (MSR 0x6E0) and CR8.
//
// Registers: ID, version, TPR/PPR, EOI, LDR/DFR, SVR, ISR/TMR/IRR, ESR, ICR (fixed, lowest
// priority, NMI, INIT, SIPI, shorthands), LVT timer/thermal/perf/LINT0/LINT1/error, timer
// initial/current count and divide configuration, x2APIC self-IPI.
//
// The timer counts at `bus_hz` (before the divider) on the Clock of the TimerQueue it is given,
// in one-shot, periodic or TSC-deadline mode; expiry is delivered by the TimerQueue's thread.
// Periodic mode is limited to a minimum period of kMinPeriodicNs so a guest cannot make the
// host spin.
//
// How the engine wires it (per vCPU):
//  - Physical accesses: before the MMIO bus, if ClaimsMmio(gpa) call MmioRead/MmioWrite with
//    gpa - mmio_base(). (The page is per vCPU, so it cannot live on the shared MMIO bus.)
//  - RDMSR/WRMSR 0x1B -> apic_base()/SetApicBase(); 0x6E0 -> tsc_deadline()/SetTscDeadline()
//    with the guest TSC at the time of the write; 0x800-0x8FF -> ReadMsr/WriteMsr. A false
//    return means #GP. CpuState::msr.apic_base may mirror apic_base() but this is the owner.
//  - MOV to/from CR8 -> SetCr8()/cr8().
//  - Interrupt delivery goes through ApicBus (VcpuInterrupts), not through this class.
//
// Thread-safe: one lock per local APIC. It never calls out with the lock held except to arm its
// timer; IPIs, EOI broadcasts and wake-ups go to the LocalApicHost after the lock is released.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>

#include "rove/devices/apic_message.h"
#include "rove/devices/device_state.h"
#include "rove/devices/timer_queue.h"

namespace rove {

// What a local APIC needs from the machine (implemented by ApicBus).
class LocalApicHost {
 public:
  virtual ~LocalApicHost() = default;
  // An IPI written to the ICR of `from_cpu`.
  virtual void SendIpi(unsigned from_cpu, const ApicMessage& message) = 0;
  // EOI of a level-triggered vector: tell the I/O APIC(s).
  virtual void BroadcastEoi(uint8_t vector) = 0;
  // Something may have become deliverable to `cpu`.
  virtual void Wake(unsigned cpu) = 0;
};

struct LocalApicConfig {
  uint32_t apic_id = 0;  // initial APIC ID (and x2APIC ID)
  bool bsp = false;
  uint64_t bus_hz = 1'000'000'000;  // timer clock before the divider (KVM also uses 1 GHz)
  uint64_t tsc_hz = 1'000'000'000;  // guest TSC rate, for TSC-deadline mode
};

class LocalApic {
 public:
  static constexpr uint64_t kDefaultBase = 0xFEE00000;
  static constexpr uint64_t kMmioSize = 0x1000;
  // Integrated APIC (0x14), max LVT entry 5 (timer, thermal, perf, LINT0, LINT1, error).
  static constexpr uint32_t kVersion = 0x00050014;
  static constexpr uint64_t kMinPeriodicNs = 100'000;

  // IA32_APIC_BASE bits.
  static constexpr uint64_t kBaseBsp = 1ull << 8;
  static constexpr uint64_t kBaseExtd = 1ull << 10;  // x2APIC mode
  static constexpr uint64_t kBaseEnable = 1ull << 11;

  // Register offsets (xAPIC MMIO; x2APIC MSR = 0x800 + offset / 16).
  enum Reg : uint32_t {
    kRegId = 0x020,
    kRegVersion = 0x030,
    kRegTpr = 0x080,
    kRegApr = 0x090,
    kRegPpr = 0x0A0,
    kRegEoi = 0x0B0,
    kRegRrd = 0x0C0,
    kRegLdr = 0x0D0,
    kRegDfr = 0x0E0,
    kRegSvr = 0x0F0,
    kRegIsr = 0x100,
    kRegTmr = 0x180,
    kRegIrr = 0x200,
    kRegEsr = 0x280,
    kRegLvtCmci = 0x2F0,
    kRegIcrLow = 0x300,
    kRegIcrHigh = 0x310,
    kRegLvtTimer = 0x320,
    kRegLvtThermal = 0x330,
    kRegLvtPerf = 0x340,
    kRegLvtLint0 = 0x350,
    kRegLvtLint1 = 0x360,
    kRegLvtError = 0x370,
    kRegTimerInitial = 0x380,
    kRegTimerCurrent = 0x390,
    kRegTimerDivide = 0x3E0,
    kRegSelfIpi = 0x3F0,
  };
  static constexpr uint32_t kMsrApicBase = 0x1B;
  static constexpr uint32_t kMsrTscDeadline = 0x6E0;
  static constexpr uint32_t kMsrX2ApicFirst = 0x800;
  static constexpr uint32_t kMsrX2ApicLast = 0x8FF;

  // LVT bits.
  static constexpr uint32_t kLvtMasked = 1u << 16;
  static constexpr uint32_t kTimerOneShot = 0u << 17;
  static constexpr uint32_t kTimerPeriodic = 1u << 17;
  static constexpr uint32_t kTimerTscDeadline = 2u << 17;
  static constexpr uint32_t kSvrEnable = 1u << 8;

  LocalApic(unsigned cpu, const LocalApicConfig& config, LocalApicHost& host, TimerQueue& timers);
  ~LocalApic();
  LocalApic(const LocalApic&) = delete;
  LocalApic& operator=(const LocalApic&) = delete;

  unsigned cpu() const { return cpu_; }
  uint32_t apic_id() const;

  // IA32_APIC_BASE. SetApicBase returns false (#GP) for reserved bits or an invalid mode
  // transition (x2APIC -> xAPIC, EXTD without EN).
  uint64_t apic_base() const;
  bool SetApicBase(uint64_t value);
  uint64_t mmio_base() const;
  bool x2apic_mode() const;
  // True when `gpa` is in this APIC's xAPIC MMIO page (globally enabled and not in x2APIC mode).
  bool ClaimsMmio(uint64_t gpa) const;

  void MmioRead(uint64_t offset, std::span<uint8_t> data);
  void MmioWrite(uint64_t offset, std::span<const uint8_t> data);
  // x2APIC MSRs; false means #GP (not in x2APIC mode, reserved register, read of a write-only
  // or write of a read-only register).
  bool ReadMsr(uint32_t msr, uint64_t& value);
  bool WriteMsr(uint32_t msr, uint64_t value);

  uint64_t tsc_deadline() const;
  void SetTscDeadline(uint64_t deadline, uint64_t guest_tsc_now);

  uint8_t cr8() const;
  void SetCr8(uint8_t value);

  // The state a PC BIOS leaves the BSP in ("virtual wire" mode): software-enabled, LINT0 ExtINT
  // (the PIC), LINT1 NMI.
  void SetVirtualWire();

  // --- Delivery side, used by ApicBus. ---
  bool MatchesDestination(const ApicMessage& message) const;
  // Arbitration priority for lowest-priority delivery (lower wins).
  uint8_t arbitration_priority() const;
  // Fixed / lowest-priority vector (dropped while software-disabled), NMI, ExtINT.
  void AcceptFixed(uint8_t vector, bool level_triggered);
  void AcceptNmi();
  void AcceptExtInt();
  // INIT: every register back to its reset value except the APIC ID and IA32_APIC_BASE.
  void InitReset();
  bool HasInterrupt() const;
  std::optional<uint8_t> Acknowledge();
  bool TakeNmi();
  // True if this APIC passes the PIC's INTR to its CPU: LINT0 unmasked in ExtINT mode, or an
  // ExtINT message is pending, or the APIC is globally disabled on the BSP.
  bool AcceptsExtInt() const;
  // Clears a pending ExtINT message (after the PIC has been acknowledged).
  void ClearExtInt();

  // Inspection for tests.
  bool IrrBit(uint8_t vector) const;
  bool IsrBit(uint8_t vector) const;
  bool TmrBit(uint8_t vector) const;
  uint32_t ReadRegister(uint32_t reg);

  // Snapshot (record body, see device_state.h): every register, the timer as time elapsed and
  // time remaining. LoadState re-arms the timer relative to the clock now and wakes the vCPU.
  void SaveState(StateWriter& out) const;
  void LoadState(StateReader& in);
  // LoadState in two steps: reads and checks everything (throwing StateError, changing
  // nothing), then returns what applies it.
  StateApply ParseState(StateReader& in);

 private:
  enum Lvt : unsigned { kLvtTimer, kLvtThermal, kLvtPerf, kLvtLint0, kLvtLint1, kLvtError };
  static constexpr unsigned kLvtCount = 6;

  struct Actions {  // what to do once the lock is released
    bool wake = false;
    int eoi_vector = -1;
    bool send = false;
    ApicMessage message;
  };
  void Run(const Actions& actions);

  void ResetRegisters();  // needs mu_
  uint32_t ReadRegLocked(uint32_t reg, bool x2apic) const;
  // Returns false for a write that x2APIC would #GP on.
  bool WriteRegLocked(uint32_t reg, uint64_t value, bool x2apic, Actions& actions);
  void SetIrrLocked(uint8_t vector, bool level, Actions& actions);
  void SetErrorLocked(uint32_t bits, Actions& actions);
  void EoiLocked(Actions& actions);
  void SendIcrLocked(uint64_t icr, bool x2apic, Actions& actions);
  int HighestIrr() const;
  int HighestIsr() const;
  uint8_t PprLocked() const;
  bool HasInterruptLocked() const;
  uint32_t LdrLocked() const;

  // Timer.
  unsigned DivideShift() const;
  uint32_t timer_mode() const { return lvt_[kLvtTimer] & (3u << 17); }
  uint64_t PeriodNs() const;
  uint32_t CurrentCountLocked(uint64_t now) const;
  void StartTimerLocked(uint64_t now);
  void StopTimerLocked();
  void OnTimer(uint64_t now);
  void FireTimerLocked(Actions& actions);

  const unsigned cpu_;
  const LocalApicConfig config_;
  LocalApicHost& host_;
  TimerQueue& timers_;
  TimerQueue::TimerId timer_id_;

  mutable std::mutex mu_;
  std::atomic<uint64_t> apic_base_;  // written under mu_, read lock-free by ClaimsMmio
  uint32_t id_;
  uint32_t tpr_ = 0;
  uint32_t ldr_ = 0;
  uint32_t dfr_ = 0xFFFFFFFF;
  uint32_t svr_ = 0xFF;
  uint32_t irr_[8] = {};
  uint32_t isr_[8] = {};
  uint32_t tmr_[8] = {};
  uint32_t esr_ = 0;
  uint32_t esr_pending_ = 0;
  uint32_t icr_low_ = 0;
  uint32_t icr_high_ = 0;
  uint32_t lvt_[kLvtCount] = {};
  uint32_t timer_initial_ = 0;
  uint32_t timer_divide_ = 0;
  uint64_t timer_start_ns_ = 0;
  uint64_t timer_next_ns_ = 0;
  bool timer_running_ = false;  // one-shot/periodic counting, or TSC deadline armed
  uint64_t tsc_deadline_ = 0;
  bool nmi_pending_ = false;
  bool extint_pending_ = false;
};

}  // namespace rove
