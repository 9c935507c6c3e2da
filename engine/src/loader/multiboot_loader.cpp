// Multiboot v1 loader: ELF32/ELF64 kernels and a.out-kludge (flag 16) images.
#include "rove/engine/loader/multiboot_loader.h"

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

namespace mbi = multiboot_info;
using detail::AlignUp;
using detail::ByteReader;
using detail::CheckedEnd;
using detail::Overlaps;

constexpr uint32_t kFlagPageAlignModules = 1u << 0;
constexpr uint32_t kFlagMemoryInfo = 1u << 1;
constexpr uint32_t kFlagVideoMode = 1u << 2;
constexpr uint32_t kFlagAddressFields = 1u << 16;
constexpr uint32_t kSupportedRequirements =
    kFlagPageAlignModules | kFlagMemoryInfo | kFlagVideoMode;
constexpr uint64_t k4GiB = 1ull << 32;

// A piece of the kernel image to place in guest memory.
struct Segment {
  uint64_t paddr = 0;
  uint64_t vaddr = 0;
  std::span<const uint8_t> data;
  uint64_t memsz = 0;
};

struct KernelImage {
  KernelFormat format = KernelFormat::kMultibootElf;
  std::vector<Segment> segments;
  uint64_t entry = 0;
};

// ELF constants.
constexpr uint8_t kElfClass32 = 1, kElfClass64 = 2, kElfData2Lsb = 1;
constexpr uint16_t kElfExec = 2, kEm386 = 3, kEmX86_64 = 62;
constexpr uint32_t kPtLoad = 1;

bool IsElf(std::span<const uint8_t> image) {
  return image.size() >= 4 && std::memcmp(image.data(),
                                          "\x7F"
                                          "ELF",
                                          4) == 0;
}

KernelImage ParseElf(const ByteReader& r) {
  const uint8_t cls = r.U8(4, "the ELF identification");
  if (cls != kElfClass32 && cls != kElfClass64) {
    throw LoadError(fmt::format("multiboot ELF kernel has an unknown ELF class {}", cls));
  }
  const bool is64 = cls == kElfClass64;
  if (r.U8(5) != kElfData2Lsb) throw LoadError("multiboot ELF kernel is not little-endian");
  if (r.U8(6) != 1) throw LoadError("multiboot ELF kernel has an unknown ELF version");
  const uint16_t type = r.U16(16, "the ELF header");
  const uint16_t machine = r.U16(18, "the ELF header");
  if (type != kElfExec) {
    throw LoadError(fmt::format("multiboot ELF kernel is not an executable (e_type {})", type));
  }
  if (machine != (is64 ? kEmX86_64 : kEm386)) {
    throw LoadError(
        fmt::format("multiboot ELF{} kernel is for machine {}, not x86", is64 ? 64 : 32, machine));
  }
  KernelImage k;
  k.format = KernelFormat::kMultibootElf;
  uint64_t phoff, phentsize, phnum;
  if (is64) {
    k.entry = r.U64(24, "the ELF header");
    phoff = r.U64(32, "the ELF header");
    phentsize = r.U16(54, "the ELF header");
    phnum = r.U16(56, "the ELF header");
  } else {
    k.entry = r.U32(24, "the ELF header");
    phoff = r.U32(28, "the ELF header");
    phentsize = r.U16(42, "the ELF header");
    phnum = r.U16(44, "the ELF header");
  }
  const uint64_t min_phentsize = is64 ? 56 : 32;
  if (phnum == 0) throw LoadError("multiboot ELF kernel has no program headers");
  if (phentsize < min_phentsize) {
    throw LoadError(fmt::format("multiboot ELF kernel has program headers of {} bytes", phentsize));
  }
  r.Require(phoff, phentsize * phnum, "the ELF program headers");
  for (uint64_t i = 0; i < phnum; ++i) {
    const uint64_t ph = phoff + i * phentsize;
    if (r.U32(ph) != kPtLoad) continue;
    uint64_t offset, vaddr, paddr, filesz, memsz;
    if (is64) {
      offset = r.U64(ph + 8);
      vaddr = r.U64(ph + 16);
      paddr = r.U64(ph + 24);
      filesz = r.U64(ph + 32);
      memsz = r.U64(ph + 40);
    } else {
      offset = r.U32(ph + 4);
      vaddr = r.U32(ph + 8);
      paddr = r.U32(ph + 12);
      filesz = r.U32(ph + 16);
      memsz = r.U32(ph + 20);
    }
    if (memsz == 0) continue;
    if (filesz > memsz) {
      throw LoadError(fmt::format(
          "multiboot ELF segment {} has a file size {:#x} larger than its memory size {:#x}", i,
          filesz, memsz));
    }
    Segment s;
    s.paddr = paddr;
    s.vaddr = vaddr;
    s.memsz = memsz;
    s.data = r.Slice(offset, filesz, "an ELF segment");
    k.segments.push_back(s);
  }
  if (k.segments.empty()) throw LoadError("multiboot ELF kernel has no loadable segments");
  // Like other multiboot loaders, translate a virtual entry point that lies in a segment.
  for (const Segment& s : k.segments) {
    if (k.entry >= s.vaddr && k.entry - s.vaddr < s.memsz) {
      k.entry = k.entry - s.vaddr + s.paddr;
      break;
    }
  }
  return k;
}

