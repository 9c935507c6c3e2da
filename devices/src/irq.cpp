#include "rove/devices/irq.h"

#include <stdexcept>

namespace rove {

IrqLine IrqRouter::Line(unsigned line) {
  std::lock_guard lock(mu_);
  if (line >= kLines) throw std::out_of_range("IrqRouter::Line: no such line");
  if (sources_[line] >= kMaxSourcesPerLine) {
    throw std::out_of_range("IrqRouter::Line: too many sources on one line");
  }
  return IrqLine(this, line, sources_[line]++);
}

bool IrqRouter::level(unsigned line) const {
  std::lock_guard lock(mu_);
  return line < kLines && asserted_[line] != 0;
}

void IrqRouter::Set(unsigned line, unsigned source, bool level) {
  std::lock_guard lock(mu_);
  const bool before = asserted_[line] != 0;
  if (level) {
    asserted_[line] |= 1u << source;
  } else {
    asserted_[line] &= ~(1u << source);
  }
  const bool after = asserted_[line] != 0;
  if (before == after) return;
  if (line < kIsaIrqs) {
    if (pic_) pic_->SetIrq(line, after);
    if (ioapic_) ioapic_->SetIrq(GsiForIsaIrq(line), after);
  } else if (ioapic_) {
    ioapic_->SetIrq(line, after);
  }
}

// --- Snapshot. ---

void IrqRouter::SaveState(StateWriter& out) const {
  std::lock_guard lock(mu_);
  for (uint32_t bits : asserted_) out.U32(bits);
}

StateApply IrqRouter::ParseState(StateReader& in) {
  std::array<uint32_t, kLines> asserted;
  for (unsigned line = 0; line < kLines; ++line) asserted[line] = in.U32("asserting sources");
  {
    std::lock_guard lock(mu_);
    for (unsigned line = 0; line < kLines; ++line) {
      const uint32_t allocated = sources_[line] >= 32 ? ~0u : (1u << sources_[line]) - 1;
      if (asserted[line] & ~allocated) {
        in.Fail("a line is asserted by a source that does not exist");
      }
    }
  }
  return [=, this]() mutable {
    std::lock_guard lock(mu_);
    asserted_ = asserted;
  };
}

void IrqRouter::LoadState(StateReader& in) {
  ParseState(in)();
}

}  // namespace rove
