#include "rove/devices/bus.h"

#include <gtest/gtest.h>

#include <array>
#include <vector>

namespace rove {
namespace {

// Records accesses and answers reads with offset-derived bytes.
class RecordingDevice : public BusDevice {
 public:
  void Read(uint64_t offset, std::span<uint8_t> data) override {
    reads.push_back({offset, data.size()});
    for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(offset + i);
  }
  void Write(uint64_t offset, std::span<const uint8_t> data) override {
    writes.push_back({offset, LoadLe(data)});
  }
  std::vector<std::pair<uint64_t, uint64_t>> reads, writes;
};

TEST(Bus, InsertRejectsOverlapsAndEmptyWindows) {
  Bus bus("pio");
  auto a = std::make_shared<RecordingDevice>();
  auto b = std::make_shared<RecordingDevice>();
  EXPECT_TRUE(bus.Insert(a, 0x3F8, 8));
  EXPECT_FALSE(bus.Insert(b, 0x3F8, 8));     // same window
  EXPECT_FALSE(bus.Insert(b, 0x3F0, 9));     // overlaps the start
  EXPECT_FALSE(bus.Insert(b, 0x3FF, 1));     // overlaps the last byte
  EXPECT_FALSE(bus.Insert(b, 0x3F0, 0x20));  // covers it
  EXPECT_FALSE(bus.Insert(b, 0x500, 0));     // empty
  EXPECT_FALSE(bus.Insert(nullptr, 0x500, 1));
  EXPECT_FALSE(bus.Insert(b, ~0ull - 1, 4));  // wraps
  EXPECT_TRUE(bus.Insert(b, 0x3F0, 8));       // adjacent below
  EXPECT_TRUE(bus.Insert(b, 0x400, 8));       // adjacent above (same device, second window)
  EXPECT_EQ(bus.DeviceAt(0x3F8), a.get());
  EXPECT_EQ(bus.DeviceAt(0x3F7), b.get());
  EXPECT_EQ(bus.DeviceAt(0x408), nullptr);
}

TEST(Bus, DeviceSeesOffsetsIntoItsWindow) {
  Bus bus("mmio");
  auto dev = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.Insert(dev, 0xFEC00000, 0x1000));
  std::array<uint8_t, 4> buf{};
  EXPECT_TRUE(bus.Read(0xFEC00010, buf));
  EXPECT_EQ(LoadLe(buf), 0x13121110u);
  const std::array<uint8_t, 2> w{0x34, 0x12};
  EXPECT_TRUE(bus.Write(0xFEC00ffe, w));
  ASSERT_EQ(dev->writes.size(), 1u);
  EXPECT_EQ(dev->writes[0].first, 0xffeu);
  EXPECT_EQ(dev->writes[0].second, 0x1234u);
}

TEST(Bus, UnclaimedAccessesReadAllOnesAndAreCounted) {
  Bus bus("pio");
  auto dev = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.Insert(dev, 0x60, 1));
  std::array<uint8_t, 4> buf{};
  EXPECT_FALSE(bus.Read(0x1234, buf));
  EXPECT_EQ(LoadLe(buf), 0xFFFFFFFFu);
  // An access that runs past the end of a window is not claimed either.
  std::array<uint8_t, 2> two{};
  EXPECT_FALSE(bus.Read(0x60, two));
  EXPECT_EQ(LoadLe(two), 0xFFFFu);
  EXPECT_FALSE(bus.Write(0x61, std::array<uint8_t, 1>{0}));
  EXPECT_EQ(bus.unclaimed_reads(), 2u);
  EXPECT_EQ(bus.unclaimed_writes(), 1u);
  EXPECT_TRUE(dev->reads.empty());
}

class TwoWindows : public MultiWindowDevice {
 public:
  void Read(unsigned window, uint64_t offset, std::span<uint8_t> data) override {
    data[0] = uint8_t(window * 0x10 + offset);
  }
  void Write(unsigned, uint64_t, std::span<const uint8_t>) override {}
};

TEST(Bus, BusWindowForwardsTheWindowNumber) {
  Bus bus("pio");
  auto dev = std::make_shared<TwoWindows>();
  ASSERT_TRUE(bus.Insert(std::make_shared<BusWindow>(dev, 0), 0x20, 2));
  ASSERT_TRUE(bus.Insert(std::make_shared<BusWindow>(dev, 1), 0xA0, 2));
  std::array<uint8_t, 1> b{};
  bus.Read(0xA1, b);
  EXPECT_EQ(b[0], 0x11);
  bus.Read(0x20, b);
  EXPECT_EQ(b[0], 0x00);
}

}  // namespace
}  // namespace rove
