#include "rove/devices/fw_cfg.h"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace rove {
namespace {

class FakeMemory : public DmaMemory {
 public:
  bool ReadPhysical(uint64_t gpa, std::span<uint8_t> data) override {
    if (gpa + data.size() > ram.size()) return false;
    std::memcpy(data.data(), ram.data() + gpa, data.size());
    return true;
  }
  bool WritePhysical(uint64_t gpa, std::span<const uint8_t> data) override {
    if (gpa + data.size() > ram.size()) return false;
    std::memcpy(ram.data() + gpa, data.data(), data.size());
    return true;
  }
  std::vector<uint8_t> ram = std::vector<uint8_t>(1 << 16, 0xCC);
};

class FwCfgTest : public ::testing::Test {
 protected:
  FwCfgTest() : fw(std::make_shared<FwCfg>(&mem)) { pio.Insert(fw, 0x510, FwCfg::kSize); }
  void Select(uint16_t key) {
    std::array<uint8_t, 2> b{};
    StoreLe(b, key);
    pio.Write(0x510, b);
  }
  std::vector<uint8_t> ReadData(size_t n) {
    std::vector<uint8_t> out(n);
    for (auto& c : out) {
      std::array<uint8_t, 1> b{};
      pio.Read(0x511, b);
      c = b[0];
    }
    return out;
  }
  std::vector<uint8_t> ReadItem(uint16_t key, size_t n) {
    Select(key);
    return ReadData(n);
  }
  static uint32_t Be32(const uint8_t* p) {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
  }
  // Finds a file in the directory as a guest would.
  bool Lookup(const std::string& name, uint16_t& select, uint32_t& size) {
    const std::vector<uint8_t> count = ReadItem(FwCfg::kFileDir, 4);
    const uint32_t n = Be32(count.data());
    for (uint32_t i = 0; i < n; ++i) {
      const std::vector<uint8_t> e = ReadData(64);
      if (std::string(reinterpret_cast<const char*>(e.data() + 8)) == name) {
        size = Be32(e.data());
        select = uint16_t(e[4] << 8 | e[5]);
        return true;
      }
    }
    return false;
  }

  FakeMemory mem;
  std::shared_ptr<FwCfg> fw;
  Bus pio{"pio"};
};

TEST_F(FwCfgTest, SignatureAndId) {
  const std::vector<uint8_t> sig = ReadItem(FwCfg::kSignature, 4);
  EXPECT_EQ(std::string(sig.begin(), sig.end()), "QEMU");
  const std::vector<uint8_t> id = ReadItem(FwCfg::kId, 4);
  EXPECT_EQ(id, (std::vector<uint8_t>{0x03, 0, 0, 0}));  // traditional + DMA
  // Past the end of an item: zeros. Unknown items: zeros.
  EXPECT_EQ(ReadData(2), (std::vector<uint8_t>{0, 0}));
  EXPECT_EQ(ReadItem(0x1234, 2), (std::vector<uint8_t>{0, 0}));
  // The DMA register reads as "QEMU CFG".
  std::array<uint8_t, 8> d{};
  pio.Read(0x514, std::span(d).first(4));
  pio.Read(0x518, std::span(d).subspan(4));
  EXPECT_EQ(std::string(d.begin(), d.end()), "QEMU CFG");
}

TEST_F(FwCfgTest, ScalarItems) {
  fw->SetRamSize(512ull << 20);
  fw->SetCpuCount(2, 4);
  const std::vector<uint8_t> ram = ReadItem(FwCfg::kRamSize, 8);
  uint64_t v = 0;
  std::memcpy(&v, ram.data(), 8);
  EXPECT_EQ(v, 512ull << 20);
  EXPECT_EQ(ReadItem(FwCfg::kNbCpus, 2), (std::vector<uint8_t>{2, 0}));
  EXPECT_EQ(ReadItem(FwCfg::kMaxCpus, 2), (std::vector<uint8_t>{4, 0}));
  fw->SetCmdline(0x20000, "console=ttyS0");
  EXPECT_EQ(ReadItem(FwCfg::kCmdlineSize, 4), (std::vector<uint8_t>{14, 0, 0, 0}));
  const std::vector<uint8_t> cmd = ReadItem(FwCfg::kCmdlineData, 14);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(cmd.data())), "console=ttyS0");
  fw->SetKernel(0x100000, {1, 2, 3});
  EXPECT_EQ(ReadItem(FwCfg::kKernelSize, 4), (std::vector<uint8_t>{3, 0, 0, 0}));
  EXPECT_EQ(ReadItem(FwCfg::kKernelAddr, 4), (std::vector<uint8_t>{0, 0, 0x10, 0}));
  EXPECT_EQ(ReadItem(FwCfg::kKernelData, 3), (std::vector<uint8_t>{1, 2, 3}));
  fw->SetInitrd(0x7000000, {9, 8});
  EXPECT_EQ(ReadItem(FwCfg::kInitrdData, 2), (std::vector<uint8_t>{9, 8}));
}

