// Software walk of the guest's page tables, in every x86 paging mode: none, 32-bit (with PSE
// 4 MiB pages), PAE, 4-level and 5-level. Checks permissions (U/S, R/W with CR0.WP, NX with
// EFER.NXE, SMEP, SMAP with RFLAGS.AC) and sets accessed/dirty bits as the hardware does.
#pragma once

#include <cstdint>

#include "rove/mmu/guest_memory.h"

namespace rove {

enum class Access : uint8_t { kRead, kWrite, kExecute };

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
  // Effective permissions of the mapping (combined over all levels) for later accesses of
  // other kinds through a TLB entry made from this walk.
  bool writable = false;
  bool user = false;
  bool executable = true;
  bool global = false;
  // Set when the leaf's dirty bit is set (so a write through a TLB entry needs no walk).
  bool dirty = false;
  // When !ok: the #PF error code to deliver (CR2 = linear).
  uint32_t error_code = 0;
};

// True if paging is enabled (CR0.PG).
inline bool PagingEnabled(const PagingRegs& regs) { return (regs.cr0 >> 31) & 1; }

WalkResult WalkPageTables(GuestMemory& memory, const PagingRegs& regs, const WalkRequest& req);

// Canonical-address check for the current paging mode (48 bits, or 57 with CR4.LA57).
bool IsCanonical(const PagingRegs& regs, uint64_t linear);

}  // namespace rove
