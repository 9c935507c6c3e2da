// The I/O APIC (82093AA-compatible, version 0x20 with the EOI register) at 0xFEC00000:
// IOREGSEL at offset 0x00, IOWIN at 0x10, EOI at 0x40; ID, version, arbitration and 24
// redirection entries (vector, delivery mode, destination mode, polarity, remote IRR,
// trigger mode, mask, destination).
//
// Inputs come from the IrqRouter as logical levels (asserted = true); the polarity bit is
// stored but not applied, because the router already delivers assertion, not pin voltage.
// Edge-triggered pins deliver on each assertion; an assertion while masked is remembered and
// delivered on unmask. Level-triggered pins deliver while asserted and the remote IRR is clear,
// set remote IRR, and are re-delivered after the EOI (local APIC EOI broadcast through
// ApicBus::SetEoiListener -> Eoi(), or a write of the vector to the EOI register) if still
// asserted.
//
// Thread-safe; it calls the ApicMessageSink with its lock held (I/O APIC -> local APIC order).
#pragma once

#include <cstdint>
#include <mutex>

#include "rove/devices/apic_message.h"
#include "rove/devices/bus.h"
#include "rove/devices/device_state.h"
#include "rove/devices/irq.h"

namespace rove {

class IoApic final : public BusDevice, public IrqSink {
 public:
  static constexpr uint64_t kDefaultBase = 0xFEC00000;
  static constexpr uint64_t kMmioSize = 0x1000;
  static constexpr unsigned kPins = 24;
  static constexpr uint32_t kVersion = 0x20 | ((kPins - 1) << 16);

  explicit IoApic(ApicMessageSink& sink, uint8_t id = 0);

  // BusDevice (MMIO window of kMmioSize).
  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

  // IrqSink: pin level.
  void SetIrq(unsigned pin, bool level) override;

  // EOI broadcast from a local APIC for `vector`.
  void Eoi(uint8_t vector);

  // Inspection for tests and debugging.
  uint64_t redirection(unsigned pin) const;

  // Snapshot (record body, see device_state.h). LoadState delivers nothing:
  // what was pending at save time is pending again.
  void SaveState(StateWriter& out) const;
  void LoadState(StateReader& in);
  // LoadState in two steps: reads and checks everything (throwing StateError, changing
  // nothing), then returns what applies it.
  StateApply ParseState(StateReader& in);

 private:
  static constexpr uint64_t kMasked = 1ull << 16;
  static constexpr uint64_t kLevel = 1ull << 15;
  static constexpr uint64_t kRemoteIrr = 1ull << 14;
  static constexpr uint64_t kDeliveryStatus = 1ull << 12;

  uint32_t ReadIndirect(uint8_t index) const;
  void WriteIndirect(uint8_t index, uint32_t value);
  void ServiceLocked(unsigned pin);
  void EoiLocked(uint8_t vector);

  ApicMessageSink& sink_;
  mutable std::mutex mu_;
  uint8_t id_;
  uint8_t select_ = 0;
  uint64_t redir_[kPins];
  uint32_t levels_ = 0;        // asserted inputs
  uint32_t edge_pending_ = 0;  // edges seen while masked
};

}  // namespace rove
