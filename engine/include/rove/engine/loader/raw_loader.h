// A raw flat binary copied to a given guest physical address and entered in the requested mode.
//
// - kReal16: real mode, CS:IP derived from the entry (CS = (entry >> 4) & 0xF000, IP = entry &
//   0xFFFF; entry < 1 MiB) unless real_mode_cs is given (then IP = entry - CS * 16, which must
//   fit in 16 bits); other segments 0. Nothing else is written to guest memory.
// - kProtected32: flat 4 GiB segments (CS 0x10, data 0x18) on the boot GDT, paging off.
// - kLong64: long mode with the identity map and boot GDT of boot_layout.h, CS = 0x10 (64-bit).
// In every mode IF = 0 and RSP = stack_pointer. The binary may not overlap what the loader
// writes for the chosen mode (GDT, page tables).
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "rove/engine/loader/load_result.h"

namespace rove {
class GuestMemory;
struct CpuState;
}  // namespace rove

namespace rove::loader {

enum class EntryMode : uint8_t { kReal16, kProtected32, kLong64 };

struct RawBinaryOptions {
  uint64_t load_address = 0;
  uint64_t entry = 0;
  EntryMode mode = EntryMode::kProtected32;
  std::optional<uint16_t> real_mode_cs;
  uint64_t stack_pointer = 0;
};

LoadResult LoadRawBinary(GuestMemory& memory, CpuState& cpu, std::span<const uint8_t> image,
                         const RawBinaryOptions& options);

}  // namespace rove::loader
