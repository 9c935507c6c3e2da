// Time sources for the devices. Every device that keeps time (PIT, RTC, local APIC timer, ACPI
// PM timer) reads it from a Clock it is given, never from a global, so a machine can run on the
// host clocks and a test can run on a ManualClock and step time deterministically.
#pragma once

#include <atomic>
#include <cstdint>

namespace rove {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time in nanoseconds (arbitrary epoch); never goes backwards.
  virtual uint64_t NowNs() const = 0;
  // Wall-clock time in nanoseconds since the Unix epoch (UTC); used for the RTC's time of day.
  virtual int64_t WallNs() const = 0;
};

// The host's CLOCK_MONOTONIC and CLOCK_REALTIME.
class HostClock final : public Clock {
 public:
  uint64_t NowNs() const override;
  int64_t WallNs() const override;
};

// A clock that only moves when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(uint64_t now_ns = 1'000'000'000, int64_t wall_ns = 1'700'000'000'000'000'000)
      : now_(now_ns), wall_offset_(wall_ns - int64_t(now_ns)) {}
  uint64_t NowNs() const override { return now_.load(std::memory_order_acquire); }
  int64_t WallNs() const override { return int64_t(NowNs()) + wall_offset_; }
  void Advance(uint64_t ns) { now_.fetch_add(ns, std::memory_order_acq_rel); }
  void Set(uint64_t now_ns) { now_.store(now_ns, std::memory_order_release); }

 private:
  std::atomic<uint64_t> now_;
  const int64_t wall_offset_;
};

// Converts between a count of ticks at `hz` and nanoseconds without overflow (128-bit math).
// TicksToNs rounds up so that a timer armed for N ticks never fires early.
inline uint64_t NsToTicks(uint64_t ns, uint64_t hz) {
  return uint64_t((unsigned __int128)ns * hz / 1'000'000'000u);
}
inline uint64_t TicksToNs(uint64_t ticks, uint64_t hz) {
  return uint64_t(((unsigned __int128)ticks * 1'000'000'000u + hz - 1) / hz);
}

// Time from `since` to `now`, 0 if `since` is later (a reading taken just before a concurrent
// re-arm). The difference is taken modulo 2^64, so a start time re-based by a snapshot load to
// before the clock's epoch (now - elapsed wrapping around) still gives the right elapsed time.
inline uint64_t ElapsedNs(uint64_t now, uint64_t since) {
  const uint64_t d = now - since;
  return int64_t(d) > 0 ? d : 0;
}

}  // namespace rove
