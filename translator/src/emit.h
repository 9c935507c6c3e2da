// Small asmjit helpers shared by the runtime and the block translator.
#pragma once

#include <asmjit/x86.h>

#include <cstddef>
#include <cstdint>

#include "context.h"

namespace rove::bt {

// GS-relative operand at a VcpuContext offset (absolute [disp32] form, never RIP-relative).
inline asmjit::x86::Mem Gs(size_t offset, uint32_t size = 8) {
  asmjit::x86::Mem m = asmjit::x86::ptr_abs(offset, size);
  m.setSegment(asmjit::x86::gs);
  return m;
}

inline asmjit::x86::Mem GsIndexed(size_t offset, const asmjit::x86::Gp& index, uint32_t shift,
                                  uint32_t size = 8) {
  asmjit::x86::Mem m = asmjit::x86::ptr_abs(offset, index, shift, size);
  m.setSegment(asmjit::x86::gs);
  return m;
}

#define ROVE_CTX(field) offsetof(::rove::bt::VcpuContext, field)

inline size_t StateOffset(size_t field_offset) {
  return field_offset;
}

// Host register with the given hardware number (0 = rax ... 15 = r15).
inline asmjit::x86::Gp Reg64(unsigned id) {
  return asmjit::x86::gpq(id);
}

}  // namespace rove::bt
