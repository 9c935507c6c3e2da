// Interrupt lines: how devices raise and lower IRQs.
//
// A device holds an IrqLine (a small value handle) and calls Set/Raise/Lower/Pulse on it. The
// line belongs to an IrqRouter, which ORs every source of a line (several devices may share
// one, as PCI INTx lines do) and forwards each change of the combined level to the interrupt
// controllers: ISA IRQ 0-15 to the i8259 pair, and the matching global system interrupt (GSI)
// to the I/O APIC. As on the QEMU/SeaBIOS PC, ISA IRQ0 (the PIT) is wired to I/O APIC pin 2 —
// the ACPI MADT must carry the matching interrupt source override — and every other ISA IRQ n
// to pin n. Lines 16-23 exist on the I/O APIC only.
//
// Levels are logical (true = asserted); polarity is the interrupt controllers' business.
// Edge-triggered devices produce an edge with Pulse() (assert then deassert), or by following
// their output pin with Set().
//
// Locking: the router has one lock and forwards with it held, so calls into the interrupt
// controllers are serialised and arrive in order. Devices call the line with their own lock
// held (device lock -> router -> PIC / I/O APIC -> local APIC -> wake callback).
#pragma once

#include <array>
#include <cstdint>
#include <mutex>

#include "rove/devices/device_state.h"

namespace rove {

// Receives the level of interrupt input `line`. Implemented by the PIC pair and the I/O APIC.
class IrqSink {
 public:
  virtual ~IrqSink() = default;
  virtual void SetIrq(unsigned line, bool level) = 0;
};

class IrqRouter;

class IrqLine {
 public:
  IrqLine() = default;  // not connected: every call does nothing
  void Set(bool level) const;
  void Raise() const { Set(true); }
  void Lower() const { Set(false); }
  // A rising edge that leaves the line deasserted.
  void Pulse() const {
    Set(true);
    Set(false);
  }
  bool connected() const { return router_ != nullptr; }
  unsigned number() const { return line_; }

 private:
  friend class IrqRouter;
  IrqLine(IrqRouter* router, unsigned line, unsigned source)
      : router_(router), line_(line), source_(source) {}
  IrqRouter* router_ = nullptr;
  unsigned line_ = 0;
  unsigned source_ = 0;
};

class IrqRouter {
 public:
  static constexpr unsigned kIsaIrqs = 16;
  static constexpr unsigned kLines = 24;
  static constexpr unsigned kMaxSourcesPerLine = 32;

  // Either sink may be null (e.g. a machine without an I/O APIC, or a test).
  IrqRouter(IrqSink* pic, IrqSink* ioapic) : pic_(pic), ioapic_(ioapic) {}
  IrqRouter(const IrqRouter&) = delete;
  IrqRouter& operator=(const IrqRouter&) = delete;

  // A new source on `line` (0-23). Throws std::out_of_range for a bad line or when the line
  // already has kMaxSourcesPerLine sources.
  IrqLine Line(unsigned line);

  // The I/O APIC pin an ISA IRQ is wired to (IRQ0 -> 2, otherwise identity).
  static constexpr unsigned GsiForIsaIrq(unsigned irq) { return irq == 0 ? 2 : irq; }

  // Current combined level of `line`.
  bool level(unsigned line) const;

  // Snapshot: which sources assert each line. LoadState sets them without forwarding anything
  // (the interrupt controllers restore their own input levels).
  void SaveState(StateWriter& out) const;
  void LoadState(StateReader& in);
  // LoadState in two steps: reads and checks everything (throwing StateError, changing
  // nothing), then returns what applies it.
  StateApply ParseState(StateReader& in);

 private:
  friend class IrqLine;
  void Set(unsigned line, unsigned source, bool level);

  IrqSink* pic_;
  IrqSink* ioapic_;
  mutable std::mutex mu_;
  std::array<uint32_t, kLines> asserted_{};  // bit per source
  std::array<unsigned, kLines> sources_{};   // sources allocated
};

inline void IrqLine::Set(bool level) const {
  if (router_) router_->Set(line_, source_, level);
}

}  // namespace rove
