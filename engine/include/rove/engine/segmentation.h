// Segment and gate descriptors: decoding into the hidden-cache form of CpuState, encoding (for
// loaders and tests), and the constants of selectors and system descriptor types.
//
// The checks that go with loading a segment register (SDM Vol. 3 ch. 5, MOV/POP Sreg, far
// transfers) live in the system emulator, which uses these helpers.
#pragma once

#include <cstdint>

#include "rove/translator/cpu_state.h"

namespace rove {

namespace selector {
inline constexpr uint16_t kRplMask = 3;
inline constexpr uint16_t kTi = 1u << 2;  // table indicator: 1 = LDT
inline constexpr uint16_t kIndexMask = 0xFFF8;
inline constexpr bool IsNull(uint16_t sel) {
  return (sel & 0xFFFC) == 0;
}
}  // namespace selector

// System-segment and gate types (S = 0).
namespace sys_type {
inline constexpr uint8_t kTss16Avail = 0x1;
inline constexpr uint8_t kLdt = 0x2;
inline constexpr uint8_t kTss16Busy = 0x3;
inline constexpr uint8_t kCallGate16 = 0x4;
inline constexpr uint8_t kTaskGate = 0x5;
inline constexpr uint8_t kIntGate16 = 0x6;
inline constexpr uint8_t kTrapGate16 = 0x7;
inline constexpr uint8_t kTssAvail = 0x9;  // 32-bit, or 64-bit in long mode
inline constexpr uint8_t kTssBusy = 0xB;
inline constexpr uint8_t kCallGate = 0xC;  // 32-bit, or 64-bit in long mode
inline constexpr uint8_t kIntGate = 0xE;
inline constexpr uint8_t kTrapGate = 0xF;
}  // namespace sys_type

// Decodes the low 8 bytes of a segment descriptor (and, for system descriptors in long mode,
// the high 8 bytes' base bits) into a segment cache. The limit is scaled by G.
inline SegmentCache DecodeSegmentDescriptor(uint64_t low, uint16_t sel, uint64_t high = 0,
                                            bool system64 = false) {
  SegmentCache c;
  c.selector = sel;
  c.base = ((low >> 16) & 0xFFFFFF) | (((low >> 56) & 0xFF) << 24);
  if (system64) c.base |= (high & 0xFFFFFFFFull) << 32;
  uint32_t limit = static_cast<uint32_t>((low & 0xFFFF) | (((low >> 48) & 0xF) << 16));
  c.attr = static_cast<uint32_t>(((low >> 40) & 0xFF) | (((low >> 52) & 0xF) << 12));
  if (c.attr & seg_attr::kG) limit = (limit << 12) | 0xFFF;
  c.limit = limit;
  return c;
}

// Encodes a segment descriptor. `limit` is the raw 20-bit field (in pages when attr has G).
// `attr` uses the seg_attr layout.
inline constexpr uint64_t EncodeSegmentDescriptor(uint32_t base, uint32_t limit20, uint32_t attr) {
  return (uint64_t{limit20} & 0xFFFF) | ((uint64_t{base} & 0xFFFFFF) << 16) |
         (uint64_t{attr & 0xFF} << 40) | ((uint64_t{limit20 >> 16} & 0xF) << 48) |
         (uint64_t{(attr >> 12) & 0xF} << 52) | ((uint64_t{base >> 24} & 0xFF) << 56);
}

struct GateDescriptor {
  uint64_t offset = 0;
  uint16_t selector = 0;
  uint8_t type = 0;
  uint8_t dpl = 0;
  bool present = false;
  bool system = false;      // S bit clear (a real gate)
  uint8_t ist = 0;          // 64-bit interrupt/trap gates
  uint8_t param_count = 0;  // call gates (dwords or words)
};

// Decodes a gate. `high` holds bytes 8-15 (64-bit gates only; pass 0 otherwise).
inline GateDescriptor DecodeGate(uint64_t low, uint64_t high, bool gate64) {
  GateDescriptor g;
  g.selector = static_cast<uint16_t>(low >> 16);
  g.offset = (low & 0xFFFF) | (((low >> 48) & 0xFFFF) << 16);
  if (gate64) g.offset |= (high & 0xFFFFFFFFull) << 32;
  g.type = (low >> 40) & 0xF;
  g.system = ((low >> 44) & 1) == 0;
  g.dpl = (low >> 45) & 3;
  g.present = ((low >> 47) & 1) != 0;
  g.ist = (low >> 32) & 7;
  g.param_count = (low >> 32) & 0x1F;
  return g;
}

// Encodes a gate of `type` (sys_type). For 64-bit gates `high_out` receives bytes 8-15.
inline constexpr uint64_t EncodeGate(uint16_t sel, uint64_t offset, uint8_t type, uint8_t dpl,
                                     uint8_t ist_or_params = 0, uint64_t* high_out = nullptr) {
  if (high_out) *high_out = offset >> 32;
  return (offset & 0xFFFF) | (uint64_t{sel} << 16) | (uint64_t{ist_or_params & 0x1Fu} << 32) |
         (uint64_t{type & 0xFu} << 40) | (uint64_t{dpl & 3u} << 45) | (1ull << 47) |
         (((offset >> 16) & 0xFFFF) << 48);
}

// Segment-cache helpers.
inline bool SegIsCode(const SegmentCache& s) {
  return (s.attr & seg_attr::kS) && (s.attr & seg_attr::kTypeCode);
}
inline bool SegIsUsable(const SegmentCache& s) {
  return (s.attr & seg_attr::kUnusable) == 0;
}

// The cache of a segment register loaded in real mode or virtual-8086 mode (base = sel * 16).
inline SegmentCache RealModeSegment(uint16_t sel, bool v86, const SegmentCache& old) {
  SegmentCache c = old;
  c.selector = sel;
  c.base = uint64_t{sel} << 4;
  if (v86) {
    c.limit = 0xFFFF;
    c.attr = seg_attr::kP | seg_attr::kS | (3u << seg_attr::kDplShift) | 0x3;
  }
  return c;
}

// A null (unusable) segment cache for `sel`.
inline SegmentCache NullSegment(uint16_t sel) {
  SegmentCache c;
  c.selector = sel;
  c.base = 0;
  c.limit = 0;
  c.attr = seg_attr::kUnusable;
  return c;
}

}  // namespace rove
