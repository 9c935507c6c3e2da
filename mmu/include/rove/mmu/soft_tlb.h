// The software TLB that translated code consults inline on every guest memory access.
//
// Direct-mapped, indexed by linear address bits 12-20 and 46 (kTlbIndexMask). Bit 46 keeps a
// Linux kernel's two aliases of one physical page apart -- the kernel image at 0xffffffff8...
// and the direct map at 0xffff888... share their low bits and would evict each other on every
// use (a getppid() system call took two such misses). One set per privilege view (supervisor,
// supervisor with SMAP overridden by RFLAGS.AC, user), because permissions differ per view.
// An entry is 32 bytes, so one index register addresses all of its fields:
//     {read_neg_tag, write_neg_tag, host_page, addend}
// Translated code uses one of two hit tests, both indexing by the FIRST byte's page and
// tagging by the LAST byte, so page-crossing accesses always miss (the next page never shares
// an index with this one):
//   arithmetic flags dead (clobbers RFLAGS, needs no RCX):
//     off  = pext(va, kTlbIndexMask) << 5              byte offset of the entry
//     d    = va + neg_tag                              neg_tag = read_ or write_neg_tag
//     hit  iff d <= 4096 - size (unsigned)             cmp + ja
//     host = d + host_page
//   flags live (flag-free: lea, pext, jrcxz):
//     idx  = pext(va, kTlbIndexMask)
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
// Index bits: 9 page-number bits and bit 46 (see above). Adjacent pages never share an index.
inline constexpr uint64_t kTlbIndexMask = 0x1FF000ull | (1ull << 46);
static_assert(__builtin_popcountll(kTlbIndexMask) == kTlbBits);

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

  // pext(linear, kTlbIndexMask), as translated code computes it.
  static uint64_t Index(uint64_t linear) {
    return ((linear >> 12) & 0x1FF) | ((linear >> 37) & 0x200);
  }
};

}  // namespace rove
