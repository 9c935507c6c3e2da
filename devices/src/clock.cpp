#include "rove/devices/clock.h"

#include <chrono>

namespace rove {

uint64_t HostClock::NowNs() const {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
}

int64_t HostClock::WallNs() const {
  return int64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count());
}

}  // namespace rove
