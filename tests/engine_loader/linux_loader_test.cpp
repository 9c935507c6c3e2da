#include "rove/engine/loader/linux_loader.h"

#include <gtest/gtest.h>

#include "loader_test_util.h"
#include "rove/engine/loader/boot_layout.h"
#include "rove/engine/loader/load_error.h"

namespace rove::loader {
namespace {

using namespace rove::loader::testing;
namespace bp = boot_params;

// Expects LoadLinux to throw a LoadError whose message contains `needle`.
void ExpectLoadError(GuestMemory& mem, const Bytes& kernel, const Bytes& initrd,
                     const LinuxBootOptions& o, const std::string& needle) {
  auto cpu = GarbageCpu();
  try {
    LoadLinux(mem, *cpu, kernel, initrd, o);
    ADD_FAILURE() << "no error; expected one mentioning \"" << needle << "\"";
  } catch (const LoadError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line: " << e.what();
  }
}

class LinuxLoaderTest : public ::testing::Test {
 protected:
  std::unique_ptr<GuestMemory> mem_ = GuestMemory::Create(64 * kMiB);
  std::unique_ptr<CpuState> cpu_ = GarbageCpu();
};

TEST_F(LinuxLoaderTest, RecognisesBzImage) {
  EXPECT_TRUE(IsBzImage(MakeBzImage()));
  Bytes no_magic = MakeBzImage();
  no_magic[bp::kHeader] = 'X';
  EXPECT_FALSE(IsBzImage(no_magic));
  Bytes no_flag = MakeBzImage();
  no_flag[bp::kBootFlag] = 0;
  EXPECT_FALSE(IsBzImage(no_flag));
  EXPECT_FALSE(IsBzImage(Bytes(0x205, 0)));
  EXPECT_FALSE(IsBzImage({}));
}

TEST_F(LinuxLoaderTest, SyntheticKernel64BitEntry) {
  BzImageSpec spec;
  Bytes kernel = MakeBzImage(spec);
  Bytes initrd(3 * kMiB + 123);
  for (size_t i = 0; i < initrd.size(); ++i) initrd[i] = static_cast<uint8_t>(i ^ (i >> 8));
  LinuxBootOptions o;
  o.cmdline = "console=ttyS0 earlyprintk=serial panic=-1";
  o.acpi_rsdp = 0xE0000;
  LoadResult r = LoadLinux(*mem_, *cpu_, kernel, initrd, o);

  EXPECT_EQ(r.format, KernelFormat::kLinuxBzImage);
  EXPECT_EQ(r.entry, 0x100200u);
  EXPECT_EQ(r.rsdp, 0xE0000u);
  EXPECT_NE(r.summary.find("9.9.9-synthetic"), std::string::npos) << r.summary;
  EXPECT_NE(r.summary.find("2.15"), std::string::npos) << r.summary;

  // Kernel bytes at 1 MiB.
  const size_t setup = (spec.setup_sects + 1) * 512;
  EXPECT_EQ(ReadGuest(*mem_, 0x100000, spec.pm_size), Bytes(kernel.begin() + setup, kernel.end()));

  // Zero page.
  const uint64_t zp = kZeroPageAddr;
  EXPECT_EQ(GuestGet<uint8_t>(*mem_, zp + bp::kTypeOfLoader), 0xFF);
  EXPECT_EQ(GuestGet<uint8_t>(*mem_, zp + bp::kLoadFlags), 0x81);  // LOADED_HIGH | CAN_USE_HEAP
  EXPECT_EQ(GuestGet<uint16_t>(*mem_, zp + bp::kHeapEndPtr), 0xFE00);
  EXPECT_EQ(GuestGet<uint16_t>(*mem_, zp + bp::kBootFlag), 0xAA55);
  EXPECT_EQ(GuestGet<uint32_t>(*mem_, zp + bp::kHeader), 0x53726448u);  // "HdrS"
  EXPECT_EQ(GuestGet<uint16_t>(*mem_, zp + bp::kVersion), 0x020F);
  EXPECT_EQ(GuestGet<uint32_t>(*mem_, zp + bp::kCode32Start), 0x100000u);
  EXPECT_EQ(GuestGet<uint64_t>(*mem_, zp + bp::kPrefAddress), 16 * kMiB);
  EXPECT_EQ(GuestGet<uint64_t>(*mem_, zp + bp::kAcpiRsdpAddr), 0xE0000u);
  EXPECT_EQ(GuestGet<uint32_t>(*mem_, zp + bp::kAltMemK), 63u * 1024);
  // Nothing below the setup header but what the loader filled in.
  EXPECT_EQ(GuestGet<uint8_t>(*mem_, zp + 0x1EF), 0) << "sentinel";
  EXPECT_EQ(GuestGet<uint64_t>(*mem_, zp), 0u) << "screen_info";

  // Command line.
  const uint32_t cmd = GuestGet<uint32_t>(*mem_, zp + bp::kCmdLinePtr);
  EXPECT_EQ(cmd, kCmdlineAddr);
  EXPECT_EQ(GuestString(*mem_, cmd), o.cmdline);

  // Initrd: page aligned, at the top of RAM, intact.
  const uint32_t rd = GuestGet<uint32_t>(*mem_, zp + bp::kRamdiskImage);
  EXPECT_EQ(GuestGet<uint32_t>(*mem_, zp + bp::kRamdiskSize), initrd.size());
  EXPECT_EQ(rd % 4096, 0u);
  EXPECT_EQ(rd, (64 * kMiB - initrd.size()) & ~0xFFFull);
  EXPECT_GE(rd, 16 * kMiB + spec.init_size) << "above the decompression buffer";
  EXPECT_EQ(ReadGuest(*mem_, rd, initrd.size()), initrd);

  // e820 = the PC memory map.
  MemoryMap expected = BuildPcMemoryMap(64 * kMiB);
  EXPECT_EQ(r.memory_map, expected);
  ASSERT_EQ(GuestGet<uint8_t>(*mem_, zp + bp::kE820Entries), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const uint64_t e = zp + bp::kE820Table + i * 20;
    EXPECT_EQ(GuestGet<uint64_t>(*mem_, e), expected[i].base) << i;
    EXPECT_EQ(GuestGet<uint64_t>(*mem_, e + 8), expected[i].size) << i;
    EXPECT_EQ(GuestGet<uint32_t>(*mem_, e + 16), static_cast<uint32_t>(expected[i].type)) << i;
  }

  // vCPU: long mode, flat boot segments, RSI = zero page, interrupts off.
  const CpuState& c = *cpu_;
  EXPECT_EQ(c.rip, 0x100200u);
  EXPECT_EQ(c.gpr[kRsi], kZeroPageAddr);
  EXPECT_EQ(c.gpr[kRax], 0u);
  EXPECT_EQ(c.gpr[kRbx], 0u);
  EXPECT_EQ(c.rflags, 0x2u);
  EXPECT_TRUE(c.cr0 & cr0::kPe);
  EXPECT_TRUE(c.cr0 & cr0::kPg);
  EXPECT_TRUE(c.cr4 & cr4::kPae);
  EXPECT_EQ(c.efer & (efer::kLme | efer::kLma), efer::kLme | efer::kLma);
  EXPECT_TRUE(c.long_mode_active());
  EXPECT_TRUE(c.code64());
  EXPECT_EQ(c.code_bits(), 64);
  EXPECT_EQ(c.seg[kCs].selector, 0x10);
  for (SegReg s : {kDs, kEs, SegReg::kSs}) {
    EXPECT_EQ(c.seg[s].selector, 0x18);
    EXPECT_EQ(c.seg[s].base, 0u);
    EXPECT_EQ(c.seg[s].limit, 0xFFFFFFFFu);
  }
  EXPECT_EQ(c.cpl(), 0);
  EXPECT_EQ(c.gdtr.base, kBootGdtAddr);
  EXPECT_EQ(c.gdtr.limit, 0x1Fu);
  // GDT descriptors match the segment caches: 0x10 64-bit code, 0x18 data.
  const uint64_t code = GuestGet<uint64_t>(*mem_, kBootGdtAddr + 0x10);
  const uint64_t data = GuestGet<uint64_t>(*mem_, kBootGdtAddr + 0x18);
  EXPECT_TRUE(code & (1ull << 53)) << "L";
  EXPECT_TRUE(code & (1ull << 43)) << "code";
  EXPECT_TRUE(code & (1ull << 47)) << "present";
  EXPECT_FALSE(data & (1ull << 43)) << "data";
  EXPECT_TRUE(data & (1ull << 41)) << "writable";

  // Identity map over the first 4 GiB.
  for (uint64_t va : {0x0ull, 0x7000ull, 0x100200ull, 0x3FFFFFFull, 0xBFFFF000ull, 0xFEE00000ull,
                      0xFFFFFFFFull}) {
    EXPECT_EQ(Translate(*mem_, c.cr3, va), va) << std::hex << va;
  }
  EXPECT_EQ(c.cr3, kPageTablesAddr);
}

TEST_F(LinuxLoaderTest, ThirtyTwoBitEntry) {
  LinuxBootOptions o;
  o.entry = LinuxEntry::k32Bit;
  LoadResult r = LoadLinux(*mem_, *cpu_, MakeBzImage(), {}, o);
  const CpuState& c = *cpu_;
  EXPECT_EQ(r.entry, 0x100000u);
  EXPECT_EQ(c.rip, 0x100000u);
  EXPECT_EQ(c.gpr[kRsi], kZeroPageAddr);
  EXPECT_EQ(c.gpr[kRbp], 0u);
  EXPECT_EQ(c.gpr[kRdi], 0u);
  EXPECT_EQ(c.gpr[kRbx], 0u);
  EXPECT_TRUE(c.protected_mode());
  EXPECT_FALSE(c.cr0 & cr0::kPg);
  EXPECT_FALSE(c.long_mode_active());
  EXPECT_EQ(c.code_bits(), 32);
  EXPECT_EQ(c.seg[kCs].selector, 0x10);
  EXPECT_EQ(c.seg[kDs].selector, 0x18);
  EXPECT_FALSE(c.rflags & rflags::kIf);
  const uint64_t code = GuestGet<uint64_t>(*mem_, kBootGdtAddr + 0x10);
  EXPECT_TRUE(code & (1ull << 54)) << "D";
  EXPECT_FALSE(code & (1ull << 53)) << "L";
  // No initrd: ramdisk fields zero.
  EXPECT_EQ(GuestGet<uint32_t>(*mem_, kZeroPageAddr + bp::kRamdiskImage), 0u);
  EXPECT_EQ(GuestGet<uint32_t>(*mem_, kZeroPageAddr + bp::kRamdiskSize), 0u);
}

TEST_F(LinuxLoaderTest, PreferredAndExplicitLoadAddress) {
  LinuxBootOptions o;
  o.use_preferred_address = true;
  LoadResult r = LoadLinux(*mem_, *cpu_, MakeBzImage(), {}, o);
  EXPECT_EQ(r.entry, 16 * kMiB + 0x200);
  EXPECT_EQ(GuestGet<uint32_t>(*mem_, kZeroPageAddr + bp::kCode32Start), 16 * kMiB);
  o.use_preferred_address = false;
  o.load_address = 4 * kMiB;
  r = LoadLinux(*mem_, *cpu_, MakeBzImage(), {}, o);
  EXPECT_EQ(r.entry, 4 * kMiB + 0x200);
  o.load_address = 0x80000;
  ExpectLoadError(*mem_, MakeBzImage(), {}, o, "below 1 MiB");
  BzImageSpec fixed;
  fixed.relocatable = 0;
  o.load_address = 4 * kMiB;
  ExpectLoadError(*mem_, MakeBzImage(fixed), {}, o, "not relocatable");
}

TEST_F(LinuxLoaderTest, AcpiRsdpOnlyFromProtocol214) {
  BzImageSpec old;
  old.version = 0x020D;
  LinuxBootOptions o;
  o.acpi_rsdp = 0xE0000;
  LoadResult r = LoadLinux(*mem_, *cpu_, MakeBzImage(old), {}, o);
  EXPECT_EQ(r.rsdp, 0u);
  EXPECT_EQ(GuestGet<uint64_t>(*mem_, kZeroPageAddr + bp::kAcpiRsdpAddr), 0u);
}

TEST_F(LinuxLoaderTest, HighRamGuestGetsE820AboveFourGiBAndLargerIdentityMap) {
  auto mem = GuestMemory::Create(kLowRamLimit + 2048 * kMiB);
  LoadLinux(*mem, *cpu_, MakeBzImage(), {}, LinuxBootOptions{});
  ASSERT_EQ(GuestGet<uint8_t>(*mem, kZeroPageAddr + bp::kE820Entries), 4);
  const uint64_t last = kZeroPageAddr + bp::kE820Table + 3 * 20;
  EXPECT_EQ(GuestGet<uint64_t>(*mem, last), kHighRamStart);
  EXPECT_EQ(GuestGet<uint64_t>(*mem, last + 8), 2048 * kMiB);
  EXPECT_EQ(GuestGet<uint32_t>(*mem, last + 16), 1u);
  EXPECT_EQ(Translate(*mem, cpu_->cr3, kHighRamStart + 2047 * kMiB), kHighRamStart + 2047 * kMiB);
  EXPECT_EQ(Translate(*mem, cpu_->cr3, 0x17FFFFFFFull), 0x17FFFFFFFull);
  EXPECT_EQ(Translate(*mem, cpu_->cr3, 0x180000000ull), ~0ull) << "mapped up to the top of RAM";
}

TEST_F(LinuxLoaderTest, CorruptAndTruncatedImagesAreRefused) {
  LinuxBootOptions o;
  ExpectLoadError(*mem_, Bytes(100, 0), {}, o, "not a Linux bzImage");

  BzImageSpec old;
  old.version = 0x0205;
  ExpectLoadError(*mem_, MakeBzImage(old), {}, o, "too old");

  BzImageSpec zimage;
  zimage.loadflags = 0;
  ExpectLoadError(*mem_, MakeBzImage(zimage), {}, o, "zImage");

  BzImageSpec no64;
  no64.xloadflags = 0;
  ExpectLoadError(*mem_, MakeBzImage(no64), {}, o, "no 64-bit entry");
  LinuxBootOptions o32;
  o32.entry = LinuxEntry::k32Bit;
  auto cpu = GarbageCpu();
  EXPECT_NO_THROW(LoadLinux(*mem_, *cpu, MakeBzImage(no64), {}, o32));

  // Cut inside the protected-mode kernel: syssize says more than the file holds.
  Bytes cut = MakeBzImage();
  cut.resize(cut.size() - 4096);
  ExpectLoadError(*mem_, cut, {}, o, "truncated");

  // Cut inside the setup sectors.
  Bytes setup_only = MakeBzImage();
  setup_only.resize(5 * 512);
  ExpectLoadError(*mem_, setup_only, {}, o, "truncated");
  setup_only.resize(0x220);
  ExpectLoadError(*mem_, setup_only, {}, o, "truncated");

  Bytes odd_alignment = MakeBzImage();
  odd_alignment[bp::kKernelAlignment] = 3;
  ExpectLoadError(*mem_, odd_alignment, {}, o, "power of two");

  // setup_sects pointing past the end of the file.
  Bytes many = MakeBzImage();
  many[bp::kSetupSects] = 250;
  ExpectLoadError(*mem_, many, {}, o, "truncated");
}

TEST_F(LinuxLoaderTest, EveryTruncationIsAnErrorNotACrash) {
  const Bytes full = MakeBzImage();
  LinuxBootOptions o;
  for (size_t len = 0; len < full.size(); len += (len < 0x300 ? 1 : 509)) {
    Bytes part(full.begin(), full.begin() + len);
    auto cpu = GarbageCpu();
    EXPECT_THROW(LoadLinux(*mem_, *cpu, part, {}, o), LoadError) << len;
  }
}

TEST_F(LinuxLoaderTest, KernelOrInitrdNotFittingInRam) {
  LinuxBootOptions o;
  BzImageSpec huge;
  huge.init_size = 60 * kMiB;  // 16 MiB + 60 MiB > 64 MiB
  ExpectLoadError(*mem_, MakeBzImage(huge), {}, o, "too small for the kernel");

  Bytes big_initrd(50 * kMiB, 1);
  ExpectLoadError(*mem_, MakeBzImage(), big_initrd, o, "initrd");

  BzImageSpec low_max;
  low_max.initrd_addr_max = 18 * kMiB;
  ExpectLoadError(*mem_, MakeBzImage(low_max), Bytes(kMiB, 1), o, "initrd");

  auto tiny = GuestMemory::Create(kMiB / 2);
  ExpectLoadError(*tiny, MakeBzImage(), {}, o, "no RAM at 1 MiB");
}

TEST_F(LinuxLoaderTest, InitrdRespectsInitrdAddrMax) {
  BzImageSpec spec;
  spec.initrd_addr_max = 40 * kMiB - 1;
  LoadLinux(*mem_, *cpu_, MakeBzImage(spec), Bytes(kMiB, 7), LinuxBootOptions{});
  EXPECT_EQ(GuestGet<uint32_t>(*mem_, kZeroPageAddr + bp::kRamdiskImage), 39 * kMiB);
}

TEST_F(LinuxLoaderTest, CommandLineLimits) {
  BzImageSpec spec;
  spec.cmdline_size = 16;
  LinuxBootOptions o;
  o.cmdline = std::string(16, 'a');
  EXPECT_NO_THROW(LoadLinux(*mem_, *cpu_, MakeBzImage(spec), {}, o));
  o.cmdline = std::string(17, 'a');
  ExpectLoadError(*mem_, MakeBzImage(spec), {}, o, "command line");
  o.cmdline = std::string("a\0b", 3);
  ExpectLoadError(*mem_, MakeBzImage(), {}, o, "NUL");
}

TEST_F(LinuxLoaderTest, TooManyMemoryMapEntries) {
  LinuxBootOptions o;
  for (int i = 0; i < 129; ++i) {
    o.memory_map.push_back({0x100000ull * i, 0x1000, MemoryType::kReserved});
  }
  o.memory_map[1] = {0x100000, 63 * kMiB, MemoryType::kRam};
  ExpectLoadError(*mem_, MakeBzImage(), {}, o, "memory map");
}

// The real acceptance kernel, when scripts/fetch-guest.sh has fetched it.
TEST(LinuxLoaderDebian, StockDebianKernel) {
  const std::string path = DebianKernelPath();
  if (path.empty()) GTEST_SKIP() << "Debian kernel not fetched; run scripts/fetch-guest.sh";
  const Bytes kernel = ReadFile(path);
  ASSERT_TRUE(IsBzImage(kernel));
  auto mem = GuestMemory::Create(256 * kMiB);
  auto cpu = GarbageCpu();
  Bytes initrd(2 * kMiB, 0x5A);
  LinuxBootOptions o;
  o.cmdline = "console=ttyS0 panic=-1";
  o.acpi_rsdp = kAcpiTablesAddr;
  LoadResult r = LoadLinux(*mem, *cpu, kernel, initrd, o);
  EXPECT_NE(r.summary.find("6.1."), std::string::npos) << r.summary;
  EXPECT_EQ(cpu->rip, 0x100200u);
  const uint16_t version = GuestGet<uint16_t>(*mem, kZeroPageAddr + bp::kVersion);
  EXPECT_GE(version, 0x020Cu);
  // The protected-mode kernel (startup_32 at 1 MiB, startup_64 at 1 MiB + 0x200) is in place.
  const size_t setup = (size_t{kernel[bp::kSetupSects]} + 1) * 512;
  EXPECT_EQ(ReadGuest(*mem, 0x100000, 4096),
            Bytes(kernel.begin() + setup, kernel.begin() + setup + 4096));
  const uint64_t tail = kernel.size() - setup - 4096;
  EXPECT_EQ(ReadGuest(*mem, 0x100000 + tail, 4096), Bytes(kernel.end() - 4096, kernel.end()));
  // The initrd lies above pref_address + init_size.
  const uint64_t pref = GuestGet<uint64_t>(*mem, kZeroPageAddr + bp::kPrefAddress);
  const uint32_t init_size = GuestGet<uint32_t>(*mem, kZeroPageAddr + bp::kInitSize);
  const uint32_t rd = GuestGet<uint32_t>(*mem, kZeroPageAddr + bp::kRamdiskImage);
  EXPECT_GE(rd, pref + init_size);
  EXPECT_EQ(rd + initrd.size(), 256 * kMiB);
  EXPECT_EQ(GuestString(*mem, GuestGet<uint32_t>(*mem, kZeroPageAddr + bp::kCmdLinePtr)),
            o.cmdline);

  // Too little RAM for its decompression buffer: a clear error.
  auto small = GuestMemory::Create(48 * kMiB);
  ExpectLoadError(*small, kernel, {}, o, "too small for the kernel");
}

}  // namespace
}  // namespace rove::loader