KernelImage ParseAout(const ByteReader& r, const MultibootHeader& h) {
  if (h.load_addr > h.header_addr) {
    throw LoadError(fmt::format("multiboot header_addr {:#x} is below load_addr {:#x}",
                                h.header_addr, h.load_addr));
  }
  const uint64_t header_delta = h.header_addr - h.load_addr;
  if (header_delta > h.offset) {
    throw LoadError(
        fmt::format("multiboot header at file offset {:#x} cannot be {:#x} bytes after load_addr",
                    h.offset, header_delta));
  }
  const uint64_t file_offset = h.offset - header_delta;
  uint64_t load_size;
  if (h.load_end_addr == 0) {
    load_size = r.size() - file_offset;
  } else {
    if (h.load_end_addr <= h.load_addr) {
      throw LoadError(fmt::format("multiboot load_end_addr {:#x} is not above load_addr {:#x}",
                                  h.load_end_addr, h.load_addr));
    }
    load_size = h.load_end_addr - h.load_addr;
  }
  uint64_t mem_size = load_size;
  if (h.bss_end_addr != 0) {
    if (h.bss_end_addr < h.load_addr + load_size) {
      throw LoadError(
          fmt::format("multiboot bss_end_addr {:#x} is below the end of the image {:#x}",
                      h.bss_end_addr, h.load_addr + load_size));
    }
    mem_size = h.bss_end_addr - h.load_addr;
  }
  KernelImage k;
  k.format = KernelFormat::kMultibootAout;
  Segment s;
  s.paddr = s.vaddr = h.load_addr;
  s.data = r.Slice(file_offset, load_size, "the image between load_addr and load_end_addr");
  s.memsz = mem_size;
  k.segments.push_back(s);
  k.entry = h.entry_addr;
  return k;
}

// Allocates space in the multiboot information area.
class InfoArea {
 public:
  uint64_t Alloc(uint64_t size, uint64_t align, const char* what) {
    uint64_t at = AlignUp(next_, align);
    if (at + size > kMultibootInfoEnd) {
      throw LoadError(fmt::format("multiboot information ({}) does not fit in [{:#x}, {:#x})", what,
                                  kMultibootInfoAddr, kMultibootInfoEnd));
    }
    next_ = at + size;
    return at;
  }
  uint64_t AllocString(const std::string& s, const char* what) {
    if (s.find('\0') != std::string::npos) {
      throw LoadError(fmt::format("multiboot {} contains a NUL byte", what));
    }
    uint64_t at = Alloc(s.size() + 1, 1, what);
    buffer_.PutString(at - kMultibootInfoAddr, s);
    buffer_.Put8(at - kMultibootInfoAddr + s.size(), 0);
    return at;
  }
  detail::ByteBuffer& buffer() { return buffer_; }
  uint64_t used() const { return next_ - kMultibootInfoAddr; }

 private:
  uint64_t next_ = kMultibootInfoAddr;
  detail::ByteBuffer buffer_;
};

}  // namespace

