// What a loader put into the guest, returned by every loader.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rove/engine/loader/memory_map.h"

namespace rove::loader {

enum class KernelFormat : uint8_t {
  kLinuxBzImage,
  kMultibootElf,
  kMultibootAout,  // multiboot header with the address fields (flag 16, "a.out kludge")
  kRawBinary,
};

const char* ToString(KernelFormat format);

// One guest-physical range the loader wrote, named ("kernel", "initrd", "zero page", ...).
struct LoadedRange {
  std::string name;
  uint64_t gpa = 0;
  uint64_t size = 0;
};

struct LoadResult {
  KernelFormat format = KernelFormat::kRawBinary;
  uint64_t entry = 0;  // guest-physical (linear) address of the first instruction
  std::vector<LoadedRange> ranges;
  MemoryMap memory_map;  // as reported to the guest (empty for raw binaries)
  uint64_t rsdp = 0;     // ACPI RSDP address reported to the guest, 0 if none
  std::string summary;   // one line describing what was loaded
};

}  // namespace rove::loader
