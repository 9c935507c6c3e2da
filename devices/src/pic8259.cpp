#include "rove/devices/pic8259.h"

namespace rove {

namespace {
constexpr uint8_t kMasterCascadeMask = 1u << Pic8259::kCascadeIrq;
}

Pic8259::Pic8259() {
  // IRQ 0, 1, 2 (master) and 8, 13 (slave) are always edge-triggered on a PC.
  chips_[0].elcr_mask = 0xF8;
  chips_[1].elcr_mask = 0xDE;
}

int Pic8259::Chip::Highest(uint8_t mask) const {
  for (unsigned rank = 0; rank < 8; ++rank) {
    const unsigned irq = (lowest + 1 + rank) & 7;
    if (mask & (1u << irq)) return int(irq);
  }
  return -1;
}

int Pic8259::Chip::Pending(bool is_master) const {
  const int irq = Highest(irr & ~imr);
  if (irq < 0) return -1;
  uint8_t in_service = isr;
  if (special_mask) in_service &= ~imr;
  // Special fully nested: a slave request in service does not block the slave's further,
  // higher-priority requests (the slave arbitrates those itself).
  if (is_master && special_fully_nested) in_service &= ~kMasterCascadeMask;
  const int current = Highest(in_service);
  if (current >= 0 && Rank(unsigned(irq)) >= Rank(unsigned(current))) return -1;
  return irq;
}

void Pic8259::Chip::SetInput(unsigned irq, bool level) {
  const uint8_t mask = uint8_t(1u << irq);
  if (IsLevel(irq)) {
    irr = level ? (irr | mask) : (irr & ~mask);
  } else if (level && !(levels & mask)) {
    irr |= mask;  // rising edge; the request stays latched until acknowledged
  }
  levels = level ? (levels | mask) : (levels & ~mask);
}

void Pic8259::Chip::Ack(unsigned irq) {
  const uint8_t mask = uint8_t(1u << irq);
  if (auto_eoi) {
    if (rotate_on_aeoi) lowest = uint8_t(irq);
  } else {
    isr |= mask;
  }
  if (!IsLevel(irq)) irr &= ~mask;
}

void Pic8259::Chip::Eoi(unsigned irq, bool rotate) {
  isr &= ~(1u << irq);
  if (rotate) lowest = uint8_t(irq);
}

void Pic8259::Chip::Init(uint8_t icw1) {
  init_step = 2;
  icw4_needed = icw1 & 0x01;
  single = icw1 & 0x02;
  ltim = icw1 & 0x08;
  imr = 0;
  isr = 0;
  // The edge detectors are reset: an edge-triggered input must go low-to-high again. Inputs in
  // level mode keep requesting while asserted.
  uint8_t level_mask = 0;
  for (unsigned i = 0; i < 8; ++i) level_mask |= IsLevel(i) ? (1u << i) : 0;
  irr = levels & level_mask;
  lowest = 7;
  auto_eoi = false;
  rotate_on_aeoi = false;
  special_fully_nested = false;
  special_mask = false;
  read_isr = false;
  poll = false;
}

void Pic8259::SetIrq(unsigned irq, bool level) {
  if (irq >= 16 || irq == kCascadeIrq) return;
  std::lock_guard lock(mu_);
  chips_[irq >> 3].SetInput(irq & 7, level);
  Update();
}

void Pic8259::Update() {
  Chip& master = chips_[0];
  Chip& slave = chips_[1];
  // The cascade input follows the slave's INT output as a level, so a slave request that stays
  // pending across an acknowledge is never lost.
  const bool slave_out = slave.Pending(false) >= 0;
  master.irr = slave_out ? (master.irr | kMasterCascadeMask) : (master.irr & ~kMasterCascadeMask);
  master.levels =
      slave_out ? (master.levels | kMasterCascadeMask) : (master.levels & ~kMasterCascadeMask);
  const bool out = master.Pending(true) >= 0;
  if (out != output_) {
    output_ = out;
    if (listener_) listener_(out);
  }
}

bool Pic8259::InterruptOutput() const {
  std::lock_guard lock(mu_);
  return output_;
}

uint8_t Pic8259::Acknowledge() {
  std::lock_guard lock(mu_);
  Chip& master = chips_[0];
  Chip& slave = chips_[1];
  uint8_t vector;
  const int irq = master.Pending(true);
  if (irq < 0) {
    vector = uint8_t(master.vector_base + 7);  // spurious
  } else {
    master.Ack(unsigned(irq));
    if (unsigned(irq) == kCascadeIrq && !master.single) {
      const int irq2 = slave.Pending(false);
      if (irq2 < 0) {
        vector = uint8_t(slave.vector_base + 7);  // spurious on the slave
      } else {
        slave.Ack(unsigned(irq2));
        vector = uint8_t(slave.vector_base + irq2);
      }
    } else {
      vector = uint8_t(master.vector_base + irq);
    }
  }
  Update();
  return vector;
}

void Pic8259::SetOutputListener(std::function<void(bool)> listener) {
  std::lock_guard lock(mu_);
  listener_ = std::move(listener);
}

uint8_t Pic8259::irr(bool slave) const {
  std::lock_guard lock(mu_);
  return chips_[slave].irr;
}
uint8_t Pic8259::isr(bool slave) const {
  std::lock_guard lock(mu_);
  return chips_[slave].isr;
}
uint8_t Pic8259::imr(bool slave) const {
  std::lock_guard lock(mu_);
  return chips_[slave].imr;
}

uint8_t Pic8259::Poll(bool is_slave) {
  Chip& chip = chips_[is_slave];
  chip.poll = false;
  const int irq = chip.Pending(!is_slave);
  if (irq < 0) return 0;
  chip.Ack(unsigned(irq));
  Update();
  return uint8_t(0x80 | irq);
}

uint8_t Pic8259::ReadPort(unsigned window, unsigned port) {
  if (window == kElcrWindow) return port < 2 ? chips_[port].elcr : 0xFF;
  if (port >= 2) return 0xFF;
  Chip& chip = chips_[window == kSlaveWindow];
  if (chip.poll) return Poll(window == kSlaveWindow);
  if (port == 0) return chip.read_isr ? chip.isr : chip.irr;
  return chip.imr;
}

void Pic8259::WritePort(unsigned window, unsigned port, uint8_t value) {
  if (window == kElcrWindow) {
    if (port >= 2) return;
    Chip& chip = chips_[port];
    chip.elcr = value & chip.elcr_mask;
    uint8_t level_mask = 0;
    for (unsigned i = 0; i < 8; ++i) level_mask |= chip.IsLevel(i) ? (1u << i) : 0;
    chip.irr = uint8_t((chip.irr & ~level_mask) | (chip.levels & level_mask));
    Update();
    return;
  }
  if (port >= 2) return;
  Chip& chip = chips_[window == kSlaveWindow];
  if (port == 0) {
    if (value & 0x10) {  // ICW1
      chip.Init(value);
    } else if (value & 0x08) {  // OCW3
      if (value & 0x04) chip.poll = true;
      if (value & 0x02) chip.read_isr = value & 0x01;
      if (value & 0x40) chip.special_mask = value & 0x20;
    } else {  // OCW2
      const unsigned irq = value & 7;
      switch (value >> 5) {
        case 0:  // rotate in auto-EOI mode: clear
          chip.rotate_on_aeoi = false;
          break;
        case 4:  // rotate in auto-EOI mode: set
          chip.rotate_on_aeoi = true;
          break;
        case 1:    // non-specific EOI
        case 5: {  // rotate on non-specific EOI
          const int top = chip.Highest(chip.isr);
          if (top >= 0) chip.Eoi(unsigned(top), (value >> 5) == 5);
          break;
        }
        case 3:  // specific EOI
        case 7:  // rotate on specific EOI
          chip.Eoi(irq, (value >> 5) == 7);
          break;
        case 6:  // set priority: `irq` becomes the lowest
          chip.lowest = uint8_t(irq);
          break;
        default:  // 2: no operation
          break;
      }
    }
  } else {
    switch (chip.init_step) {
      case 2:  // ICW2
        chip.vector_base = value & 0xF8;
        chip.init_step = chip.single ? (chip.icw4_needed ? 4 : 0) : 3;
        break;
      case 3:  // ICW3: cascade wiring is fixed on a PC
        chip.init_step = chip.icw4_needed ? 4 : 0;
        break;
      case 4:  // ICW4
        chip.auto_eoi = value & 0x02;
        chip.special_fully_nested = value & 0x10;
        chip.init_step = 0;
        break;
      default:  // OCW1
        chip.imr = value;
        break;
    }
  }
  Update();
}

void Pic8259::Read(unsigned window, uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) data[i] = ReadPort(window, unsigned(offset + i));
}

