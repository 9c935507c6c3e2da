// Linux x86 boot protocol loader (bzImage, protocol 2.06+).
#include "rove/engine/loader/linux_loader.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "bytes.h"
#include "cpu_setup.h"
#include "guest_writer.h"
#include "rove/engine/loader/boot_layout.h"
#include "rove/engine/loader/load_error.h"
#include "rove/mmu/guest_memory.h"
#include "rove/translator/cpu_state.h"

namespace rove::loader {
namespace {

namespace bp = boot_params;
using detail::AlignDown;
using detail::AlignUp;
using detail::ByteReader;
using detail::CheckedEnd;

constexpr uint16_t kMinVersion = 0x0206;       // cmdline_size
constexpr uint16_t kVersion64Bit = 0x020C;     // xloadflags
constexpr uint16_t kVersionInitSize = 0x020A;  // pref_address, init_size
constexpr uint16_t kVersionRsdp = 0x020E;      // boot_params.acpi_rsdp_addr
constexpr uint32_t kDefaultInitrdAddrMax = 0x37FFFFFF;
constexpr uint64_t kOneMiB = 0x100000;
constexpr uint64_t k64BitEntryOffset = 0x200;

std::string VersionString(uint16_t v) {
  return fmt::format("{}.{:02}", v >> 8, v & 0xFF);
}

// The kernel's version string, if the header points at a printable one inside the setup code.
std::string KernelVersionString(const ByteReader& r, uint64_t setup_size) {
  uint16_t ptr = r.U16(bp::kKernelVersion);
  if (ptr == 0) return {};
  uint64_t off = uint64_t{ptr} + 0x200;
  std::string s;
  for (uint64_t i = off; i < setup_size && r.Has(i, 1) && s.size() < 128; ++i) {
    char c = static_cast<char>(r.U8(i));
    if (c == 0) return s;
    if (c < 0x20 || c > 0x7E) return {};
    s.push_back(c);
  }
  return {};
}

}  // namespace

bool IsBzImage(std::span<const uint8_t> image) {
  if (image.size() < bp::kHeader + 4) return false;
  uint16_t flag = static_cast<uint16_t>(image[bp::kBootFlag] | (image[bp::kBootFlag + 1] << 8));
  return flag == 0xAA55 && std::memcmp(image.data() + bp::kHeader, "HdrS", 4) == 0;
}

LoadResult LoadLinux(GuestMemory& memory, CpuState& cpu, std::span<const uint8_t> kernel,
                     std::span<const uint8_t> initrd, const LinuxBootOptions& options) {
  if (!IsBzImage(kernel)) {
    throw LoadError("not a Linux bzImage: no boot-protocol header (0xAA55 and \"HdrS\")");
  }
  ByteReader r(kernel, "bzImage");
  const uint16_t version = r.U16(bp::kVersion, "the protocol version");
  if (version < kMinVersion) {
    throw LoadError(fmt::format("bzImage boot protocol {} is too old (rove needs {} or later)",
                                VersionString(version), VersionString(kMinVersion)));
  }
  const uint8_t loadflags = r.U8(bp::kLoadFlags);
  if (!(loadflags & bp::kLoadedHigh)) {
    throw LoadError("kernel is a zImage (loaded below 1 MiB); only bzImage kernels are supported");
  }
  uint64_t setup_sects = r.U8(bp::kSetupSects);
  if (setup_sects == 0) setup_sects = 4;
  const uint64_t setup_size = (setup_sects + 1) * 512;
  if (setup_size >= kernel.size()) {
    throw LoadError(fmt::format(
        "bzImage is truncated: {} setup sectors ({} bytes) leave no protected-mode kernel in a "
        "{}-byte file",
        setup_sects, setup_size, kernel.size()));
  }
  const uint64_t header_end =
      std::min<uint64_t>(bp::kJump + 2 + r.U8(bp::kJump + 1), bp::kHeaderEndLimit);
  r.Require(bp::kSetupSects, header_end - bp::kSetupSects, "the setup header");
  if (header_end > setup_size) {
    throw LoadError("bzImage setup header extends past its setup sectors");
  }

  const uint64_t pm_offset = setup_size;
  const uint64_t pm_size = kernel.size() - pm_offset;
  const uint64_t syssize = uint64_t{r.U32(0x1F4)} * 16;
  if (syssize > pm_size) {
    throw LoadError(fmt::format(
        "bzImage is truncated: the header says {} bytes of protected-mode kernel, the file has {}",
        syssize, pm_size));
  }
  const uint16_t xloadflags = version >= kVersion64Bit ? r.U16(bp::kXloadflags) : 0;
  if (options.entry == LinuxEntry::k64Bit && !(xloadflags & bp::kXlfKernel64)) {
    throw LoadError(fmt::format(
        "kernel has no 64-bit entry point (boot protocol {}, xloadflags {:#x}); use the 32-bit "
        "entry",
        VersionString(version), xloadflags));
  }
  const bool relocatable = r.U8(bp::kRelocatableKernel) != 0;
  const uint32_t code32_start = r.U32(bp::kCode32Start);
  const uint64_t alignment = std::max<uint64_t>(r.U32(bp::kKernelAlignment), 1);
  if (relocatable && (alignment & (alignment - 1)) != 0) {
    throw LoadError(fmt::format("bzImage kernel_alignment {:#x} is not a power of two", alignment));
  }
  const uint64_t pref_address = version >= kVersionInitSize ? r.U64(bp::kPrefAddress) : 0;
  const uint64_t init_size = version >= kVersionInitSize ? r.U32(bp::kInitSize) : 0;
  const uint64_t cmdline_size = r.U32(bp::kCmdlineSize);
  uint64_t initrd_addr_max = r.U32(bp::kInitrdAddrMax);
  if (initrd_addr_max == 0) initrd_addr_max = kDefaultInitrdAddrMax;

  // Where the kernel goes.
  uint64_t load = kLinuxLoadAddr;
  if (options.load_address) {
    load = *options.load_address;
  } else if (options.use_preferred_address && relocatable && pref_address != 0) {
    load = pref_address;
  }
  if (load < kOneMiB) {
    throw LoadError(fmt::format("kernel load address {:#x} is below 1 MiB", load));
  }
  // A relocatable kernel loaded off its alignment realigns itself while decompressing.
  if (!relocatable && load != code32_start) {
    throw LoadError(fmt::format("kernel is not relocatable and must be loaded at {:#x}, not {:#x}",
                                code32_start, load));
  }

  MemoryMap map =
      options.memory_map.empty() ? BuildPcMemoryMap(memory.ram_size()) : options.memory_map;
  if (map.size() > bp::kE820MaxEntries) {
    throw LoadError(fmt::format("memory map has {} entries; the zero page holds at most {}",
                                map.size(), bp::kE820MaxEntries));
  }
  const uint64_t low_end = LowRamEnd(map);
  if (low_end == 0) throw LoadError("memory map has no RAM at 1 MiB");

  // Memory the kernel needs: its image and init_size from the load address, and the buffer it
  // decompresses into: init_size bytes at max(load address aligned to kernel_alignment,
  // pref_address) (a kernel that is not relocatable always decompresses at pref_address).
  const uint64_t image_end = CheckedEnd(load, std::max(init_size, pm_size), "kernel");
  uint64_t kernel_end = image_end;
  if (init_size != 0) {
    const uint64_t decompress_at =
        std::max(relocatable ? AlignUp(load, alignment) : load, pref_address);
    kernel_end = std::max(kernel_end, CheckedEnd(decompress_at, init_size, "kernel"));
  }
  if (kernel_end > low_end) {
    throw LoadError(fmt::format(
        "guest RAM is too small for the kernel: it needs [{:#x}, {:#x}) ({} MiB), RAM below the "
        "PCI hole ends at {:#x}",
        load, kernel_end, (kernel_end + (1 << 20) - 1) >> 20, low_end));
  }

  // Command line.
  if (options.cmdline.find('\0') != std::string::npos) {
    throw LoadError("kernel command line contains a NUL byte");
  }
  if (options.cmdline.size() > cmdline_size || options.cmdline.size() + 1 > kCmdlineMax) {
    throw LoadError(fmt::format("kernel command line is {} bytes; this kernel accepts at most {}",
                                options.cmdline.size(), std::min(cmdline_size, kCmdlineMax - 1)));
  }

  // Initrd: as high as possible below initrd_addr_max and the end of low RAM, page aligned,
  // above everything the kernel needs.
  uint64_t initrd_addr = 0;
  if (!initrd.empty()) {
    const uint64_t limit = std::min(initrd_addr_max + 1, low_end);
    if (initrd.size() > limit || AlignDown(limit - initrd.size(), kPageSize) < kernel_end) {
      throw LoadError(fmt::format(
          "initrd of {} bytes does not fit in guest RAM between the kernel's end {:#x} and {:#x}",
          initrd.size(), kernel_end, limit));
    }
    initrd_addr = AlignDown(limit - initrd.size(), kPageSize);
  }

  detail::GuestWriter writer(memory);

  // Zero page.
  detail::ByteBuffer zp(kPageSize);
  zp.PutBytes(bp::kSetupSects, r.Slice(bp::kSetupSects, header_end - bp::kSetupSects, "header"));
  zp.Put8(bp::kTypeOfLoader, bp::kLoaderTypeUndefined);
  zp.Put8(bp::kLoadFlags, loadflags | bp::kCanUseHeap);
  zp.Put16(bp::kHeapEndPtr, bp::kHeapEnd);
  zp.Put32(bp::kCode32Start, static_cast<uint32_t>(load));
  zp.Put32(bp::kRamdiskImage, static_cast<uint32_t>(initrd_addr));
  zp.Put32(bp::kRamdiskSize, static_cast<uint32_t>(initrd.size()));
  zp.Put32(bp::kCmdLinePtr, static_cast<uint32_t>(kCmdlineAddr));
  zp.Put64(bp::kSetupData, 0);  // no setup_data list
  zp.Put32(bp::kAltMemK,
           static_cast<uint32_t>(std::min<uint64_t>((low_end - kOneMiB) >> 10, UINT32_MAX)));
  zp.Put8(bp::kE820Entries, static_cast<uint8_t>(map.size()));
  for (size_t i = 0; i < map.size(); ++i) {
    const size_t o = bp::kE820Table + i * bp::kE820EntrySize;
    zp.Put64(o, map[i].base);
    zp.Put64(o + 8, map[i].size);
    zp.Put32(o + 16, static_cast<uint32_t>(map[i].type));
  }
  const bool report_rsdp = options.acpi_rsdp != 0 && version >= kVersionRsdp;
  if (report_rsdp) zp.Put64(bp::kAcpiRsdpAddr, options.acpi_rsdp);
  writer.Write("zero page", kZeroPageAddr, zp.span());

  std::vector<uint8_t> cmdline(options.cmdline.begin(), options.cmdline.end());
  cmdline.push_back(0);
  writer.Write("command line", kCmdlineAddr, cmdline);

  writer.Write("kernel", load, kernel.subspan(pm_offset));
  if (!initrd.empty()) writer.Write("initrd", initrd_addr, initrd);

  detail::ClearRegisters(cpu);
  uint64_t entry;
  if (options.entry == LinuxEntry::k64Bit) {
    detail::WriteBootGdt(writer, /*long_mode=*/true);
    const uint64_t cr3 = detail::WriteIdentityPageTables(writer, TopOfRam(map));
    detail::SetLongMode(cpu, cr3);
    entry = load + k64BitEntryOffset;
  } else {
    detail::WriteBootGdt(writer, /*long_mode=*/false);
    detail::SetProtectedMode32(cpu);
    entry = load;
  }
  cpu.gpr[kRsi] = kZeroPageAddr;
  cpu.gpr[kRsp] = kBootStackTop;
  cpu.rip = entry;

  LoadResult result;
  result.format = KernelFormat::kLinuxBzImage;
  result.entry = entry;
  result.ranges = std::move(writer.ranges());
  result.memory_map = std::move(map);
  result.rsdp = report_rsdp ? options.acpi_rsdp : 0;
  std::string kver = KernelVersionString(r, setup_size);
  result.summary = fmt::format(
      "Linux bzImage{}{}, boot protocol {}, {}-bit entry at {:#x}, kernel {:#x}+{:#x}{}, "
      "command line {} bytes",
      kver.empty() ? "" : " ", kver, VersionString(version),
      options.entry == LinuxEntry::k64Bit ? 64 : 32, entry, load, pm_size,
      initrd.empty() ? std::string()
                     : fmt::format(", initrd {:#x}+{:#x}", initrd_addr, initrd.size()),
      options.cmdline.size());
  return result;
}

}  // namespace rove::loader
