// Internal: the boot GDT, identity-mapping page tables and initial vCPU states the loaders share.
#pragma once

#include <cstdint>

namespace rove {
struct CpuState;
}

namespace rove::loader::detail {

class GuestWriter;

// Writes the boot GDT at kBootGdtAddr: 0x10 is 64-bit code if `long_mode`, else 32-bit flat
// code; 0x18 is flat data.
void WriteBootGdt(GuestWriter& writer, bool long_mode);

// Writes PML4, PDPT and page directories (2 MiB pages, writable, supervisor) identity-mapping
// [0, size) at kPageTablesAddr; `size` is rounded up to 1 GiB, at least kIdentityMapMin and at
// most kIdentityMapMax. Returns the CR3 value.
uint64_t WriteIdentityPageTables(GuestWriter& writer, uint64_t size);

// Bytes the page tables for an identity map of `size` occupy.
uint64_t IdentityPageTablesSize(uint64_t size);

// Clears the general-purpose registers and sets RFLAGS to its fixed bit (IF = 0).
void ClearRegisters(CpuState& cpu);

// 32-bit protected mode, paging off: CS = 0x10 flat code, data segments 0x18 flat, GDTR on the
// boot GDT, IDTR empty, TR/LDTR in their post-INIT usable form.
void SetProtectedMode32(CpuState& cpu);

// Long mode: like SetProtectedMode32 with a 64-bit CS, CR0.PG, CR4.PAE, EFER.LME|LMA, CR3.
void SetLongMode(CpuState& cpu, uint64_t cr3);

// Real mode with CS = `cs` (base cs * 16) and all other segments 0.
void SetRealMode(CpuState& cpu, uint16_t cs);

}  // namespace rove::loader::detail
