// The guest's physical memory map as firmware reports it (e820 for Linux, the multiboot memory
// map for multiboot kernels).
//
// The PC layout follows GuestMemory: RAM below 640 KiB; 640 KiB - 1 MiB reserved (legacy VGA,
// option ROM and BIOS area: the ACPI tables live there); RAM from 1 MiB up to the end of RAM or
// kLowRamLimit, whichever is lower; then the PCI hole up to 4 GiB, which the map leaves out (a
// gap, so the guest may place PCI resources there) except for the reserved ranges the machine
// names (e.g. ECAM); RAM beyond kLowRamLimit continues at kHighRamStart.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace rove::loader {

// Values are the e820 / multiboot type codes.
enum class MemoryType : uint32_t {
  kRam = 1,
  kReserved = 2,
  kAcpi = 3,  // ACPI reclaimable
  kNvs = 4,   // ACPI NVS
  kUnusable = 5,
};

struct MemoryRegion {
  uint64_t base = 0;
  uint64_t size = 0;
  MemoryType type = MemoryType::kRam;

  uint64_t end() const { return base + size; }
  bool operator==(const MemoryRegion&) const = default;
};

using MemoryMap = std::vector<MemoryRegion>;

// Standard PC map for `ram_size` bytes of guest RAM, plus `reserved` ranges (which must lie
// outside RAM, e.g. in the PCI hole). Regions are sorted by base and do not overlap. Throws
// LoadError if a reserved range overlaps RAM or another reserved range, or if ram_size is 0.
MemoryMap BuildPcMemoryMap(uint64_t ram_size, std::span<const MemoryRegion> reserved = {});

// End of the RAM region that contains 1 MiB (the "upper memory" of multiboot and the limit for
// a Linux kernel, its initrd and the decompression buffer); 0 if there is none.
uint64_t LowRamEnd(const MemoryMap& map);

// Highest RAM address + 1.
uint64_t TopOfRam(const MemoryMap& map);

std::string ToString(MemoryType type);

}  // namespace rove::loader
