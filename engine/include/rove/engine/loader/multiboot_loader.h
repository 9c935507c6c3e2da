// Multiboot (version 0.6.96, "multiboot 1") kernels: ELF32 (and ELF64 with 32-bit physical
// addresses) images, or any image whose header carries the address fields (flag 16, the "a.out
// kludge"), with modules, a command line, memory information and the memory map.
//
// The header is searched for in the first 8192 bytes, 4-byte aligned, and must have a valid
// checksum. Requirement flags: 0 (page-aligned modules: always honoured) and 1 (memory
// information: always provided) are supported; 2 (video mode) is accepted, but no video
// information is provided; any other requirement bit (3-15) is refused.
//
// The information structure, memory map, module list and strings go to [kMultibootInfoAddr,
// kMultibootInfoEnd); modules go page-aligned after the highest byte of the kernel.
//
// Initial state: EAX = 0x2BADB002, EBX = address of the information structure, 32-bit protected
// mode with paging off, CS = 0x10 flat 4 GiB code, DS = ES = FS = GS = SS = 0x18 flat data, GDTR
// on the boot GDT, IF = 0, ESP = kBootStackTop (the spec leaves it undefined), EIP = the entry.
// The A20 line is always on in rove.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "rove/engine/loader/load_result.h"
#include "rove/engine/loader/memory_map.h"

namespace rove {
class GuestMemory;
struct CpuState;
}  // namespace rove

namespace rove::loader {

struct MultibootModule {
  std::span<const uint8_t> data;
  std::string cmdline;
};

struct MultibootOptions {
  std::string cmdline;
  std::vector<MultibootModule> modules;
  std::string boot_loader_name = "rove";
  // Memory map to report; empty = BuildPcMemoryMap(memory.ram_size()).
  MemoryMap memory_map;
};

inline constexpr uint32_t kMultibootHeaderMagic = 0x1BADB002;
inline constexpr uint32_t kMultibootBootMagic = 0x2BADB002;
inline constexpr uint32_t kMultibootSearchLimit = 8192;

struct MultibootHeader {
  uint32_t offset = 0;  // in the file
  uint32_t flags = 0;
  uint32_t header_addr = 0, load_addr = 0, load_end_addr = 0, bss_end_addr = 0, entry_addr = 0;
  bool has_address_fields() const { return (flags & (1u << 16)) != 0; }
};

// Finds a multiboot header with a valid checksum. Returns nullopt if no magic is present; throws
// LoadError if the only candidates have a bad checksum or the header is cut off.
std::optional<MultibootHeader> FindMultibootHeader(std::span<const uint8_t> image);

LoadResult LoadMultiboot(GuestMemory& memory, CpuState& cpu, std::span<const uint8_t> image,
                         const MultibootOptions& options);

// Offsets in the multiboot information structure.
namespace multiboot_info {
inline constexpr uint32_t kFlags = 0;
inline constexpr uint32_t kMemLower = 4;
inline constexpr uint32_t kMemUpper = 8;
inline constexpr uint32_t kCmdline = 16;
inline constexpr uint32_t kModsCount = 20;
inline constexpr uint32_t kModsAddr = 24;
inline constexpr uint32_t kMmapLength = 44;
inline constexpr uint32_t kMmapAddr = 48;
inline constexpr uint32_t kBootLoaderName = 64;
inline constexpr uint32_t kSize = 120;

inline constexpr uint32_t kFlagMem = 1u << 0;
inline constexpr uint32_t kFlagCmdline = 1u << 2;
inline constexpr uint32_t kFlagMods = 1u << 3;
inline constexpr uint32_t kFlagMmap = 1u << 6;
inline constexpr uint32_t kFlagBootLoaderName = 1u << 9;
}  // namespace multiboot_info

}  // namespace rove::loader
