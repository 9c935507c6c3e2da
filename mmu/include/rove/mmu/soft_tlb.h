// The software TLB that translated code consults inline on every guest memory access.
//
// Direct-mapped, indexed by linear page number. One set per privilege view (supervisor,
// supervisor with SMAP overridden by RFLAGS.AC, user), because permissions differ per view.
// An entry is 32 bytes, so one index register addresses all of its fields:
//     {read_neg_tag, write_neg_tag, host_page, addend}
// Translated code uses one of two hit tests, both indexing by the FIRST byte's page and
// tagging by the LAST byte, so page-crossing accesses always miss (the next page never shares
// an index with this one):
//   arithmetic flags dead (clobbers RFLAGS, needs no RCX):
//     off  = rorx(va, 7) & ((kTlbEntries - 1) << 5)   byte offset of the entry
//     d    = va + neg_tag                              neg_tag = read_ or write_neg_tag
//     hit  iff d <= 4096 - size (unsigned)             cmp + ja
//     host = d + host_page
//   flags live (flag-free: lea, pext, jrcxz):
//     idx  = pext(va, page-number bits)
//     d    = neg_tag + va + size - 1                   = last byte - tag
//     hit  iff pext(d, ~0xFFF) == 0                    jrcxz
//     host = va + addend
// Tags are page-aligned linear addresses stored negated; addend = host_page + neg_tag. An empty
// entry holds kTlbInvalidTag; its host_page/addend point at a PROT_NONE guard page so even a
// (non-canonical) match can never reach host memory.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rove {

inline constexpr int kTlbBits = 10;
inline constexpr uint64_t kTlbEntries = 1ull << kTlbBits;
inline constexpr uint64_t kTlbInvalidTag = 0x8000000000000000ull;

enum TlbView : uint8_t { kTlbSupervisor = 0, kTlbSupervisorAc = 1, kTlbUser = 2, kTlbViewCount };

struct TlbEntry {
  uint64_t read_neg_tag;   // -(page linear address), or kTlbInvalidTag
  uint64_t write_neg_tag;  // only set when writes need no slow path
  uint64_t host_page;      // host address of the page
  uint64_t addend;         // host address - linear address (= host_page + read_neg_tag)
};
static_assert(sizeof(TlbEntry) == 32, "translated code scales the index by 32");
inline constexpr int kTlbEntryShift = 5;

struct TlbSet {
  TlbEntry entry[kTlbEntries];
  // Not used by translated code: guest physical page and whether the mapping is global.
  uint64_t phys_page[kTlbEntries];
  uint8_t global[kTlbEntries];
};

struct SoftTlb {
  TlbSet set[kTlbViewCount];

  static uint64_t Index(uint64_t linear) { return (linear >> 12) & (kTlbEntries - 1); }
};

}  // namespace rove