void Pic8259::Write(unsigned window, uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) WritePort(window, unsigned(offset + i), data[i]);
}

// --- Snapshot. ---

void Pic8259::SaveState(StateWriter& out) const {
  std::lock_guard lock(mu_);
  for (const Chip& c : chips_) {
    out.U8(c.irr);
    out.U8(c.isr);
    out.U8(c.imr);
    out.U8(c.levels);
    out.U8(c.elcr);
    out.U8(c.lowest);
    out.U8(c.vector_base);
    out.U8(c.init_step);
    out.Bool(c.icw4_needed);
    out.Bool(c.single);
    out.Bool(c.ltim);
    out.Bool(c.auto_eoi);
    out.Bool(c.rotate_on_aeoi);
    out.Bool(c.special_fully_nested);
    out.Bool(c.special_mask);
    out.Bool(c.read_isr);
    out.Bool(c.poll);
  }
  out.Bool(output_);
}

StateApply Pic8259::ParseState(StateReader& in) {
  Chip loaded[2];
  for (unsigned i = 0; i < 2; ++i) {
    Chip& c = loaded[i];
    c.elcr_mask = chips_[i].elcr_mask;  // wiring, not state
    c.irr = in.U8("irr");
    c.isr = in.U8("isr");
    c.imr = in.U8("imr");
    c.levels = in.U8("input levels");
    c.elcr = in.U8("elcr");
    if (c.elcr & ~c.elcr_mask) in.Fail("ELCR sets a bit of an edge-only IRQ");
    c.lowest = in.U8Max(7, "lowest priority IRQ");
    c.vector_base = in.U8("vector base");
    if (c.vector_base & 7) in.Fail("vector base is not a multiple of 8");
    c.init_step = in.U8Max(4, "init step");
    if (c.init_step == 1) in.Fail("invalid init step 1");
    c.icw4_needed = in.Bool("icw4 needed");
    c.single = in.Bool("single");
    c.ltim = in.Bool("ltim");
    c.auto_eoi = in.Bool("auto eoi");
    c.rotate_on_aeoi = in.Bool("rotate on aeoi");
    c.special_fully_nested = in.Bool("special fully nested");
    c.special_mask = in.Bool("special mask");
    c.read_isr = in.Bool("read isr");
    c.poll = in.Bool("poll");
  }
  in.Bool("intr output");  // derived from the rest; recomputed below
  return [=, this]() mutable {
    std::lock_guard lock(mu_);
    chips_[0] = loaded[0];
    chips_[1] = loaded[1];
    // Recompute INTR from the loaded registers; an asserted output reaches the listener (wakes
    // the vCPU that takes ExtINT).
    output_ = false;
    Update();
  };
}

void Pic8259::LoadState(StateReader& in) {
  ParseState(in)();
}

}  // namespace rove
