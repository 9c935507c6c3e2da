#include "rove/devices/pci.h"

#include <gtest/gtest.h>

#include <array>
#include <memory>

namespace rove {
namespace {

constexpr uint64_t kEcamBase = 0xE0000000;

class PciTest : public ::testing::Test {
 protected:
  PciTest() {
    root->Add(0, 0, std::make_shared<PciHostBridge>());
    pio.Insert(std::make_shared<BusWindow>(root, PciRoot::kConfigPortsWindow), 0xCF8, 8);
    mmio.Insert(std::make_shared<BusWindow>(root, PciRoot::kEcamWindow), kEcamBase,
                PciRoot::EcamSize(256));
  }
  static uint32_t Address(unsigned bus, unsigned dev, unsigned fn, unsigned reg) {
    return 0x80000000u | (bus << 16) | (dev << 11) | (fn << 8) | (reg & 0xFC);
  }
  uint32_t CfgRead(unsigned bus, unsigned dev, unsigned fn, unsigned reg, unsigned width) {
    std::array<uint8_t, 4> a{};
    StoreLe(a, Address(bus, dev, fn, reg));
    pio.Write(0xCF8, a);
    std::array<uint8_t, 4> v{};
    pio.Read(0xCFC + (reg & 3), std::span(v).first(width));
    return uint32_t(LoadLe(std::span(v).first(width)));
  }
  void CfgWrite(unsigned bus, unsigned dev, unsigned fn, unsigned reg, unsigned width,
                uint32_t value) {
    std::array<uint8_t, 4> a{};
    StoreLe(a, Address(bus, dev, fn, reg));
    pio.Write(0xCF8, a);
    std::array<uint8_t, 4> v{};
    StoreLe(v, value);
    pio.Write(0xCFC + (reg & 3), std::span(v).first(width));
  }
  uint32_t EcamRead(unsigned bus, unsigned dev, unsigned fn, unsigned reg, unsigned width) {
    std::array<uint8_t, 4> v{};
    mmio.Read(kEcamBase + (uint64_t(bus) << 20) + (dev << 15) + (fn << 12) + reg,
              std::span(v).first(width));
    return uint32_t(LoadLe(std::span(v).first(width)));
  }

