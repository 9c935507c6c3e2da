// QEMU's isa-debug-exit device (as configured with iobase=0xf4, iosize=4): a write of value V
// (of the access's width) ends the run with exit status (V << 1) | 1, so a bare-metal test
// kernel can report success or failure. The status is recorded and passed to the callback
// (called without the device's lock, from the writing vCPU thread); the process exit status the
// host sees is that value truncated to 8 bits, as with QEMU. Reads return all ones.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>

#include "rove/devices/bus.h"
#include "rove/devices/device_state.h"

namespace rove {

class DebugExit final : public BusDevice {
 public:
  static constexpr uint64_t kSize = 4;

  explicit DebugExit(std::function<void(int status)> on_exit);

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

  // The status of the first write, if any.
  std::optional<int> status() const;

  // Snapshot (record body, see device_state.h).
  void SaveState(StateWriter& out) const;
  void LoadState(StateReader& in);
  // LoadState in two steps: reads and checks everything (throwing StateError, changing
  // nothing), then returns what applies it.
  StateApply ParseState(StateReader& in);

 private:
  std::function<void(int)> on_exit_;
  mutable std::mutex mu_;
  std::optional<int> status_;
};

}  // namespace rove
