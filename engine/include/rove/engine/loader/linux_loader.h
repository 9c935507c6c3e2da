// Linux x86 boot protocol (Documentation/arch/x86/boot.rst): bzImage kernels with protocol 2.06
// or later, loaded high, entered through the 64-bit entry (default) or the 32-bit one.
//
// The protected-mode kernel goes to 1 MiB (or its pref_address, or an explicit address when it
// is relocatable); the zero page, command line, page tables and GDT go where boot_layout.h says;
// the initrd goes as high as RAM and initrd_addr_max allow, above the memory the kernel needs
// for decompressing itself (max(load address aligned to kernel_alignment, pref_address) +
// init_size).
//
// Initial state, 64-bit entry: long mode, paging on with the identity map of boot_layout.h,
// CS = 0x10 (64-bit code), DS = ES = SS = FS = GS = 0x18 (flat data), RSI = zero page, RIP =
// load address + 0x200, RSP = kBootStackTop, IF = 0.
// 32-bit entry: protected mode, paging off, CS = 0x10 and data = 0x18 flat 4 GiB, ESI = zero page,
// EBP = EDI = EBX = 0, EIP = code32_start (the load address), IF = 0.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "rove/engine/loader/load_result.h"
#include "rove/engine/loader/memory_map.h"

namespace rove {
class GuestMemory;
struct CpuState;
}  // namespace rove

namespace rove::loader {

enum class LinuxEntry : uint8_t { k64Bit, k32Bit };

struct LinuxBootOptions {
  std::string cmdline;
  LinuxEntry entry = LinuxEntry::k64Bit;
  // Where the protected-mode kernel goes. Default: 1 MiB. use_preferred_address picks the
  // header's pref_address (protocol 2.10+, relocatable kernels); load_address wins over both and
  // must be at least 1 MiB and, unless it is code32_start, needs a relocatable kernel.
  bool use_preferred_address = false;
  std::optional<uint64_t> load_address;
  // ACPI RSDP address for boot_params.acpi_rsdp_addr (protocol 2.14+); 0 = not reported.
  uint64_t acpi_rsdp = 0;
  // Memory map for the e820 table; empty = BuildPcMemoryMap(memory.ram_size()).
  MemoryMap memory_map;
};

// True if `image` carries a Linux boot-protocol header (boot flag 0xAA55 and "HdrS").
bool IsBzImage(std::span<const uint8_t> image);

// Loads `kernel` (and `initrd`, which may be empty) into guest RAM and sets the initial vCPU
// state as described above. Registers not named there are left as they were (call
// ResetCpuState first). Throws LoadError.
LoadResult LoadLinux(GuestMemory& memory, CpuState& cpu, std::span<const uint8_t> kernel,
                     std::span<const uint8_t> initrd, const LinuxBootOptions& options);

// Offsets in struct boot_params (the zero page), for tests and for the machine's fw_cfg.
namespace boot_params {
inline constexpr uint32_t kAcpiRsdpAddr = 0x070;
inline constexpr uint32_t kExtRamdiskImage = 0x0C0;
inline constexpr uint32_t kExtRamdiskSize = 0x0C4;
inline constexpr uint32_t kExtCmdLinePtr = 0x0C8;
inline constexpr uint32_t kAltMemK = 0x1E0;
inline constexpr uint32_t kE820Entries = 0x1E8;
inline constexpr uint32_t kSetupSects = 0x1F1;
inline constexpr uint32_t kBootFlag = 0x1FE;
inline constexpr uint32_t kJump = 0x200;
inline constexpr uint32_t kHeader = 0x202;
inline constexpr uint32_t kVersion = 0x206;
inline constexpr uint32_t kKernelVersion = 0x20E;
inline constexpr uint32_t kTypeOfLoader = 0x210;
inline constexpr uint32_t kLoadFlags = 0x211;
inline constexpr uint32_t kCode32Start = 0x214;
inline constexpr uint32_t kRamdiskImage = 0x218;
inline constexpr uint32_t kRamdiskSize = 0x21C;
inline constexpr uint32_t kHeapEndPtr = 0x224;
inline constexpr uint32_t kCmdLinePtr = 0x228;
inline constexpr uint32_t kInitrdAddrMax = 0x22C;
inline constexpr uint32_t kKernelAlignment = 0x230;
inline constexpr uint32_t kRelocatableKernel = 0x234;
inline constexpr uint32_t kXloadflags = 0x236;
inline constexpr uint32_t kCmdlineSize = 0x238;
inline constexpr uint32_t kSetupData = 0x250;
inline constexpr uint32_t kPrefAddress = 0x258;
inline constexpr uint32_t kInitSize = 0x260;
inline constexpr uint32_t kE820Table = 0x2D0;
inline constexpr uint32_t kE820MaxEntries = 128;
inline constexpr uint32_t kE820EntrySize = 20;
inline constexpr uint32_t kHeaderEndLimit = 0x290;  // the setup header never extends past this

inline constexpr uint8_t kLoadedHigh = 0x01;
inline constexpr uint8_t kCanUseHeap = 0x80;
inline constexpr uint16_t kXlfKernel64 = 0x01;
inline constexpr uint8_t kLoaderTypeUndefined = 0xFF;
inline constexpr uint16_t kHeapEnd = 0xFE00;
}  // namespace boot_params

}  // namespace rove::loader
