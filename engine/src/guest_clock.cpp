#include "rove/engine/guest_clock.h"

#include <time.h>

namespace rove {

GuestClock::GuestClock(uint64_t tsc_hz) : tsc_hz_(tsc_hz ? tsc_hz : 1) {
  start_ns_ = GuestClock::NowNs();
}

uint64_t GuestClock::NowNs() const {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t GuestClock::BaseTsc() const {
  unsigned __int128 t = static_cast<unsigned __int128>(ElapsedNs()) * tsc_hz_;
  return static_cast<uint64_t>(t / 1000000000u);
}

uint64_t GuestClock::NsUntilTsc(const CpuState& state, uint64_t tsc) const {
  uint64_t now = ReadTsc(state);
  if (static_cast<int64_t>(tsc - now) <= 0) return 0;
  unsigned __int128 ns = static_cast<unsigned __int128>(tsc - now) * 1000000000u;
  return static_cast<uint64_t>((ns + tsc_hz_ - 1) / tsc_hz_);
}

}  // namespace rove
