#include "rove/engine/loader/multiboot_loader.h"

#include <gtest/gtest.h>

#include "loader_test_util.h"
#include "rove/engine/loader/boot_layout.h"
#include "rove/engine/loader/load_error.h"

namespace rove::loader {
namespace {

using namespace rove::loader::testing;
namespace mbi = multiboot_info;

constexpr uint32_t kMagic = 0x1BADB002;

void PutMultibootHeader(Bytes& b, size_t offset, uint32_t flags) {
  Put<uint32_t>(b, offset, kMagic);
  Put<uint32_t>(b, offset + 4, flags);
  Put<uint32_t>(b, offset + 8, static_cast<uint32_t>(-(kMagic + flags)));
}

// ELF32 kernel linked in the higher half and loaded at 1 MiB (p_paddr != p_vaddr):
//   segment 0: file [0x1000, 0x1100) -> 0x100000 (virtual 0xC0100000), text with the header
//   segment 1: file [0x2000, 0x2100) -> 0x200000 (virtual 0xC0200000), memsz 0x3000 (bss)
// Entry 0xC0100010 (virtual) = 0x100010 (physical).
struct ElfSpec {
  uint32_t flags = 0x3;
  uint32_t seg0_paddr = 0x100000;
  uint32_t seg1_paddr = 0x200000;
  uint32_t seg1_memsz = 0x3000;
  uint32_t entry = 0xC0100010;
  uint16_t machine = 3;
};

Bytes MakeElf(const ElfSpec& s = {}) {
  Bytes b(0x2100, 0);
  PutStr(b, 0,
         "\x7F"
         "ELF");
  b[4] = 1;                 // ELFCLASS32
  b[5] = 1;                 // little-endian
  b[6] = 1;                 // EV_CURRENT
  Put<uint16_t>(b, 16, 2);  // ET_EXEC
  Put<uint16_t>(b, 18, s.machine);
  Put<uint32_t>(b, 20, 1);
  Put<uint32_t>(b, 24, s.entry);
  Put<uint32_t>(b, 28, 52);  // e_phoff
  Put<uint16_t>(b, 40, 52);
  Put<uint16_t>(b, 42, 32);
  Put<uint16_t>(b, 44, 3);  // two PT_LOAD and a PT_NOTE
  auto phdr = [&](int i, uint32_t type, uint32_t off, uint32_t vaddr, uint32_t paddr,
                  uint32_t filesz, uint32_t memsz) {
    const size_t p = 52 + 32 * i;
    Put<uint32_t>(b, p, type);
    Put<uint32_t>(b, p + 4, off);
    Put<uint32_t>(b, p + 8, vaddr);
    Put<uint32_t>(b, p + 12, paddr);
    Put<uint32_t>(b, p + 16, filesz);
    Put<uint32_t>(b, p + 20, memsz);
    Put<uint32_t>(b, p + 24, 5);
    Put<uint32_t>(b, p + 28, 0x1000);
  };
  phdr(0, 1, 0x1000, 0xC0100000, s.seg0_paddr, 0x100, 0x100);
  phdr(1, 4, 0x1000, 0, 0, 0x10, 0x10);  // PT_NOTE: ignored
  phdr(2, 1, 0x2000, 0xC0200000, s.seg1_paddr, 0x100, s.seg1_memsz);
  PutMultibootHeader(b, 0x1000, s.flags);
  for (size_t i = 0x1010; i < 0x1100; ++i) b[i] = 0x90;  // nops
  for (size_t i = 0x2000; i < 0x2100; ++i) b[i] = static_cast<uint8_t>(i);
  return b;
}

// a.out-kludge image: header at file offset 0x40, loaded at 0x100000; the file's last 0x100
// bytes lie beyond load_end_addr and are not loaded; bss of 0x2000 follows.
Bytes MakeAout(uint32_t* load_end = nullptr) {
  Bytes b(0x1100, 0);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 3);
  const uint32_t flags = 0x10003;
  PutMultibootHeader(b, 0x40, flags);
  const uint32_t end = 0x100000 + 0x1000;
  Put<uint32_t>(b, 0x4C, 0x100040);      // header_addr
  Put<uint32_t>(b, 0x50, 0x100000);      // load_addr
  Put<uint32_t>(b, 0x54, end);           // load_end_addr
  Put<uint32_t>(b, 0x58, end + 0x2000);  // bss_end_addr
  Put<uint32_t>(b, 0x5C, 0x100080);      // entry_addr
  if (load_end) *load_end = end;
  return b;
}

class MultibootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Garbage in RAM, so zero-filling of bss and info areas is visible.
    Bytes junk(8 * kMiB, 0xCC);
    mem_->Write(0, junk.data(), junk.size());
  }
  void ExpectError(const Bytes& image, const std::string& needle, const MultibootOptions& o = {}) {
    auto cpu = GarbageCpu();
    try {
      LoadMultiboot(*mem_, *cpu, image, o);
      ADD_FAILURE() << "no error; expected one mentioning \"" << needle << "\"";
    } catch (const LoadError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
  uint32_t Info(uint32_t offset) { return GuestGet<uint32_t>(*mem_, kMultibootInfoAddr + offset); }

  std::unique_ptr<GuestMemory> mem_ = GuestMemory::Create(64 * kMiB);
  std::unique_ptr<CpuState> cpu_ = GarbageCpu();
};

TEST_F(MultibootTest, FindsHeader) {
  Bytes elf = MakeElf();
  auto h = FindMultibootHeader(elf);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->offset, 0x1000u);
  EXPECT_EQ(h->flags, 3u);
  EXPECT_FALSE(h->has_address_fields());
  EXPECT_FALSE(FindMultibootHeader(Bytes(9000, 0)));
  // Beyond the first 8192 bytes: not found.
  Bytes far(9000, 0);
  PutMultibootHeader(far, 8192, 0);
  EXPECT_FALSE(FindMultibootHeader(far));
  // Unaligned: not found.
  Bytes odd(100, 0);
  PutMultibootHeader(odd, 6, 0);
  EXPECT_FALSE(FindMultibootHeader(odd));
  // Bad checksum: an error that says so.
  Bytes bad = MakeElf();
  Put<uint32_t>(bad, 0x1008, 0x12345678);
  EXPECT_THROW(FindMultibootHeader(bad), LoadError);
}

