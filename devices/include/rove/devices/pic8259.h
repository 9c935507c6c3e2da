// The i8259A programmable interrupt controller pair of a PC: master at 0x20/0x21 (IRQ 0-7),
// slave at 0xA0/0xA1 (IRQ 8-15) cascaded into master IRQ2, and the edge/level control
// registers (ELCR) at 0x4D0/0x4D1.
//
// Supported: ICW1-ICW4 (single/cascade, LTIM, auto-EOI, special fully nested), OCW1 (mask),
// OCW2 (specific/non-specific EOI, rotation, set priority), OCW3 (IRR/ISR read select, poll,
// special mask mode), edge and level triggering per ELCR, spurious IRQ7/IRQ15.
//
// The master's INTR output is read by the local APIC side (ExtINT through LINT0 in "virtual
// wire" mode): InterruptOutput() tells whether INTR is asserted and Acknowledge() performs the
// INTA cycle and returns the vector. The output listener is called whenever INTR changes, with
// the PIC's lock held; it must not call back into the PIC.
//
// Windows (register each with a BusWindow on the PIO bus): kMasterWindow (2 ports),
// kSlaveWindow (2 ports), kElcrWindow (2 ports).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>

#include "rove/devices/bus.h"
#include "rove/devices/device_state.h"
#include "rove/devices/irq.h"

namespace rove {

class Pic8259 final : public MultiWindowDevice, public IrqSink {
 public:
  enum Window : unsigned { kMasterWindow = 0, kSlaveWindow = 1, kElcrWindow = 2 };
  static constexpr unsigned kCascadeIrq = 2;

  Pic8259();

  // IrqSink: input `irq` (0-15) level. IRQ2 is the cascade and cannot be driven from outside.
  void SetIrq(unsigned irq, bool level) override;

  // MultiWindowDevice: port accesses; wider accesses are split into bytes.
  void Read(unsigned window, uint64_t offset, std::span<uint8_t> data) override;
  void Write(unsigned window, uint64_t offset, std::span<const uint8_t> data) override;

  // True if the master's INTR output is asserted.
  bool InterruptOutput() const;
  // INTA cycle: returns the vector of the highest-priority pending request and moves it to
  // in-service (unless auto-EOI). With nothing pending returns the spurious vector (IRQ7 of
  // the master, or IRQ15 if the slave lost its request) without setting ISR.
  uint8_t Acknowledge();

  void SetOutputListener(std::function<void(bool intr)> listener);

  // Snapshot of both chips and the ELCR (record body, see device_state.h). LoadState
  // recomputes INTR and tells the output listener if it changed.
  void SaveState(StateWriter& out) const;
  void LoadState(StateReader& in);
  // LoadState in two steps: reads and checks everything (throwing StateError, changing
  // nothing), then returns what applies it.
  StateApply ParseState(StateReader& in);

  // Inspection for tests and debugging.
  uint8_t irr(bool slave) const;
  uint8_t isr(bool slave) const;
  uint8_t imr(bool slave) const;

 private:
  struct Chip {
    uint8_t irr = 0;        // interrupt request register
    uint8_t isr = 0;        // in-service register
    uint8_t imr = 0;        // interrupt mask register
    uint8_t levels = 0;     // current input line levels
    uint8_t elcr = 0;       // 1 = level-triggered
    uint8_t elcr_mask = 0;  // writable ELCR bits
    uint8_t lowest = 7;     // IRQ with the lowest priority (rotation)
    uint8_t vector_base = 0;
    uint8_t init_step = 0;  // 0 = ready; 2, 3, 4 = expecting ICW2, ICW3, ICW4
    bool icw4_needed = false;
    bool single = false;
    bool ltim = false;  // ICW1 level-triggered mode for all inputs
    bool auto_eoi = false;
    bool rotate_on_aeoi = false;
    bool special_fully_nested = false;
    bool special_mask = false;
    bool read_isr = false;  // OCW3 RR/RIS
    bool poll = false;

    bool IsLevel(unsigned irq) const { return ltim || ((elcr >> irq) & 1); }
    // Priority rank of `irq`: 0 is the highest.
    unsigned Rank(unsigned irq) const { return (irq + 7 - lowest) & 7; }
    // The IRQ in `mask` with the highest priority, or -1.
    int Highest(uint8_t mask) const;
    // The IRQ this chip would signal now, or -1.
    int Pending(bool is_master) const;
    void SetInput(unsigned irq, bool level);
    void Ack(unsigned irq);
    void Eoi(unsigned irq, bool rotate);
    void Init(uint8_t icw1);
  };

  uint8_t ReadPort(unsigned window, unsigned port);
  void WritePort(unsigned window, unsigned port, uint8_t value);
  uint8_t Poll(bool slave);
  // Propagates the slave's output to master IRQ2 and the master's output to the listener.
  void Update();

  mutable std::mutex mu_;
  Chip chips_[2];  // [0] master, [1] slave
  bool output_ = false;
  std::function<void(bool)> listener_;
};

}  // namespace rove
