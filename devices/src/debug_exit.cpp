#include "rove/devices/debug_exit.h"

#include <cstring>

namespace rove {

DebugExit::DebugExit(std::function<void(int)> on_exit) : on_exit_(std::move(on_exit)) {}

void DebugExit::Read(uint64_t, std::span<uint8_t> data) {
  std::memset(data.data(), 0xFF, data.size());
}

void DebugExit::Write(uint64_t, std::span<const uint8_t> data) {
  const int status = int((uint32_t(LoadLe(data)) << 1) | 1);
  {
    std::lock_guard lock(mu_);
    if (!status_) status_ = status;
  }
  if (on_exit_) on_exit_(status);
}

std::optional<int> DebugExit::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

// --- Snapshot. ---

void DebugExit::SaveState(StateWriter& out) const {
  std::lock_guard lock(mu_);
  out.Bool(status_.has_value());
  out.U32(uint32_t(status_.value_or(0)));
}

StateApply DebugExit::ParseState(StateReader& in) {
  const bool has = in.Bool("status written");
  const uint32_t status = in.U32("status");
  if (!has && status) in.Fail("status without the flag");
  if (has && !(status & 1)) in.Fail("status does not have bit 0 set");
  return [=, this]() mutable {
    std::lock_guard lock(mu_);
    status_ = has ? std::optional<int>(int(status)) : std::nullopt;
  };
}

void DebugExit::LoadState(StateReader& in) {
  ParseState(in)();
}

}  // namespace rove