TEST_F(MultibootTest, LoadsElfSegmentsAndSetsState) {
  MultibootOptions o;
  o.cmdline = "kernel arg1=x";
  const Bytes elf = MakeElf();
  LoadResult r = LoadMultiboot(*mem_, *cpu_, elf, o);
  EXPECT_EQ(r.format, KernelFormat::kMultibootElf);
  EXPECT_EQ(r.entry, 0x100010u);

  EXPECT_EQ(ReadGuest(*mem_, 0x100000, 0x100), Bytes(elf.begin() + 0x1000, elf.begin() + 0x1100));
  EXPECT_EQ(ReadGuest(*mem_, 0x200000, 0x100), Bytes(elf.begin() + 0x2000, elf.begin() + 0x2100));
  EXPECT_EQ(ReadGuest(*mem_, 0x200100, 0x2F00), Bytes(0x2F00, 0)) << "bss is zeroed";
  EXPECT_EQ(GuestGet<uint8_t>(*mem_, 0x203000), 0xCC) << "nothing past memsz";

  const CpuState& c = *cpu_;
  EXPECT_EQ(c.gpr[kRax], 0x2BADB002u);
  EXPECT_EQ(c.gpr[kRbx], kMultibootInfoAddr);
  EXPECT_EQ(c.rip, 0x100010u);
  EXPECT_TRUE(c.protected_mode());
  EXPECT_FALSE(c.cr0 & cr0::kPg);
  EXPECT_FALSE(c.long_mode_active());
  EXPECT_EQ(c.code_bits(), 32);
  EXPECT_FALSE(c.rflags & rflags::kIf);
  EXPECT_FALSE(c.rflags & rflags::kVm);
  for (SegReg s : {kCs, kDs, kEs, kFs, kGs, SegReg::kSs}) {
    EXPECT_EQ(c.seg[s].base, 0u);
    EXPECT_EQ(c.seg[s].limit, 0xFFFFFFFFu);
  }
  EXPECT_EQ(c.seg[kCs].selector, 0x10);
  EXPECT_EQ(c.seg[kDs].selector, 0x18);

  const uint32_t flags = Info(mbi::kFlags);
  EXPECT_EQ(flags, mbi::kFlagMem | mbi::kFlagCmdline | mbi::kFlagMods | mbi::kFlagMmap |
                       mbi::kFlagBootLoaderName);
  EXPECT_EQ(Info(mbi::kMemLower), 640u);
  EXPECT_EQ(Info(mbi::kMemUpper), 63u * 1024);
  EXPECT_EQ(GuestString(*mem_, Info(mbi::kCmdline)), o.cmdline);
  EXPECT_EQ(GuestString(*mem_, Info(mbi::kBootLoaderName)), "rove");
  EXPECT_EQ(Info(mbi::kModsCount), 0u);
  EXPECT_EQ(Info(12), 0u) << "boot_device is zeroed, not garbage";

  MemoryMap expected = BuildPcMemoryMap(64 * kMiB);
  ASSERT_EQ(Info(mbi::kMmapLength), 24 * expected.size());
  const uint32_t mmap = Info(mbi::kMmapAddr);
  for (size_t i = 0; i < expected.size(); ++i) {
    const uint64_t e = mmap + 24 * i;
    EXPECT_EQ(GuestGet<uint32_t>(*mem_, e), 20u);
    EXPECT_EQ(GuestGet<uint64_t>(*mem_, e + 4), expected[i].base);
    EXPECT_EQ(GuestGet<uint64_t>(*mem_, e + 12), expected[i].size);
    EXPECT_EQ(GuestGet<uint32_t>(*mem_, e + 20), static_cast<uint32_t>(expected[i].type));
  }
}

