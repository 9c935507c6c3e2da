// Raw flat binaries for tests: copied to an address, entered in real, protected or long mode.
#include "rove/engine/loader/raw_loader.h"

#include <fmt/format.h>

#include "bytes.h"
#include "cpu_setup.h"
#include "guest_writer.h"
#include "rove/engine/loader/boot_layout.h"
#include "rove/engine/loader/load_error.h"
#include "rove/engine/loader/memory_map.h"
#include "rove/mmu/guest_memory.h"
#include "rove/translator/cpu_state.h"

namespace rove::loader {
namespace {

using detail::CheckedEnd;
using detail::Overlaps;

constexpr uint64_t kRealModeLimit = 0x100000;

}  // namespace

LoadResult LoadRawBinary(GuestMemory& memory, CpuState& cpu, std::span<const uint8_t> image,
                         const RawBinaryOptions& options) {
  if (image.empty()) throw LoadError("raw binary is empty");
  const uint64_t load = options.load_address;
  const uint64_t end = CheckedEnd(load, image.size(), "raw binary");

  // What the chosen mode makes the loader write besides the binary.
  struct Area {
    const char* name;
    uint64_t base, end;
  };
  std::vector<Area> areas;
  const uint64_t top_of_ram = TopOfRam(BuildPcMemoryMap(memory.ram_size()));
  if (options.mode != EntryMode::kReal16) {
    areas.push_back({"boot GDT", kBootGdtAddr, kBootGdtAddr + kBootGdtSize});
  }
  if (options.mode == EntryMode::kLong64) {
    areas.push_back({"page tables", kPageTablesAddr,
                     kPageTablesAddr + detail::IdentityPageTablesSize(top_of_ram)});
  }
  for (const Area& a : areas) {
    if (Overlaps(load, end, a.base, a.end)) {
      throw LoadError(
          fmt::format("raw binary [{:#x}, {:#x}) overlaps the loader's {} [{:#x}, {:#x})", load,
                      end, a.name, a.base, a.end));
    }
  }

  uint16_t cs = 0;
  uint64_t ip = options.entry;
  switch (options.mode) {
    case EntryMode::kReal16:
      if (options.real_mode_cs) {
        cs = *options.real_mode_cs;
        if (options.entry < uint64_t{cs} * 16 || options.entry - uint64_t{cs} * 16 > 0xFFFF) {
          throw LoadError(fmt::format("real-mode entry {:#x} is not reachable from CS {:#06x}",
                                      options.entry, cs));
        }
        ip = options.entry - uint64_t{cs} * 16;
      } else {
        if (options.entry >= kRealModeLimit) {
          throw LoadError(fmt::format("real-mode entry {:#x} is above 1 MiB", options.entry));
        }
        cs = static_cast<uint16_t>((options.entry >> 4) & 0xF000);
        ip = options.entry & 0xFFFF;
      }
      break;
    case EntryMode::kProtected32:
      if (options.entry > 0xFFFFFFFF) {
        throw LoadError(fmt::format("32-bit entry {:#x} is above 4 GiB", options.entry));
      }
      break;
    case EntryMode::kLong64:
      break;
  }

  detail::GuestWriter writer(memory);
  writer.Write("raw binary", load, image);
  detail::ClearRegisters(cpu);
  const char* mode = "";
  switch (options.mode) {
    case EntryMode::kReal16:
      detail::SetRealMode(cpu, cs);
      mode = "real mode";
      break;
    case EntryMode::kProtected32:
      detail::WriteBootGdt(writer, /*long_mode=*/false);
      detail::SetProtectedMode32(cpu);
      mode = "32-bit protected mode";
      break;
    case EntryMode::kLong64: {
      detail::WriteBootGdt(writer, /*long_mode=*/true);
      const uint64_t cr3 = detail::WriteIdentityPageTables(writer, top_of_ram);
      detail::SetLongMode(cpu, cr3);
      mode = "64-bit long mode";
      break;
    }
  }
  cpu.rip = ip;
  cpu.gpr[kRsp] = options.stack_pointer;

  LoadResult result;
  result.format = KernelFormat::kRawBinary;
  result.entry = options.entry;
  result.ranges = std::move(writer.ranges());
  result.summary = fmt::format("raw binary {:#x}+{:#x}, {} entry at {:#x}", load, image.size(),
                               mode, options.entry);
  return result;
}

}  // namespace rove::loader
