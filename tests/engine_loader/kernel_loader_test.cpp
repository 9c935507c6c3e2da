#include "rove/engine/loader/kernel_loader.h"

#include <gtest/gtest.h>

#include "loader_test_util.h"
#include "rove/engine/loader/boot_layout.h"
#include "rove/engine/loader/load_error.h"
#include "rove/engine/loader/multiboot_loader.h"

namespace rove::loader {
namespace {

using namespace rove::loader::testing;
namespace bp = boot_params;
namespace mbi = multiboot_info;

Bytes MinimalMultibootAout() {
  Bytes b(0x200, 0x90);
  const uint32_t magic = 0x1BADB002, flags = 0x10000;
  Put<uint32_t>(b, 0, magic);
  Put<uint32_t>(b, 4, flags);
  Put<uint32_t>(b, 8, static_cast<uint32_t>(-(magic + flags)));
  Put<uint32_t>(b, 12, 0x100000);  // header_addr
  Put<uint32_t>(b, 16, 0x100000);  // load_addr
  Put<uint32_t>(b, 20, 0);
  Put<uint32_t>(b, 24, 0);
  Put<uint32_t>(b, 28, 0x100020);  // entry
  return b;
}

class KernelLoaderTest : public ::testing::Test {
 protected:
  std::string Error(const LoadOptions& o) {
    auto cpu = GarbageCpu();
    try {
      LoadKernel(*mem_, *cpu, o);
    } catch (const LoadError& e) {
      std::string what = e.what();
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
      return what;
    }
    ADD_FAILURE() << "no error";
    return {};
  }
  TempDir dir_;
  std::unique_ptr<GuestMemory> mem_ = GuestMemory::Create(64 * kMiB);
  std::unique_ptr<CpuState> cpu_ = GarbageCpu();
};

TEST_F(KernelLoaderTest, RecognisesBzImageAndInstallsAcpi) {
  LoadOptions o;
  o.kernel_path = dir_.Write("bzImage", MakeBzImage());
  o.initrd_path = dir_.Write("initrd", Bytes(12345, 0x42));
  o.cmdline = "console=ttyS0";
  o.acpi = AcpiConfig{};
  o.acpi->cpu_count = 2;
  LoadResult r = LoadKernel(*mem_, *cpu_, o);
  EXPECT_EQ(r.format, KernelFormat::kLinuxBzImage);
  EXPECT_EQ(r.rsdp, kAcpiTablesAddr);
  EXPECT_EQ(GuestGet<uint64_t>(*mem_, kZeroPageAddr + bp::kAcpiRsdpAddr), kAcpiTablesAddr);
  EXPECT_EQ(ReadGuest(*mem_, kAcpiTablesAddr, 8), Bytes({'R', 'S', 'D', ' ', 'P', 'T', 'R', ' '}));
  EXPECT_EQ(GuestGet<uint32_t>(*mem_, kZeroPageAddr + bp::kRamdiskSize), 12345u);
  EXPECT_EQ(cpu_->rip, 0x100200u);
}

TEST_F(KernelLoaderTest, ReservedRangesReachTheE820) {
  LoadOptions o;
  o.kernel_path = dir_.Write("bzImage", MakeBzImage());
  o.reserved = {{0xB0000000, 0x10000000, MemoryType::kReserved}};
  LoadResult r = LoadKernel(*mem_, *cpu_, o);
  ASSERT_EQ(r.memory_map.size(), 4u);
  EXPECT_EQ(GuestGet<uint8_t>(*mem_, kZeroPageAddr + bp::kE820Entries), 4);
  EXPECT_EQ(GuestGet<uint64_t>(*mem_, kZeroPageAddr + bp::kE820Table + 3 * 20), 0xB0000000u);
}

TEST_F(KernelLoaderTest, RecognisesMultibootWithInitrdAndModules) {
  LoadOptions o;
  o.kernel_path = dir_.Write("kernel.bin", MinimalMultibootAout());
  o.initrd_path = dir_.Write("first.mod", Bytes(100, 1));
  o.modules = {{dir_.Write("second.mod", Bytes(200, 2)), "second --flag"},
               {dir_.Write("third.mod", Bytes(300, 3)), ""}};
  o.cmdline = "mb-cmdline";
  o.acpi = AcpiConfig{};
  LoadResult r = LoadKernel(*mem_, *cpu_, o);
  EXPECT_EQ(r.format, KernelFormat::kMultibootAout);
  EXPECT_EQ(r.rsdp, kAcpiTablesAddr);
  EXPECT_EQ(cpu_->gpr[kRax], 0x2BADB002u);
  const uint64_t info = cpu_->gpr[kRbx];
  ASSERT_EQ(GuestGet<uint32_t>(*mem_, info + mbi::kModsCount), 3u);
  const uint32_t mods = GuestGet<uint32_t>(*mem_, info + mbi::kModsAddr);
  EXPECT_EQ(GuestString(*mem_, GuestGet<uint32_t>(*mem_, mods + 8)), o.initrd_path);
  EXPECT_EQ(GuestString(*mem_, GuestGet<uint32_t>(*mem_, mods + 24)), "second --flag");
  EXPECT_EQ(GuestString(*mem_, GuestGet<uint32_t>(*mem_, mods + 40)), o.modules[1].path);
  const uint32_t third = GuestGet<uint32_t>(*mem_, mods + 32);
  EXPECT_EQ(ReadGuest(*mem_, third, 300), Bytes(300, 3));
  EXPECT_EQ(GuestString(*mem_, GuestGet<uint32_t>(*mem_, info + mbi::kCmdline)), "mb-cmdline");
}

TEST_F(KernelLoaderTest, ClearErrors) {
  LoadOptions o;
  EXPECT_NE(Error(o).find("no kernel"), std::string::npos);

  o.kernel_path = dir_.File("missing");
  std::string e = Error(o);
  EXPECT_NE(e.find("cannot open"), std::string::npos) << e;
  EXPECT_NE(e.find("missing"), std::string::npos) << e;

  o.kernel_path = dir_.path().string();
  EXPECT_NE(Error(o).find("not a regular file"), std::string::npos);

  o.kernel_path = dir_.WriteText("random.txt", "hello, I am not a kernel\n");
  e = Error(o);
  EXPECT_NE(e.find("not a bzImage or multiboot kernel"), std::string::npos) << e;

  o.kernel_path = dir_.Write("empty", {});
  EXPECT_NE(Error(o).find("not a bzImage or multiboot kernel"), std::string::npos);

  o.kernel_path = dir_.Write("huge", Bytes(64 * kMiB + 1, 0));
  EXPECT_NE(Error(o).find("larger than"), std::string::npos);

  o.kernel_path = dir_.Write("bzImage", MakeBzImage());
  o.initrd_path = dir_.File("no-initrd");
  EXPECT_NE(Error(o).find("cannot open"), std::string::npos);
  o.initrd_path.clear();
  o.modules = {{dir_.Write("m", Bytes(1, 0)), ""}};
  EXPECT_NE(Error(o).find("modules are for multiboot"), std::string::npos);
  o.modules.clear();

  // A format error carries the file name and the loader's reason.
  BzImageSpec old;
  old.version = 0x0201;
  o.kernel_path = dir_.Write("old-bzImage", MakeBzImage(old));
  e = Error(o);
  EXPECT_NE(e.find("old-bzImage: "), std::string::npos) << e;
  EXPECT_NE(e.find("too old"), std::string::npos) << e;

  Bytes bad = MinimalMultibootAout();
  Put<uint32_t>(bad, 8, 0);
  o.kernel_path = dir_.Write("bad-sum", bad);
  EXPECT_NE(Error(o).find("bad checksum"), std::string::npos);
}

TEST_F(KernelLoaderTest, KernelOverwritingAcpiTablesIsRefused) {
  Bytes img = MinimalMultibootAout();
  Put<uint32_t>(img, 12, 0xE0000);  // header_addr
  Put<uint32_t>(img, 16, 0xE0000);  // load_addr
  Put<uint32_t>(img, 28, 0xE0020);  // entry
  LoadOptions o;
  o.kernel_path = dir_.Write("low-kernel", img);
  EXPECT_NO_THROW(LoadKernel(*mem_, *cpu_, o)) << "fine without ACPI";
  o.acpi = AcpiConfig{};
  EXPECT_NE(Error(o).find("overwrites the ACPI tables"), std::string::npos);
}

TEST(KernelLoaderDebian, StockDebianKernelThroughLoadKernel) {
  const std::string path = DebianKernelPath();
  if (path.empty()) GTEST_SKIP() << "Debian kernel not fetched; run scripts/fetch-guest.sh";
  auto mem = GuestMemory::Create(256 * kMiB);
  auto cpu = GarbageCpu();
  LoadOptions o;
  o.kernel_path = path;
  o.cmdline = "console=ttyS0";
  o.acpi = AcpiConfig{};
  LoadResult r = LoadKernel(*mem, *cpu, o);
  EXPECT_EQ(r.format, KernelFormat::kLinuxBzImage);
  EXPECT_TRUE(cpu->code64());
  EXPECT_EQ(GuestGet<uint64_t>(*mem, kZeroPageAddr + bp::kAcpiRsdpAddr), kAcpiTablesAddr);
  std::cout << "[ info ] " << r.summary << "\n";
}

}  // namespace
}  // namespace rove::loader