  int resets = 0;
  std::shared_ptr<PciRoot> root = std::make_shared<PciRoot>([this] { ++resets; });
  Bus pio{"pio"};
  Bus mmio{"mmio"};
};

TEST_F(PciTest, HostBridgeIdThroughConfigMechanism1) {
  EXPECT_EQ(CfgRead(0, 0, 0, 0x00, 4), 0x12378086u);
  EXPECT_EQ(CfgRead(0, 0, 0, 0x00, 2), 0x8086u);
  EXPECT_EQ(CfgRead(0, 0, 0, 0x02, 2), 0x1237u);
  EXPECT_EQ(CfgRead(0, 0, 0, 0x0B, 1), 0x06u);  // base class: bridge
  EXPECT_EQ(CfgRead(0, 0, 0, 0x0A, 1), 0x00u);  // subclass: host
  EXPECT_EQ(CfgRead(0, 0, 0, 0x0E, 1), 0x00u);  // single-function
  // The address register reads back.
  std::array<uint8_t, 4> a{};
  pio.Read(0xCF8, a);
  EXPECT_EQ(LoadLe(a), 0x8000000Cu);
}

TEST_F(PciTest, HostBridgeIdThroughEcam) {
  EXPECT_EQ(EcamRead(0, 0, 0, 0x00, 4), 0x12378086u);
  EXPECT_EQ(EcamRead(0, 0, 0, 0x08, 4) >> 8, 0x060000u);
  EXPECT_EQ(EcamRead(0, 0, 0, 0x100, 4), 0u);  // extended space of a conventional function
}

TEST_F(PciTest, EmptySlotsReadAllOnes) {
  EXPECT_EQ(CfgRead(0, 1, 0, 0x00, 4), 0xFFFFFFFFu);
  EXPECT_EQ(CfgRead(0, 0, 1, 0x00, 2), 0xFFFFu);
  EXPECT_EQ(CfgRead(1, 0, 0, 0x00, 4), 0xFFFFFFFFu);
  EXPECT_EQ(EcamRead(0, 31, 7, 0x00, 4), 0xFFFFFFFFu);
  EXPECT_EQ(EcamRead(5, 0, 0, 0x00, 4), 0xFFFFFFFFu);
  // Without the enable bit, the data port reads all ones.
  std::array<uint8_t, 4> a{};
  pio.Write(0xCF8, a);
  std::array<uint8_t, 4> v{};
  pio.Read(0xCFC, v);
  EXPECT_EQ(LoadLe(v), 0xFFFFFFFFu);
}

class TestDevice : public PciConfigSpace {
 public:
  TestDevice() {
    SetHeader(0x1234, 0x5678, 0x020000, 1);
    DeclareBar(0, 0x1000, kBarMem32);
    DeclareBar(1, 0x20, kBarIo);
    DeclareBar(2, 0x100000, kBarMem64 | kBarPrefetchable);
    Set8(kInterruptPin, 1);
  }
};

TEST_F(PciTest, BarSizingAndCommandRegister) {
  ASSERT_TRUE(root->Add(3, 0, std::make_shared<TestDevice>()));
  EXPECT_FALSE(root->Add(3, 0, std::make_shared<TestDevice>()));
  EXPECT_EQ(CfgRead(0, 3, 0, 0x00, 4), 0x56781234u);
  // Sizing: write all ones, read back the size mask.
  CfgWrite(0, 3, 0, 0x10, 4, 0xFFFFFFFF);
  EXPECT_EQ(CfgRead(0, 3, 0, 0x10, 4), 0xFFFFF000u);
  CfgWrite(0, 3, 0, 0x14, 4, 0xFFFFFFFF);
  EXPECT_EQ(CfgRead(0, 3, 0, 0x14, 4), 0xFFFFFFE1u);
  CfgWrite(0, 3, 0, 0x18, 4, 0xFFFFFFFF);
  CfgWrite(0, 3, 0, 0x1C, 4, 0xFFFFFFFF);
  EXPECT_EQ(CfgRead(0, 3, 0, 0x18, 4), 0xFFF0000Cu);
  EXPECT_EQ(CfgRead(0, 3, 0, 0x1C, 4), 0xFFFFFFFFu);
  // Programming.
  CfgWrite(0, 3, 0, 0x10, 4, 0xC0001000);
  CfgWrite(0, 3, 0, 0x18, 4, 0x00000000);
  CfgWrite(0, 3, 0, 0x1C, 4, 0x00000001);
  auto* dev = static_cast<PciConfigSpace*>(root->Get(0, 3, 0));
  EXPECT_EQ(dev->bar_address(0), 0xC0001000u);
  EXPECT_EQ(dev->bar_address(2), 0x100000000u);
  CfgWrite(0, 3, 0, 0x04, 2, 0xFFFF);
  EXPECT_EQ(CfgRead(0, 3, 0, 0x04, 2), 0x0547u);
  // Vendor ID is read-only; a byte write through 0xCFD lands in the right byte.
  CfgWrite(0, 3, 0, 0x00, 4, 0);
  EXPECT_EQ(CfgRead(0, 3, 0, 0x00, 4), 0x56781234u);
  CfgWrite(0, 3, 0, 0x3C, 1, 0x0B);
  EXPECT_EQ(CfgRead(0, 3, 0, 0x3C, 2), 0x010Bu);
}

TEST_F(PciTest, ResetControlRegisterAt0xCF9) {
  pio.Write(0xCF9, std::array<uint8_t, 1>{0x02});
  EXPECT_EQ(resets, 0);
  std::array<uint8_t, 1> b{};
  pio.Read(0xCF9, b);
  EXPECT_EQ(b[0], 0x02);
  pio.Write(0xCF9, std::array<uint8_t, 1>{0x06});
  EXPECT_EQ(resets, 1);
}

}  // namespace
}  // namespace rove
