// The guest's time-stamp counter. It advances at a stated frequency from the host's
// CLOCK_MONOTONIC (so it is invariant: it neither stops in HLT nor changes with host frequency
// scaling). The guest's view adds IA32_TSC's offset (MsrState::tsc_offset): writing IA32_TSC
// changes the offset, not the clock.
#pragma once

#include <cstdint>

#include "rove/translator/cpu_state.h"

namespace rove {

class GuestClock {
 public:
  // `tsc_hz` is the guest TSC frequency. The clock reads 0 at construction.
  explicit GuestClock(uint64_t tsc_hz);
  virtual ~GuestClock() = default;

  uint64_t tsc_hz() const { return tsc_hz_; }
  // Nanoseconds since construction.
  uint64_t ElapsedNs() const { return NowNs() - start_ns_; }
  // The TSC before the guest's offset: ElapsedNs() scaled to tsc_hz.
  uint64_t BaseTsc() const;
  // The value RDTSC returns in `state`.
  uint64_t ReadTsc(const CpuState& state) const { return BaseTsc() + state.msr.tsc_offset; }
  // WRMSR IA32_TSC: later reads continue from `value`.
  void WriteTsc(CpuState& state, uint64_t value) const { state.msr.tsc_offset = value - BaseTsc(); }
  // Host nanoseconds until the guest TSC reaches `tsc` (0 if it already has): for timers such
  // as the TSC-deadline timer.
  uint64_t NsUntilTsc(const CpuState& state, uint64_t tsc) const;

 protected:
  // Host time in nanoseconds (CLOCK_MONOTONIC); tests override it.
  virtual uint64_t NowNs() const;
  // Call from a derived constructor that overrides NowNs().
  void Restart() { start_ns_ = NowNs(); }

 private:
  uint64_t tsc_hz_;
  uint64_t start_ns_ = 0;
};

}  // namespace rove
