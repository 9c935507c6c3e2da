// Software walk of the guest's page tables, in every x86 paging mode: none, 32-bit (with PSE
// 4 MiB pages), PAE, 4-level and 5-level. Checks permissions (U/S, R/W with CR0.WP, NX with
// EFER.NXE, SMEP, SMAP with RFLAGS.AC) and sets accessed/dirty bits as the hardware does.
#pragma once

#include <cstdint>

#include "rove/mmu/guest_memory.h"

namespace rove {

enum class Access : uint8_t { kRead, kWrite, kExecute };

// MAXPHYADDR of the virtual CPU (CPUID 80000008H.EAX[7:0] must report the same): physical
// address bits at or above it are reserved in every paging-structure entry.
inline constexpr unsigned kMaxPhysAddrBits = 46;

// Control-register and EFER bits the walker looks at.
namespace paging_bits {
inline constexpr uint64_t kCr0Wp = 1ull << 16;
inline constexpr uint64_t kCr0Pg = 1ull << 31;
inline constexpr uint64_t kCr4Pse = 1ull << 4;
inline constexpr uint64_t kCr4Pae = 1ull << 5;
inline constexpr uint64_t kCr4Pge = 1ull << 7;
inline constexpr uint64_t kCr4La57 = 1ull << 12;
inline constexpr uint64_t kCr4Smep = 1ull << 20;
inline constexpr uint64_t kCr4Smap = 1ull << 21;
inline constexpr uint64_t kEferLme = 1ull << 8;
inline constexpr uint64_t kEferLma = 1ull << 10;
inline constexpr uint64_t kEferNxe = 1ull << 11;
}  // namespace paging_bits

// The control registers that select and configure paging.
struct PagingRegs {
  uint64_t cr0 = 0;
  uint64_t cr3 = 0;
  uint64_t cr4 = 0;
  uint64_t efer = 0;
};

// #PF error code bits.
namespace pf_error {
inline constexpr uint32_t kPresent = 1u << 0;
inline constexpr uint32_t kWrite = 1u << 1;
inline constexpr uint32_t kUser = 1u << 2;
inline constexpr uint32_t kReserved = 1u << 3;
inline constexpr uint32_t kFetch = 1u << 4;
inline constexpr uint32_t kProtKey = 1u << 5;
}  // namespace pf_error

struct WalkRequest {
  // With paging off, or with 32-bit or PAE paging, only bits 31:0 are used. In 4-/5-level
  // paging the caller checks canonicality first (a non-canonical access is #GP/#SS, not #PF);
  // the walker only uses bits 47:0 (56:0 with LA57).
  uint64_t linear = 0;
  Access access = Access::kRead;
  // Access made with user privilege: CPL 3 and not an implicit supervisor access
  // (descriptor-table or TSS accesses are supervisor accesses whatever the CPL).
  bool user = false;
  // RFLAGS.AC at the time of the access; with CR4.SMAP, explicit supervisor accesses to user
  // pages are allowed only when AC is set.
  bool ac = false;
  // Implicit supervisor access (SMAP applies regardless of AC).
  bool implicit_supervisor = false;
  // Set accessed/dirty bits (false for a probe that must not change guest memory).
  bool set_ad = true;
};

struct WalkResult {
  bool ok = false;
  // Guest physical address of `linear` (valid when ok).
  uint64_t phys = 0;
  // Size of the mapping that translated it: 4 KiB, 2 MiB, 4 MiB or 1 GiB.
  uint64_t page_size = kPageSize;
  // Effective attributes of the mapping (combined over all levels) for later accesses of
  // other kinds through a TLB entry made from this walk: writable = R/W set at every level,
  // user = U/S set at every level, executable = no XD bit at any level (always true without
  // EFER.NXE or with 32-bit paging). They are page attributes, not a verdict for a given
  // privilege: pass them to ProtectionFault() to apply CR0.WP, SMEP and SMAP. With paging off
  // all three are true.
  bool writable = false;
  bool user = false;
  bool executable = true;
  // Leaf G bit with CR4.PGE set.
  bool global = false;
  // Set when the leaf's dirty bit is set (so a write through a TLB entry needs no walk).
  bool dirty = false;
  // When !ok: the #PF error code to deliver (CR2 = linear).
  uint32_t error_code = 0;
};

// True if paging is enabled (CR0.PG).
inline bool PagingEnabled(const PagingRegs& regs) {
  return (regs.cr0 >> 31) & 1;
}

// Walks the guest page tables as the processor does (Intel SDM vol. 3, ch. 4): not-present
// and reserved-bit checks at each level, then the permission check on the combined
// attributes. Accessed bits are set (atomically) on each paging-structure entry as it is used,
// so higher levels may get A even when the access later faults; the leaf gets A (and D for a
// write) only when the access is allowed. Entries outside RAM are read through GuestMemory
// and never updated. Thread-safe with respect to other vCPUs walking or editing the tables.
WalkResult WalkPageTables(GuestMemory& memory, const PagingRegs& regs, const WalkRequest& req);

// Permission check alone, for an access through a cached translation: returns 0 when `req`
// (its access kind and privilege) may use a mapping with `mapping`'s attributes under `regs`
// (CR0.WP, CR4.SMEP/SMAP, EFER.NXE), else the #PF error code of the protection fault (P set).
uint32_t ProtectionFault(const PagingRegs& regs, const WalkResult& mapping, const WalkRequest& req);

// Canonical-address check for the current paging mode (48 bits, or 57 with CR4.LA57).
bool IsCanonical(const PagingRegs& regs, uint64_t linear);

}  // namespace rove
