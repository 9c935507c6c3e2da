#include "rove/devices/post_code.h"

namespace rove {

void PostCode::Read(uint64_t, std::span<uint8_t> data) {
  for (uint8_t& b : data) b = last();
}

void PostCode::Write(uint64_t, std::span<const uint8_t> data) {
  if (!data.empty()) last_.store(data[0], std::memory_order_relaxed);
  writes_.fetch_add(1, std::memory_order_relaxed);
}

// --- Snapshot. ---

void PostCode::SaveState(StateWriter& out) const {
  out.U8(last());
  out.U64(writes());
}

StateApply PostCode::ParseState(StateReader& in) {
  const uint8_t last = in.U8("last value");
  const uint64_t writes = in.U64("write count");
  return [=, this]() mutable {
    last_.store(last, std::memory_order_relaxed);
    writes_.store(writes, std::memory_order_relaxed);
  };
}

void PostCode::LoadState(StateReader& in) {
  ParseState(in)();
}

}  // namespace rove
