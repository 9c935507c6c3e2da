// ACPI fixed-hardware power-management registers, one 16-port I/O block (default base 0x600,
// as on QEMU's PIIX4 "pc" machine):
//
//   +0x0  PM1a_EVT_BLK: PM1_STS (2 bytes, write 1 to clear), PM1_EN (2 bytes)
//   +0x4  PM1a_CNT_BLK: PM1_CNT (2 bytes): SCI_EN (always 1), SLP_TYP (bits 10-12), SLP_EN (13)
//   +0x8  PM_TMR_BLK:   PM timer, 24 bits at 3.579545 MHz (4 bytes, read-only)
//   +0xC  GPE0_BLK:     GPE0_STS (2 bytes, write 1 to clear), GPE0_EN (2 bytes)
//
// Writing PM1_CNT with SLP_EN set and SLP_TYP = kSlpTypS5 calls the power-off callback (the
// DSDT's \_S5 package must carry that value). Other sleep types are ignored. The SCI (IRQ9,
// level) is asserted while any enabled status bit is set: power button (PressPowerButton, for
// a graceful host-requested shutdown), PM timer overflow status and GPE0 bits. The timer
// overflow status is computed when read; it does not raise an interrupt by itself.
//
// The FADT's reset register is the PCI reset control register at 0xCF9 (see pci.h).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>

#include "rove/devices/bus.h"
#include "rove/devices/clock.h"
#include "rove/devices/device_state.h"
#include "rove/devices/irq.h"

namespace rove {

class AcpiPm final : public BusDevice {
 public:
  static constexpr uint64_t kSize = 0x10;
  static constexpr uint64_t kPm1EvtOffset = 0x0;
  static constexpr uint64_t kPm1CntOffset = 0x4;
  static constexpr uint64_t kPmTmrOffset = 0x8;
  static constexpr uint64_t kGpe0Offset = 0xC;
  static constexpr uint64_t kGpe0Length = 4;
  static constexpr uint64_t kTimerHz = 3'579'545;
  static constexpr uint16_t kSlpTypS5 = 5;

  // PM1 bits.
  static constexpr uint16_t kTmrSts = 1u << 0;
  static constexpr uint16_t kPwrbtnSts = 1u << 8;
  static constexpr uint16_t kWakSts = 1u << 15;
  static constexpr uint16_t kSciEn = 1u << 0;
  static constexpr uint16_t kSlpEn = 1u << 13;

  AcpiPm(const Clock& clock, IrqLine sci, std::function<void()> power_off);

  void PressPowerButton();
  // Sets a GPE0 status bit (for future hot-plug style events).
  void SetGpe(unsigned bit);

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

  // Snapshot (record body, see device_state.h). The PM timer continues from
  // the value it had at save time; LoadState drives the SCI to match.
  void SaveState(StateWriter& out) const;
  void LoadState(StateReader& in);
  // LoadState in two steps: reads and checks everything (throwing StateError, changing
  // nothing), then returns what applies it.
  StateApply ParseState(StateReader& in);

 private:
  uint32_t TimerLocked() const;
  uint8_t ReadByteLocked(unsigned offset);
  void UpdateSciLocked();

  const Clock& clock_;
  IrqLine sci_;
  std::function<void()> power_off_;
  mutable std::mutex mu_;
  uint64_t epoch_ns_;  // when the PM timer read 0 (may wrap after a snapshot load)
  uint16_t pm1_sts_ = 0;
  uint16_t pm1_en_ = 0;
  uint16_t pm1_cnt_ = kSciEn;
  uint16_t gpe0_sts_ = 0;
  uint16_t gpe0_en_ = 0;
  uint32_t last_timer_msb_ = 0;
};

}  // namespace rove
