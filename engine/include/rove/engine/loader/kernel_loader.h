// The single entry point for `rove run --kernel`: reads the files, recognises the kernel format
// from its bytes (Linux bzImage first, then a multiboot header) and loads it. Optionally
// installs the ACPI tables first and reports their RSDP to the guest.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "rove/engine/loader/acpi.h"
#include "rove/engine/loader/linux_loader.h"
#include "rove/engine/loader/load_result.h"
#include "rove/engine/loader/memory_map.h"

namespace rove {
class GuestMemory;
struct CpuState;
}  // namespace rove

namespace rove::loader {

struct ModuleFile {
  std::string path;
  std::string cmdline;
};

struct LoadOptions {
  std::string kernel_path;
  std::string initrd_path;  // Linux: the initrd; multiboot: loaded as the first module
  std::string cmdline;
  std::vector<ModuleFile> modules;  // multiboot modules (after the initrd, if any)
  LinuxEntry linux_entry = LinuxEntry::k64Bit;
  // Reserved ranges outside RAM to report in the memory map (e.g. the PCI ECAM window).
  std::vector<MemoryRegion> reserved;
  // If set, the ACPI tables are built and installed, and their RSDP is given to the kernel.
  std::optional<AcpiConfig> acpi;
};

// Loads the kernel named in `options`. Throws LoadError with a one-line reason: a missing or
// unreadable file, "not a bzImage or multiboot kernel", or whatever the format's loader refused.
LoadResult LoadKernel(GuestMemory& memory, CpuState& cpu, const LoadOptions& options);

// Reads a whole file; throws LoadError naming the file if it cannot be read or is larger than
// max_size bytes.
std::vector<uint8_t> ReadFileBytes(const std::string& path, uint64_t max_size);

}  // namespace rove::loader
