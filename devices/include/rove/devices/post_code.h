// Port 0x80, the POST diagnostic port. Guests write progress codes there and Linux uses it for
// I/O delays (outb_p); writes are accepted and the last value is kept for debugging. Reads
// return the last value written.
#pragma once

#include <atomic>
#include <cstdint>

#include "rove/devices/bus.h"
#include "rove/devices/device_state.h"

namespace rove {

class PostCode final : public BusDevice {
 public:
  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

  uint8_t last() const { return last_.load(std::memory_order_relaxed); }
  uint64_t writes() const { return writes_.load(std::memory_order_relaxed); }

  // Snapshot (record body, see device_state.h).
  void SaveState(StateWriter& out) const;
  void LoadState(StateReader& in);
  // LoadState in two steps: reads and checks everything (throwing StateError, changing
  // nothing), then returns what applies it.
  StateApply ParseState(StateReader& in);

 private:
  std::atomic<uint8_t> last_{0};
  std::atomic<uint64_t> writes_{0};
};

}  // namespace rove