TEST_F(MultibootTest, ModulesArePageAlignedAfterTheKernel) {
  Bytes a(5000, 0xA1), b(3, 0xB2);
  MultibootOptions o;
  o.modules = {{a, "mod-a --x"}, {b, "mod-b"}};
  LoadMultiboot(*mem_, *cpu_, MakeElf(), o);
  ASSERT_EQ(Info(mbi::kModsCount), 2u);
  const uint32_t mods = Info(mbi::kModsAddr);
  const uint32_t a_start = GuestGet<uint32_t>(*mem_, mods);
  const uint32_t a_end = GuestGet<uint32_t>(*mem_, mods + 4);
  const uint32_t b_start = GuestGet<uint32_t>(*mem_, mods + 16);
  const uint32_t b_end = GuestGet<uint32_t>(*mem_, mods + 20);
  EXPECT_EQ(a_start, 0x203000u) << "first page after the kernel's bss";
  EXPECT_EQ(a_end, a_start + 5000);
  EXPECT_EQ(b_start, 0x205000u);
  EXPECT_EQ(b_end, b_start + 3);
  EXPECT_EQ(ReadGuest(*mem_, a_start, a.size()), a);
  EXPECT_EQ(ReadGuest(*mem_, b_start, b.size()), b);
  EXPECT_EQ(GuestString(*mem_, GuestGet<uint32_t>(*mem_, mods + 8)), "mod-a --x");
  EXPECT_EQ(GuestString(*mem_, GuestGet<uint32_t>(*mem_, mods + 24)), "mod-b");
  EXPECT_EQ(GuestGet<uint32_t>(*mem_, mods + 12), 0u);
}

TEST_F(MultibootTest, ModuleNotFittingInRamIsRefused) {
  Bytes big(62 * kMiB, 1);
  MultibootOptions o;
  o.modules = {{big, "big"}};
  ExpectError(MakeElf(), "does not fit in guest RAM", o);
}

TEST_F(MultibootTest, LoadsAoutKludge) {
  uint32_t load_end;
  const Bytes img = MakeAout(&load_end);
  LoadResult r = LoadMultiboot(*mem_, *cpu_, img, {});
  EXPECT_EQ(r.format, KernelFormat::kMultibootAout);
  EXPECT_EQ(cpu_->rip, 0x100080u);
  EXPECT_EQ(ReadGuest(*mem_, 0x100000, 0x1000), Bytes(img.begin(), img.begin() + 0x1000));
  EXPECT_EQ(ReadGuest(*mem_, load_end, 0x2000), Bytes(0x2000, 0)) << "bss";
  EXPECT_EQ(GuestGet<uint8_t>(*mem_, load_end + 0x2000), 0xCC);
}

TEST_F(MultibootTest, AoutKludgeWholeFileWhenLoadEndIsZero) {
  Bytes img = MakeAout();
  Put<uint32_t>(img, 0x54, 0);  // load_end_addr
  Put<uint32_t>(img, 0x58, 0);  // bss_end_addr
  LoadMultiboot(*mem_, *cpu_, img, {});
  EXPECT_EQ(ReadGuest(*mem_, 0x100000, img.size()), img);
}

TEST_F(MultibootTest, AoutKludgeWinsOverElf) {
  // An ELF whose header has flag 16 is loaded by the address fields.
  Bytes elf = MakeElf();
  PutMultibootHeader(elf, 0x1000, 0x10000);
  Put<uint32_t>(elf, 0x100C, 0x101000);  // header_addr: header at file 0x1000 -> load at 0x100000
  Put<uint32_t>(elf, 0x1010, 0x100000);
  Put<uint32_t>(elf, 0x1014, 0);
  Put<uint32_t>(elf, 0x1018, 0);
  Put<uint32_t>(elf, 0x101C, 0x100000);
  LoadResult r = LoadMultiboot(*mem_, *cpu_, elf, {});
  EXPECT_EQ(r.format, KernelFormat::kMultibootAout);
  EXPECT_EQ(ReadGuest(*mem_, 0x100000, elf.size()), elf);
}