TEST_F(FwCfgTest, FileDirectoryLookupAndE820Content) {
  const std::array<E820Entry, 3> map{
      {{0, 0x9FC00, kE820Ram}, {0xF0000, 0x10000, kE820Reserved}, {0x100000, 0x7F00000, kE820Ram}}};
  fw->SetE820(map);
  ASSERT_TRUE(fw->AddFile("etc/boot-fail-wait", {0x05, 0, 0, 0}));
  EXPECT_FALSE(fw->AddFile(std::string(56, 'x'), {}));
  uint16_t select = 0;
  uint32_t size = 0;
  ASSERT_TRUE(Lookup("etc/e820", select, size));
  EXPECT_EQ(size, 60u);
  EXPECT_EQ(select, fw->FileSelector("etc/e820"));
  EXPECT_GE(select, FwCfg::kFileFirst);
  const std::vector<uint8_t> e820 = ReadItem(select, size);
  uint64_t addr = 0, len = 0;
  uint32_t type = 0;
  std::memcpy(&addr, e820.data() + 40, 8);
  std::memcpy(&len, e820.data() + 48, 8);
  std::memcpy(&type, e820.data() + 56, 4);
  EXPECT_EQ(addr, 0x100000u);
  EXPECT_EQ(len, 0x7F00000u);
  EXPECT_EQ(type, kE820Ram);
  ASSERT_TRUE(Lookup("etc/boot-fail-wait", select, size));
  EXPECT_EQ(ReadItem(select, 1)[0], 5);
  EXPECT_FALSE(Lookup("etc/nothing", select, size));
}

TEST_F(FwCfgTest, DmaReadOfAnItem) {
  fw->SetCmdline(0, "quiet");
  // FWCfgDmaAccess at 0x1000: select + read 6 bytes of the command line into 0x2000.
  const uint32_t control =
      (uint32_t(FwCfg::kCmdlineData) << 16) | FwCfg::kDmaSelect | FwCfg::kDmaRead;
  const uint8_t desc[16] = {uint8_t(control >> 24),
                            uint8_t(control >> 16),
                            uint8_t(control >> 8),
                            uint8_t(control),
                            0,
                            0,
                            0,
                            8,  // length 8 (2 past the end)
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0x20,
                            0x00};
  std::memcpy(mem.ram.data() + 0x1000, desc, 16);
  // Big-endian address: high half at 0x514, low half at 0x518 (which starts the transfer).
  pio.Write(0x514, std::array<uint8_t, 4>{0, 0, 0, 0});
  pio.Write(0x518, std::array<uint8_t, 4>{0, 0, 0x10, 0x00});
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(mem.ram.data() + 0x2000)), "quiet");
  EXPECT_EQ(mem.ram[0x2006], 0);  // zero-filled past the item
  EXPECT_EQ(mem.ram[0x2008], 0xCC);
  EXPECT_EQ(Be32(mem.ram.data() + 0x1000), 0u);  // control cleared: done, no error
}

TEST(FwCfgNoDma, IdWithoutDma) {
  FwCfg fw(nullptr);
  Bus pio("pio");
  auto shared = std::shared_ptr<FwCfg>(&fw, [](FwCfg*) {});
  pio.Insert(shared, 0x510, FwCfg::kSize);
  pio.Write(0x510, std::array<uint8_t, 2>{FwCfg::kId, 0});
  std::array<uint8_t, 1> b{};
  pio.Read(0x511, b);
  EXPECT_EQ(b[0], 0x01);
}

}  // namespace
}  // namespace rove
