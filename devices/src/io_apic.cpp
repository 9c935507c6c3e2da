#include "rove/devices/io_apic.h"

#include <algorithm>

namespace rove {

namespace {
constexpr uint64_t kOffsetSelect = 0x00;
constexpr uint64_t kOffsetWindow = 0x10;
constexpr uint64_t kOffsetEoi = 0x40;
// Writable bits of a redirection entry: vector, delivery mode, destination mode, polarity,
// trigger mode, mask (low half) and destination (high byte).
constexpr uint64_t kRedirWritable = 0xFF000000'0001AFFFull;
}  // namespace

IoApic::IoApic(ApicMessageSink& sink, uint8_t id) : sink_(sink), id_(id & 0xF) {
  std::fill(std::begin(redir_), std::end(redir_), kMasked);
}

uint64_t IoApic::redirection(unsigned pin) const {
  std::lock_guard lock(mu_);
  return pin < kPins ? redir_[pin] : 0;
}

uint32_t IoApic::ReadIndirect(uint8_t index) const {
  switch (index) {
    case 0x00:
      return uint32_t(id_) << 24;
    case 0x01:
      return kVersion;
    case 0x02:
      return uint32_t(id_) << 24;  // arbitration ID
    default:
      break;
  }
  if (index >= 0x10 && index < 0x10 + 2 * kPins) {
    const uint64_t entry = redir_[(index - 0x10) / 2];
    return (index & 1) ? uint32_t(entry >> 32) : uint32_t(entry);
  }
  return 0;
}

void IoApic::WriteIndirect(uint8_t index, uint32_t value) {
  if (index == 0x00) {
    id_ = (value >> 24) & 0xF;
    return;
  }
  if (index < 0x10 || index >= 0x10 + 2 * kPins) return;
  const unsigned pin = (index - 0x10) / 2;
  uint64_t& entry = redir_[pin];
  const uint64_t old = entry;
  uint64_t updated = (index & 1) ? ((old & 0xFFFFFFFFull) | (uint64_t(value) << 32))
                                 : ((old & ~0xFFFFFFFFull) | value);
  updated = (updated & kRedirWritable) | (old & kRemoteIrr);
  if (!(updated & kLevel)) updated &= ~kRemoteIrr;  // edge mode has no remote IRR
  entry = updated;
  ServiceLocked(pin);
}

void IoApic::ServiceLocked(unsigned pin) {
  uint64_t& entry = redir_[pin];
  if (entry & kMasked) return;
  const uint32_t bit = 1u << pin;
  const bool level = entry & kLevel;
  if (level) {
    if (!(levels_ & bit) || (entry & kRemoteIrr)) return;
  } else {
    if (!(edge_pending_ & bit)) return;
    edge_pending_ &= ~bit;
  }
  ApicMessage m;
  m.vector = uint8_t(entry);
  m.mode = DeliveryMode((entry >> 8) & 7);
  m.logical = (entry >> 11) & 1;
  m.level_triggered = level;
  m.destination = uint32_t(entry >> 56);
  // Remote IRR tracks fixed/lowest-priority level interrupts until the EOI.
  if (level && (m.mode == DeliveryMode::kFixed || m.mode == DeliveryMode::kLowestPriority)) {
    entry |= kRemoteIrr;
  }
  sink_.Deliver(m, -1);
}

void IoApic::SetIrq(unsigned pin, bool level) {
  if (pin >= kPins) return;
  std::lock_guard lock(mu_);
  const uint32_t bit = 1u << pin;
  const bool was = levels_ & bit;
  levels_ = level ? (levels_ | bit) : (levels_ & ~bit);
  if (level && !was) edge_pending_ |= bit;
  if (!level) {
    // A deasserted level input has nothing to deliver; drop a stale edge only for level pins.
    if (redir_[pin] & kLevel) edge_pending_ &= ~bit;
    return;
  }
  ServiceLocked(pin);
}

void IoApic::EoiLocked(uint8_t vector) {
  for (unsigned pin = 0; pin < kPins; ++pin) {
    uint64_t& entry = redir_[pin];
    if (uint8_t(entry) != vector || !(entry & kRemoteIrr)) continue;
    entry &= ~kRemoteIrr;
    ServiceLocked(pin);
  }
}

void IoApic::Eoi(uint8_t vector) {
  std::lock_guard lock(mu_);
  EoiLocked(vector);
}

void IoApic::Read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  uint32_t value = 0;
  if (offset >= kOffsetSelect && offset < kOffsetSelect + 4) {
    value = select_ >> (8 * (offset - kOffsetSelect));
  } else if (offset >= kOffsetWindow && offset < kOffsetWindow + 4) {
    value = ReadIndirect(select_) >> (8 * (offset - kOffsetWindow));
  }
  StoreLe(data, value);
}

void IoApic::Write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  const uint32_t value = uint32_t(LoadLe(data));
  if (offset == kOffsetSelect) {
    select_ = uint8_t(value);
  } else if (offset == kOffsetWindow && data.size() >= 4) {
    WriteIndirect(select_, value);
  } else if (offset == kOffsetEoi) {
    EoiLocked(uint8_t(value));
  }
}

// --- Snapshot. ---

void IoApic::SaveState(StateWriter& out) const {
  std::lock_guard lock(mu_);
  out.U8(id_);
  out.U8(select_);
  for (uint64_t entry : redir_) out.U64(entry);
  out.U32(levels_);
  out.U32(edge_pending_);
}

StateApply IoApic::ParseState(StateReader& in) {
  const uint8_t id = in.U8Max(0xF, "id");
  const uint8_t select = in.U8("ioregsel");
  uint64_t redir[kPins];
  for (uint64_t& entry : redir) {
    entry = in.U64("redirection entry");
    if (entry & ~(kRedirWritable | kRemoteIrr)) in.Fail("redirection entry sets reserved bits");
    if ((entry & kRemoteIrr) && !(entry & kLevel)) in.Fail("remote IRR on an edge-triggered pin");
  }
  constexpr uint32_t kPinMask = (1u << kPins) - 1;
  const uint32_t levels = in.U32Max(kPinMask, "input levels");
  const uint32_t edge_pending = in.U32Max(kPinMask, "pending edges");
  return [=, this]() mutable {
    std::lock_guard lock(mu_);
    id_ = id;
    select_ = select;
    std::copy(std::begin(redir), std::end(redir), redir_);
    levels_ = levels;
    edge_pending_ = edge_pending;
  };
}

void IoApic::LoadState(StateReader& in) {
  ParseState(in)();
}

}  // namespace rove