std::optional<MultibootHeader> FindMultibootHeader(std::span<const uint8_t> image) {
  ByteReader r(image, "multiboot kernel");
  const uint64_t limit = std::min<uint64_t>(image.size(), kMultibootSearchLimit);
  std::optional<uint64_t> bad_checksum_at;
  for (uint64_t off = 0; off + 12 <= limit; off += 4) {
    if (r.U32(off) != kMultibootHeaderMagic) continue;
    const uint32_t flags = r.U32(off + 4);
    const uint32_t checksum = r.U32(off + 8);
    if (static_cast<uint32_t>(kMultibootHeaderMagic + flags + checksum) != 0) {
      if (!bad_checksum_at) bad_checksum_at = off;
      continue;
    }
    MultibootHeader h;
    h.offset = static_cast<uint32_t>(off);
    h.flags = flags;
    if (h.has_address_fields()) {
      r.Require(off + 12, 20, "the multiboot address fields");
      h.header_addr = r.U32(off + 12);
      h.load_addr = r.U32(off + 16);
      h.load_end_addr = r.U32(off + 20);
      h.bss_end_addr = r.U32(off + 24);
      h.entry_addr = r.U32(off + 28);
    }
    return h;
  }
  if (bad_checksum_at) {
    throw LoadError(
        fmt::format("multiboot header at offset {:#x} has a bad checksum", *bad_checksum_at));
  }
  return std::nullopt;
}

