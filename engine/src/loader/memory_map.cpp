#include "rove/engine/loader/memory_map.h"

#include <fmt/format.h>

#include <algorithm>

#include "bytes.h"
#include "rove/engine/loader/load_error.h"
#include "rove/mmu/guest_memory.h"

namespace rove::loader {
namespace {

constexpr uint64_t kConventionalEnd = 0xA0000;  // 640 KiB
constexpr uint64_t kOneMiB = 0x100000;

}  // namespace

MemoryMap BuildPcMemoryMap(uint64_t ram_size, std::span<const MemoryRegion> reserved) {
  if (ram_size == 0) throw LoadError("guest RAM size must not be 0");
  ram_size = detail::AlignUp(ram_size, kPageSize);
  MemoryMap map;
  const uint64_t low = std::min(ram_size, kLowRamLimit);
  map.push_back({0, std::min(low, kConventionalEnd), MemoryType::kRam});
  if (low > kConventionalEnd) {
    map.push_back(
        {kConventionalEnd, std::min(low, kOneMiB) - kConventionalEnd, MemoryType::kReserved});
  }
  if (low > kOneMiB) map.push_back({kOneMiB, low - kOneMiB, MemoryType::kRam});
  if (ram_size > kLowRamLimit) {
    map.push_back({kHighRamStart, ram_size - kLowRamLimit, MemoryType::kRam});
  }
  for (const MemoryRegion& r : reserved) {
    if (r.size == 0) continue;
    const uint64_t end = detail::CheckedEnd(r.base, r.size, "reserved memory range");
    for (const MemoryRegion& m : map) {
      if (detail::Overlaps(r.base, end, m.base, m.end())) {
        throw LoadError(fmt::format(
            "reserved memory range [{:#x}, {:#x}) overlaps {} [{:#x}, {:#x}) in the memory map",
            r.base, end, ToString(m.type), m.base, m.end()));
      }
    }
    map.push_back(r);
  }
  std::sort(map.begin(), map.end(),
            [](const MemoryRegion& a, const MemoryRegion& b) { return a.base < b.base; });
  for (size_t i = 1; i < map.size(); ++i) {
    if (map[i].base < map[i - 1].end()) {
      throw LoadError(
          fmt::format("reserved memory ranges [{:#x}, {:#x}) and [{:#x}, {:#x}) overlap",
                      map[i - 1].base, map[i - 1].end(), map[i].base, map[i].end()));
    }
  }
  return map;
}

uint64_t LowRamEnd(const MemoryMap& map) {
  for (const MemoryRegion& r : map) {
    if (r.type == MemoryType::kRam && r.base <= kOneMiB && kOneMiB < r.end()) return r.end();
  }
  return 0;
}

uint64_t TopOfRam(const MemoryMap& map) {
  uint64_t top = 0;
  for (const MemoryRegion& r : map) {
    if (r.type == MemoryType::kRam) top = std::max(top, r.end());
  }
  return top;
}

std::string ToString(MemoryType type) {
  switch (type) {
    case MemoryType::kRam:
      return "RAM";
    case MemoryType::kReserved:
      return "reserved";
    case MemoryType::kAcpi:
      return "ACPI data";
    case MemoryType::kNvs:
      return "ACPI NVS";
    case MemoryType::kUnusable:
      return "unusable";
  }
  return fmt::format("type {}", static_cast<uint32_t>(type));
}

}  // namespace rove::loader
