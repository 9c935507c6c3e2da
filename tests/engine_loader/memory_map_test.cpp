#include "rove/engine/loader/memory_map.h"

#include <gtest/gtest.h>

#include "loader_test_util.h"
#include "rove/engine/loader/load_error.h"
#include "rove/mmu/guest_memory.h"

namespace rove::loader {
namespace {

using testing::kMiB;

TEST(MemoryMap, SmallGuestHasConventionalReservedAndExtendedRam) {
  MemoryMap map = BuildPcMemoryMap(256 * kMiB);
  ASSERT_EQ(map.size(), 3u);
  EXPECT_EQ(map[0], (MemoryRegion{0, 0xA0000, MemoryType::kRam}));
  EXPECT_EQ(map[1], (MemoryRegion{0xA0000, 0x60000, MemoryType::kReserved}));
  EXPECT_EQ(map[2], (MemoryRegion{0x100000, 255 * kMiB, MemoryType::kRam}));
  EXPECT_EQ(LowRamEnd(map), 256 * kMiB);
  EXPECT_EQ(TopOfRam(map), 256 * kMiB);
}

TEST(MemoryMap, LargeGuestSkipsThePciHoleAndContinuesAt4GiB) {
  const uint64_t ram = 4096 * kMiB;
  MemoryMap map = BuildPcMemoryMap(ram);
  ASSERT_EQ(map.size(), 4u);
  EXPECT_EQ(map[2], (MemoryRegion{0x100000, kLowRamLimit - 0x100000, MemoryType::kRam}));
  EXPECT_EQ(map[3], (MemoryRegion{kHighRamStart, ram - kLowRamLimit, MemoryType::kRam}));
  EXPECT_EQ(LowRamEnd(map), kLowRamLimit);
  EXPECT_EQ(TopOfRam(map), kHighRamStart + ram - kLowRamLimit);
}

TEST(MemoryMap, ExactlyLowRamLimitHasNoHighRegion) {
  MemoryMap map = BuildPcMemoryMap(kLowRamLimit);
  ASSERT_EQ(map.size(), 3u);
  EXPECT_EQ(map.back().end(), kLowRamLimit);
}

TEST(MemoryMap, TinyGuestBelow640K) {
  MemoryMap map = BuildPcMemoryMap(512 * 1024);
  ASSERT_EQ(map.size(), 1u);
  EXPECT_EQ(map[0], (MemoryRegion{0, 512 * 1024, MemoryType::kRam}));
  EXPECT_EQ(LowRamEnd(map), 0u);
}

TEST(MemoryMap, ReservedRangesAreSortedIn) {
  const MemoryRegion ecam{0xB0000000, 0x10000000, MemoryType::kReserved};
  const MemoryRegion ioapic{0xFEC00000, 0x1000, MemoryType::kReserved};
  const MemoryRegion reserved[] = {ioapic, ecam};
  MemoryMap map = BuildPcMemoryMap(1024 * kMiB, reserved);
  ASSERT_EQ(map.size(), 5u);
  EXPECT_EQ(map[3], ecam);
  EXPECT_EQ(map[4], ioapic);
}

TEST(MemoryMap, ReservedRangeOverlappingRamIsRefused) {
  const MemoryRegion bad[] = {{0x100000 + 4096, 4096, MemoryType::kReserved}};
  EXPECT_THROW(BuildPcMemoryMap(64 * kMiB, bad), LoadError);
  const MemoryRegion twice[] = {{0xD0000000, 0x2000, MemoryType::kReserved},
                                {0xD0001000, 0x2000, MemoryType::kReserved}};
  EXPECT_THROW(BuildPcMemoryMap(64 * kMiB, twice), LoadError);
  const MemoryRegion wrap[] = {{~0ull - 10, 100, MemoryType::kReserved}};
  EXPECT_THROW(BuildPcMemoryMap(64 * kMiB, wrap), LoadError);
}

TEST(MemoryMap, ZeroRamIsRefused) {
  EXPECT_THROW(BuildPcMemoryMap(0), LoadError);
}

TEST(MemoryMap, MatchesGuestMemoryLayout) {
  // Every page the map calls RAM is RAM in GuestMemory, and the PCI hole is not.
  auto mem = GuestMemory::Create(kLowRamLimit + 64 * kMiB);
  MemoryMap map = BuildPcMemoryMap(mem->ram_size());
  for (const MemoryRegion& r : map) {
    if (r.type != MemoryType::kRam) continue;
    EXPECT_TRUE(mem->IsRam(r.base));
    EXPECT_TRUE(mem->IsRam(r.end() - kPageSize));
  }
  EXPECT_FALSE(mem->IsRam(kLowRamLimit));
  EXPECT_FALSE(mem->IsRam(TopOfRam(map)));
}

}  // namespace
}  // namespace rove::loader
