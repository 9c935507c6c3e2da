#include "rove/translator/cpu_state.h"

#include <cstring>

namespace rove {

void ResetCpuState(CpuState& s) {
  s = CpuState{};
  for (auto& seg : s.seg) {
    seg.selector = 0;
    seg.base = 0;
    seg.limit = 0xFFFF;
    seg.attr = seg_attr::kP | seg_attr::kS | seg_attr::kTypeWritable | seg_attr::kTypeAccessed;
  }
  // CS = F000 with base FFFF0000: the first fetch is at FFFFFFF0.
  s.seg[kCs].selector = 0xF000;
  s.seg[kCs].base = 0xFFFF0000ull;
  s.seg[kCs].attr = seg_attr::kP | seg_attr::kS | seg_attr::kTypeCode | seg_attr::kTypeReadable |
                    seg_attr::kTypeAccessed;
  s.ldtr.attr = seg_attr::kP | 0x2;  // LDT
  s.tr.attr = seg_attr::kP | 0xB;    // busy 32-bit TSS
  s.rip = 0xFFF0;
  s.rflags = rflags::kFixed1;
  s.gpr[kRdx] = 0x600;  // family/model/stepping signature
  // x87 control word 0x37F and MXCSR 0x1F80 in the legacy XSAVE area.
  uint16_t fcw = 0x037F;
  uint32_t mxcsr = 0x1F80;
  std::memcpy(s.xsave + 0, &fcw, 2);
  std::memcpy(s.xsave + 24, &mxcsr, 4);
}

}  // namespace rove
