#include "rove/devices/debug_exit.h"

#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <vector>

#include "rove/devices/post_code.h"

namespace rove {
namespace {

TEST(DebugExit, WriteOfVExitsWithStatusVShiftedOrOne) {
  std::vector<int> exits;
  auto dev = std::make_shared<DebugExit>([&](int status) { exits.push_back(status); });
  Bus pio("pio");
  ASSERT_TRUE(pio.Insert(dev, 0xF4, DebugExit::kSize));
  EXPECT_FALSE(dev->status().has_value());
  pio.Write(0xF4, std::array<uint8_t, 1>{0x10});
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0], 0x21);
  EXPECT_EQ(dev->status(), 0x21);
  // A dword write: the value is the whole access.
  pio.Write(0xF4, std::array<uint8_t, 4>{0x00, 0x01, 0, 0});
  EXPECT_EQ(exits[1], 0x201);
  EXPECT_EQ(dev->status(), 0x21);  // the first status is kept
  pio.Write(0xF4, std::array<uint8_t, 1>{0});
  EXPECT_EQ(exits[2], 1);
  std::array<uint8_t, 1> b{};
  pio.Read(0xF4, b);
  EXPECT_EQ(b[0], 0xFF);
}

TEST(PostCode, KeepsTheLastCode) {
  auto dev = std::make_shared<PostCode>();
  Bus pio("pio");
  ASSERT_TRUE(pio.Insert(dev, 0x80, 1));
  pio.Write(0x80, std::array<uint8_t, 1>{0x42});
  pio.Write(0x80, std::array<uint8_t, 1>{0x43});
  EXPECT_EQ(dev->last(), 0x43);
  EXPECT_EQ(dev->writes(), 2u);
  std::array<uint8_t, 1> b{};
  pio.Read(0x80, b);
  EXPECT_EQ(b[0], 0x43);
  EXPECT_EQ(pio.unclaimed_writes(), 0u);
}

}  // namespace
}  // namespace rove