LoadResult LoadMultiboot(GuestMemory& memory, CpuState& cpu, std::span<const uint8_t> image,
                         const MultibootOptions& options) {
  std::optional<MultibootHeader> header = FindMultibootHeader(image);
  if (!header) {
    throw LoadError("not a multiboot kernel: no multiboot header in the first 8192 bytes");
  }
  const uint32_t requirements = header->flags & 0xFFFF;
  if (requirements & ~kSupportedRequirements) {
    throw LoadError(fmt::format("multiboot kernel requires unsupported features (flags {:#x})",
                                requirements & ~kSupportedRequirements));
  }
  ByteReader r(image, "multiboot kernel");
  KernelImage kernel;
  if (header->has_address_fields()) {
    kernel = ParseAout(r, *header);
  } else if (IsElf(image)) {
    kernel = ParseElf(r);
  } else {
    throw LoadError("multiboot kernel is neither ELF nor has the header address fields (flag 16)");
  }

  // Every segment below 4 GiB, in RAM, clear of each other and of the loader's own area.
  uint64_t kernel_end = 0;
  for (size_t i = 0; i < kernel.segments.size(); ++i) {
    const Segment& s = kernel.segments[i];
    const std::string name = fmt::format("kernel segment {}", i);
    const uint64_t end = CheckedEnd(s.paddr, s.memsz, name);
    if (end > k4GiB) {
      throw LoadError(fmt::format("{} [{:#x}, {:#x}) is above 4 GiB", name, s.paddr, end));
    }
    if (Overlaps(s.paddr, end, kBootGdtAddr, kMultibootInfoEnd)) {
      throw LoadError(
          fmt::format("{} [{:#x}, {:#x}) overlaps the loader's boot area [{:#x}, {:#x})", name,
                      s.paddr, end, kBootGdtAddr, kMultibootInfoEnd));
    }
    for (size_t j = 0; j < i; ++j) {
      const Segment& o = kernel.segments[j];
      if (Overlaps(s.paddr, end, o.paddr, o.paddr + o.memsz)) {
        throw LoadError(fmt::format("multiboot kernel segments {} and {} overlap", j, i));
      }
    }
    kernel_end = std::max(kernel_end, end);
  }
  bool entry_ok = false;
  for (const Segment& s : kernel.segments) {
    if (kernel.entry >= s.paddr && kernel.entry - s.paddr < s.memsz) entry_ok = true;
  }
  if (!entry_ok) {
    throw LoadError(
        fmt::format("multiboot entry point {:#x} is outside the loaded kernel", kernel.entry));
  }

  MemoryMap map =
      options.memory_map.empty() ? BuildPcMemoryMap(memory.ram_size()) : options.memory_map;

  detail::GuestWriter writer(memory);
  for (size_t i = 0; i < kernel.segments.size(); ++i) {
    const Segment& s = kernel.segments[i];
    writer.Write(fmt::format("kernel segment {}", i), s.paddr, s.data, s.memsz);
  }

  // Modules, page aligned after the kernel.
  InfoArea info;
  info.Alloc(mbi::kSize, 4, "the information structure");
  detail::ByteBuffer& b = info.buffer();
  auto at = [](uint64_t gpa) { return static_cast<size_t>(gpa - kMultibootInfoAddr); };
  uint32_t flags = mbi::kFlagMem | mbi::kFlagCmdline | mbi::kFlagMods | mbi::kFlagMmap |
                   mbi::kFlagBootLoaderName;

  const uint64_t low_end = LowRamEnd(map);
  b.Put32(mbi::kMemLower, 640);
  b.Put32(mbi::kMemUpper,
          static_cast<uint32_t>(low_end > (1u << 20) ? (low_end - (1u << 20)) >> 10 : 0));
  b.Put32(mbi::kCmdline, static_cast<uint32_t>(info.AllocString(options.cmdline, "command line")));

  const uint64_t mods = info.Alloc(16 * options.modules.size(), 4, "the module list");
  uint64_t next_module = AlignUp(kernel_end, kPageSize);
  for (size_t i = 0; i < options.modules.size(); ++i) {
    const MultibootModule& m = options.modules[i];
    const std::string name = fmt::format("module {}", i);
    const uint64_t start = next_module;
    const uint64_t end = CheckedEnd(start, m.data.size(), name);
    if (end > k4GiB) throw LoadError(fmt::format("{} does not fit below 4 GiB", name));
    writer.Write(name, start, m.data);
    const uint64_t str = info.AllocString(m.cmdline, "module command line");
    b.Put32(at(mods) + 16 * i, static_cast<uint32_t>(start));
    b.Put32(at(mods) + 16 * i + 4, static_cast<uint32_t>(end));
    b.Put32(at(mods) + 16 * i + 8, static_cast<uint32_t>(str));
    next_module = AlignUp(end, kPageSize);
  }
  b.Put32(mbi::kModsCount, static_cast<uint32_t>(options.modules.size()));
  b.Put32(mbi::kModsAddr, static_cast<uint32_t>(mods));

  const uint64_t mmap = info.Alloc(24 * map.size(), 4, "the memory map");
  for (size_t i = 0; i < map.size(); ++i) {
    const size_t o = at(mmap) + 24 * i;
    b.Put32(o, 20);  // size of the rest of the entry
    b.Put64(o + 4, map[i].base);
    b.Put64(o + 12, map[i].size);
    b.Put32(o + 20, static_cast<uint32_t>(map[i].type));
  }
  b.Put32(mbi::kMmapLength, static_cast<uint32_t>(24 * map.size()));
  b.Put32(mbi::kMmapAddr, static_cast<uint32_t>(mmap));
  b.Put32(mbi::kBootLoaderName,
          static_cast<uint32_t>(info.AllocString(options.boot_loader_name, "boot loader name")));
  b.Put32(mbi::kFlags, flags);
  b.Grow(info.used());
  writer.Write("multiboot information", kMultibootInfoAddr, b.span());

  detail::WriteBootGdt(writer, /*long_mode=*/false);
  detail::ClearRegisters(cpu);
  detail::SetProtectedMode32(cpu);
  cpu.gpr[kRax] = kMultibootBootMagic;
  cpu.gpr[kRbx] = kMultibootInfoAddr;
  cpu.gpr[kRsp] = kBootStackTop;
  cpu.rip = kernel.entry;

  LoadResult result;
  result.format = kernel.format;
  result.entry = kernel.entry;
  result.ranges = std::move(writer.ranges());
  result.memory_map = std::move(map);
  result.summary =
      fmt::format("multiboot {} kernel, {} segment(s) ending at {:#x}, entry {:#x}, {} module(s)",
                  kernel.format == KernelFormat::kMultibootElf ? "ELF" : "a.out-kludge",
                  kernel.segments.size(), kernel_end, kernel.entry, options.modules.size());
  return result;
}

}  // namespace rove::loader