TEST_F(MultibootTest, CorruptImagesAreRefused) {
  ExpectError(Bytes(100, 0), "no multiboot header");
  Bytes bad_sum = MakeElf();
  Put<uint32_t>(bad_sum, 0x1008, 0);
  ExpectError(bad_sum, "bad checksum");

  ElfSpec unsupported;
  unsupported.flags = 0x8;  // requirement bit 3
  ExpectError(MakeElf(unsupported), "unsupported");

  Bytes not_elf = MakeElf();
  not_elf[0] = 0;
  ExpectError(not_elf, "neither ELF");

  Bytes elf64_machine = MakeElf();
  Put<uint16_t>(elf64_machine, 18, 62);
  ExpectError(elf64_machine, "machine");

  Bytes not_exec = MakeElf();
  Put<uint16_t>(not_exec, 16, 3);
  ExpectError(not_exec, "not an executable");

  Bytes filesz = MakeElf();
  Put<uint32_t>(filesz, 52 + 64 + 16, 0x4000);  // segment 1 p_filesz > p_memsz
  ExpectError(filesz, "larger than its memory size");

  Bytes past_eof = MakeElf();
  Put<uint32_t>(past_eof, 52 + 64 + 4, 0x2080);  // segment 1 data runs past the end
  ExpectError(past_eof, "truncated");

  Bytes phdrs_out = MakeElf();
  Put<uint32_t>(phdrs_out, 28, 0x20F0);
  ExpectError(phdrs_out, "truncated");

  Bytes no_load = MakeElf();
  Put<uint32_t>(no_load, 52, 0);
  Put<uint32_t>(no_load, 52 + 64, 0);
  ExpectError(no_load, "no loadable segments");

  ElfSpec outside;
  outside.seg1_paddr = 0x10000000;  // 256 MiB in a 64 MiB guest
  ExpectError(MakeElf(outside), "does not fit in guest RAM");

  ElfSpec in_hole;
  in_hole.seg1_paddr = 0xFEC00000;
  auto big = GuestMemory::Create(kLowRamLimit + kMiB);
  auto cpu = GarbageCpu();
  EXPECT_THROW(LoadMultiboot(*big, *cpu, MakeElf(in_hole), {}), LoadError);

  ElfSpec low;
  low.seg0_paddr = 0x8000;
  ExpectError(MakeElf(low), "boot area");

  ElfSpec overlap;
  overlap.seg1_paddr = 0x100080;
  ExpectError(MakeElf(overlap), "overlap");

  ElfSpec wild_entry;
  wild_entry.entry = 0x300000;
  ExpectError(MakeElf(wild_entry), "entry point");

  Bytes aout = MakeAout();
  Put<uint32_t>(aout, 0x50, 0x100050);  // load_addr above header_addr
  ExpectError(aout, "below load_addr");
  aout = MakeAout();
  Put<uint32_t>(aout, 0x54, 0x0F0000);  // load_end_addr below load_addr
  ExpectError(aout, "load_end_addr");
  aout = MakeAout();
  Put<uint32_t>(aout, 0x54, 0x102000);  // beyond the file
  Put<uint32_t>(aout, 0x58, 0);
  ExpectError(aout, "truncated");
  aout = MakeAout();
  Put<uint32_t>(aout, 0x58, 0x100800);  // bss_end below load_end
  ExpectError(aout, "bss_end_addr");
  aout = MakeAout();
  Put<uint32_t>(aout, 0x4C, 0x200040);  // header_addr - load_addr > header's file offset
  ExpectError(aout, "cannot be");
  aout = MakeAout();
  Put<uint32_t>(aout, 0x4C, 0x100040);
  Put<uint32_t>(aout, 0x5C, 0x400000);
  ExpectError(aout, "entry point");
  // Address fields cut off by the end of the file.
  Bytes cut(0x54, 0);
  PutMultibootHeader(cut, 0x40, 0x10000);
  ExpectError(cut, "truncated");
}

TEST_F(MultibootTest, EveryTruncationIsAnErrorNotACrash) {
  // The a.out image's last 0x100 bytes lie beyond load_end_addr: cuts there are harmless.
  const std::pair<Bytes, size_t> images[] = {{MakeElf(), 0x2100}, {MakeAout(), 0x1000}};
  for (const auto& [full, needed] : images) {
    for (size_t len = 0; len < needed; len += 7) {
      Bytes part(full.begin(), full.begin() + len);
      auto cpu = GarbageCpu();
      try {
        LoadMultiboot(*mem_, *cpu, part, {});
        ADD_FAILURE() << "prefix of " << len << " bytes loaded";
      } catch (const LoadError&) {
      }
    }
  }
}

