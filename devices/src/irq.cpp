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

}  // namespace rove
