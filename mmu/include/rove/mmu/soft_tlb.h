// The software TLB that translated code consults inline on every guest memory access.
//
// Direct-mapped, indexed by linear page number. One set per privilege view (supervisor,
// supervisor with SMAP overridden by RFLAGS.AC, user), because permissions differ per view.
// A hit costs a handful of host instructions in translated code and leaves RFLAGS alone:
//     idx  = pext(va, page-number bits)            index by the FIRST byte's page
//     d    = read_neg_tag[idx] + va + size - 1     (write_neg_tag for stores) = last - tag
//     hit  iff (d >> 12) == 0                       (pext + jrcxz)
//     host = va + addend[idx]
// Indexing by the first byte and tagging by the last makes page-crossing accesses always miss
// (the next page never shares an index with this one). Tags are page-aligned linear addresses
// stored negated. An empty entry holds kTlbInvalidTag; its addend points at a PROT_NONE guard
// page so even a (non-canonical) match can never reach host memory.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rove {

inline constexpr int kTlbBits = 10;
inline constexpr uint64_t kTlbEntries = 1ull << kTlbBits;
inline constexpr uint64_t kTlbInvalidTag = 0x8000000000000000ull;

enum TlbView : uint8_t { kTlbSupervisor = 0, kTlbSupervisorAc = 1, kTlbUser = 2, kTlbViewCount };

struct TlbSet {
  uint64_t read_neg_tag[kTlbEntries];   // -(page linear address), or kTlbInvalidTag
  uint64_t write_neg_tag[kTlbEntries];  // only set when writes need no slow path
  uint64_t addend[kTlbEntries];         // host address - linear address
  // Not used by translated code: guest physical page and whether the mapping is global.
  uint64_t phys_page[kTlbEntries];
  uint8_t global[kTlbEntries];
};

struct SoftTlb {
  TlbSet set[kTlbViewCount];

  static uint64_t Index(uint64_t linear) { return (linear >> 12) & (kTlbEntries - 1); }
};

}  // namespace rove