TEST_F(MultibootTest, InformationAreaOverflowIsAnError) {
  MultibootOptions o;
  o.cmdline = std::string(0x20000, 'x');
  ExpectError(MakeElf(), "does not fit", o);
}

// Kernels built by the real toolchain at test time.
class MultibootToolchainTest : public MultibootTest {
 protected:
  void SetUp() override {
    MultibootTest::SetUp();
    if (!HaveTool("nasm") || !HaveTool("ld")) GTEST_SKIP() << "nasm or ld not installed";
  }
  std::string Build(const std::string& cmd) {
    std::string out;
    int rc = RunCommand("cd " + dir_.path().string() + " && " + cmd, &out);
    EXPECT_EQ(rc, 0) << cmd << "\n" << out;
    return out;
  }
  TempDir dir_;
};

TEST_F(MultibootToolchainTest, NasmLdElfKernel) {
  dir_.WriteText("kernel.asm", R"(
bits 32
section .text
align 4
mb_header:
  dd 0x1BADB002, 0x00000003, -(0x1BADB002 + 0x00000003)
global _start
_start:
  mov esp, stack_top
  mov [saved_magic], eax
  mov [saved_info], ebx
  mov dx, 0xF4
  mov al, 0
  out dx, al
  hlt
section .data
message: db "hello from a multiboot kernel", 0
section .bss
saved_magic: resd 1
saved_info: resd 1
resb 16384
stack_top:
)");
  Build(
      "nasm -f elf32 -o kernel.o kernel.asm && ld -m elf_i386 -Ttext=0x100000 -e _start "
      "-o kernel.elf kernel.o");
  const std::string nm = Build("nm kernel.elf");
  auto sym = [&](const std::string& name) {
    size_t pos = nm.find(" " + name + "\n");
    EXPECT_NE(pos, std::string::npos) << name;
    size_t line = nm.rfind('\n', pos);
    line = line == std::string::npos ? 0 : line + 1;
    return std::stoull(nm.substr(line, pos - line - 2), nullptr, 16);
  };
  const uint64_t start = sym("_start");
  const uint64_t stack_top = sym("stack_top");
  const Bytes elf = ReadFile(dir_.File("kernel.elf"));
  MultibootOptions o;
  o.cmdline = "nasm";
  LoadResult r = LoadMultiboot(*mem_, *cpu_, elf, o);
  EXPECT_EQ(r.format, KernelFormat::kMultibootElf);
  EXPECT_EQ(cpu_->rip, start);
  EXPECT_EQ(GuestGet<uint8_t>(*mem_, start), 0xBC) << "mov esp, imm32";
  EXPECT_EQ(GuestGet<uint32_t>(*mem_, start + 1), stack_top);
  EXPECT_EQ(GuestString(*mem_, sym("message")), "hello from a multiboot kernel");
  EXPECT_EQ(ReadGuest(*mem_, sym("saved_magic"), 8), Bytes(8, 0)) << "bss zeroed";
  EXPECT_EQ(GuestGet<uint32_t>(*mem_, stack_top - 4), 0u);
}

TEST_F(MultibootToolchainTest, NasmFlatAoutKludgeKernel) {
  dir_.WriteText("kernel.asm", R"(
bits 32
org 0x100000
FLAGS equ 0x00010003
header:
  dd 0x1BADB002, FLAGS, -(0x1BADB002 + FLAGS)
  dd header, header, load_end, bss_end, entry
entry:
  mov dword [bss_start], 0x12345678
  hlt
align 16
load_end:
bss_start equ load_end
bss_end equ load_end + 0x4000
)");
  Build("nasm -f bin -o kernel.bin kernel.asm");
  const Bytes img = ReadFile(dir_.File("kernel.bin"));
  ASSERT_GE(img.size(), 32u);
  LoadResult r = LoadMultiboot(*mem_, *cpu_, img, {});
  EXPECT_EQ(r.format, KernelFormat::kMultibootAout);
  EXPECT_EQ(cpu_->rip, 0x100020u);
  EXPECT_EQ(ReadGuest(*mem_, 0x100000, img.size()), img);
  EXPECT_EQ(ReadGuest(*mem_, 0x100000 + img.size(), 0x4000), Bytes(0x4000, 0));
}

}  // namespace
}  // namespace rove::loader
