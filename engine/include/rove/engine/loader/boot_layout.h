// Where the loaders put their own structures in guest physical memory.
//
// Everything the loaders create lives below 1 MiB, in RAM that the memory map reports as usable
// (below 640 KiB) or reserved (640 KiB - 1 MiB). A Linux kernel reserves all of the first MiB
// itself, so none of this is ever handed out as free memory before the kernel is done with it.
//
//   0x01000 - 0x010FF  boot GDT: 0x00 null, 0x08 null, 0x10 __BOOT_CS, 0x18 __BOOT_DS
//   0x02000 - 0x06FFF  boot stack (RSP/ESP = 0x7000 on entry, for guests that use it at once)
//   0x07000 - 0x07FFF  Linux zero page (struct boot_params)
//   0x08000 - 0x1FFFF  multiboot information: info struct, memory map, module list, strings
//   0x20000 - 0x2FFFF  kernel command line
//   0x30000 - 0x9EFFF  identity-mapping page tables: PML4, one PDPT, one page directory per
//                      GiB mapped with 2 MiB pages (the first 4 GiB at least, all RAM if it fits)
//   0xE0000 - 0xFFFFF  ACPI tables (RSDP first, where the legacy 0xE0000 scan finds it)
//   0x100000           default load address of a Linux protected-mode kernel
#pragma once

#include <cstdint>

namespace rove::loader {

inline constexpr uint64_t kBootGdtAddr = 0x1000;
inline constexpr uint16_t kBootCodeSelector = 0x10;  // __BOOT_CS
inline constexpr uint16_t kBootDataSelector = 0x18;  // __BOOT_DS
inline constexpr uint64_t kBootGdtSize = 4 * 8;
inline constexpr uint64_t kBootStackTop = 0x7000;
inline constexpr uint64_t kZeroPageAddr = 0x7000;
inline constexpr uint64_t kMultibootInfoAddr = 0x8000;
inline constexpr uint64_t kMultibootInfoEnd = 0x20000;
inline constexpr uint64_t kCmdlineAddr = 0x20000;
inline constexpr uint64_t kCmdlineMax = 0x10000;  // bytes, including the terminating NUL
inline constexpr uint64_t kPageTablesAddr = 0x30000;
inline constexpr uint64_t kPageTablesEnd = 0x9F000;
inline constexpr uint64_t kAcpiTablesAddr = 0xE0000;
inline constexpr uint64_t kAcpiTablesEnd = 0x100000;
inline constexpr uint64_t kLinuxLoadAddr = 0x100000;

// The identity map always covers [0, 4 GiB); with more RAM it grows to cover the top of RAM, up
// to what the page-table area can hold (one page directory per GiB).
inline constexpr uint64_t kIdentityMapMin = 4ull << 30;
inline constexpr uint64_t kIdentityMapMax = ((kPageTablesEnd - kPageTablesAddr) / 4096 - 2) << 30;

}  // namespace rove::loader
