#include "rove/mmu/guest_memory.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <vector>

namespace rove {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint64_t kMiB = 1ull << 20;

// Records every MMIO access; reads return a value derived from the address.
class FakeMmio : public MmioHandler {
 public:
  struct Op {
    bool write;
    uint64_t gpa;
    unsigned width;
    uint64_t value;
    bool operator==(const Op&) const = default;
  };
  static uint64_t ValueFor(uint64_t gpa, unsigned width) {
    uint64_t v = 0x1122334455667788ull ^ (gpa * 0x9E3779B97F4A7C15ull);
    return width == 8 ? v : v & ((1ull << (8 * width)) - 1);
  }
  uint64_t MmioRead(uint64_t gpa, unsigned width) override {
    ops.push_back({false, gpa, width, 0});
    return ValueFor(gpa, width);
  }
  void MmioWrite(uint64_t gpa, unsigned width, uint64_t value) override {
    ops.push_back({true, gpa, width, value});
  }
  std::vector<Op> ops;
};

std::ostream& operator<<(std::ostream& os, const FakeMmio::Op& op) {
  return os << (op.write ? "W" : "R") << "(" << std::hex << op.gpa << ", " << std::dec << op.width
            << ", " << std::hex << op.value << ")";
}

TEST(GuestMemoryTest, SmallRamLayout) {
  auto mem = GuestMemory::Create(16 * kMiB + 1);  // rounded up to a page
  EXPECT_EQ(mem->ram_size(), 16 * kMiB + kPageSize);
  EXPECT_EQ(mem->reservation_size(), kHighRamStart);
  EXPECT_NE(mem->host_base(), nullptr);
  EXPECT_GE(mem->memfd(), 0);
  EXPECT_TRUE(mem->IsRam(0));
  EXPECT_TRUE(mem->IsRam(16 * kMiB + kPageSize - 1));
  EXPECT_FALSE(mem->IsRam(16 * kMiB + kPageSize));
  EXPECT_FALSE(mem->IsRam(kHighRamStart));
  EXPECT_FALSE(mem->IsRam(~0ull));
  EXPECT_EQ(mem->HostPointer(0x1234), mem->host_base() + 0x1234);
  EXPECT_EQ(mem->HostPointer(32 * kMiB), nullptr);
}

TEST(GuestMemoryTest, RamIsZeroedAndBackedByTheMemfd) {
  auto mem = GuestMemory::Create(4 * kMiB);
  EXPECT_EQ(mem->ReadU64(0x3000), 0u);
  mem->WriteU64(0x3000, 0xDEADBEEFCAFEF00Dull);
  uint64_t from_fd = 0;
  ASSERT_EQ(pread(mem->memfd(), &from_fd, 8, 0x3000), 8);
  EXPECT_EQ(from_fd, 0xDEADBEEFCAFEF00Dull);
  EXPECT_EQ(*reinterpret_cast<uint64_t*>(mem->host_base() + 0x3000), 0xDEADBEEFCAFEF00Dull);
}

TEST(GuestMemoryTest, RamAboveTheHoleIsRelocatedTo4GiB) {
  // 3 GiB below the hole plus 8 MiB that land at 4 GiB.
  auto mem = GuestMemory::Create(kLowRamLimit + 8 * kMiB);
  EXPECT_EQ(mem->reservation_size(), kHighRamStart + 8 * kMiB);
  EXPECT_TRUE(mem->IsRam(kLowRamLimit - 1));
  EXPECT_FALSE(mem->IsRam(kLowRamLimit));
  EXPECT_FALSE(mem->IsRam(0xFEC00000));  // I/O APIC
  EXPECT_FALSE(mem->IsRam(kHighRamStart - 1));
  EXPECT_TRUE(mem->IsRam(kHighRamStart));
  EXPECT_TRUE(mem->IsRam(kHighRamStart + 8 * kMiB - 1));
  EXPECT_FALSE(mem->IsRam(kHighRamStart + 8 * kMiB));

  // Low RAM is file offset = gpa; high RAM continues the file at offset kLowRamLimit.
  mem->WriteU32(kLowRamLimit - 4, 0x11111111);
  mem->WriteU32(kHighRamStart, 0x22222222);
  mem->WriteU32(kHighRamStart + 8 * kMiB - 4, 0x33333333);
  uint32_t v = 0;
  ASSERT_EQ(pread(mem->memfd(), &v, 4, kLowRamLimit - 4), 4);
  EXPECT_EQ(v, 0x11111111u);
  ASSERT_EQ(pread(mem->memfd(), &v, 4, kLowRamLimit), 4);
  EXPECT_EQ(v, 0x22222222u);
  ASSERT_EQ(pread(mem->memfd(), &v, 4, kLowRamLimit + 8 * kMiB - 4), 4);
  EXPECT_EQ(v, 0x33333333u);
  EXPECT_EQ(mem->HostPointer(kHighRamStart), mem->host_base() + kHighRamStart);
  // The hole reads as unclaimed MMIO.
  EXPECT_EQ(mem->ReadU32(kLowRamLimit), 0xFFFFFFFFu);
}

TEST(GuestMemoryTest, CreateRejectsImpossibleSizes) {
  EXPECT_THROW(GuestMemory::Create(0), std::runtime_error);
  try {
    GuestMemory::Create(1ull << 50);
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("guest RAM"));
  }
}

TEST(GuestMemoryTest, UnclaimedAddressesReadAllOnesAndDropWrites) {
  auto mem = GuestMemory::Create(1 * kMiB);
  EXPECT_EQ(mem->ReadU64(2 * kMiB), ~0ull);
  EXPECT_EQ(mem->ReadU32(0xFEE00000), 0xFFFFFFFFu);
  EXPECT_EQ(mem->ReadU64(1ull << 45), ~0ull);  // far beyond the reservation
  mem->WriteU64(2 * kMiB, 0);
  EXPECT_EQ(mem->ReadU64(2 * kMiB), ~0ull);
  uint8_t buf[3] = {0, 0, 0};
  mem->Read(0xFFFFFFFFFFFFFFFEull, buf, 3);  // wraps around the address space: no crash
  EXPECT_EQ(buf[0], 0xFF);
}

TEST(GuestMemoryTest, NonRamPartOfTheReservationIsInaccessible) {
  auto mem = GuestMemory::Create(1 * kMiB);
  uint8_t* hole = mem->host_base() + 2 * kMiB;
  EXPECT_DEATH({ *reinterpret_cast<volatile uint8_t*>(hole) = 1; }, "");
}

TEST(GuestMemoryTest, MmioAlignedAccessesGoWhole) {
  auto mem = GuestMemory::Create(1 * kMiB);
  FakeMmio mmio;
  mem->SetMmioHandler(&mmio);
  const uint64_t base = 0xFEC00000;
  EXPECT_EQ(mem->ReadU64(base), FakeMmio::ValueFor(base, 8));
  EXPECT_EQ(mem->ReadU32(base + 4), FakeMmio::ValueFor(base + 4, 4));
  mem->WriteU64(base + 8, 0x0102030405060708ull);
  mem->WriteU32(base + 0x10, 0xAABBCCDD);
  EXPECT_THAT(mmio.ops,
              ElementsAre(FakeMmio::Op{false, base, 8, 0}, FakeMmio::Op{false, base + 4, 4, 0},
                          FakeMmio::Op{true, base + 8, 8, 0x0102030405060708ull},
                          FakeMmio::Op{true, base + 0x10, 4, 0xAABBCCDD}));
}

TEST(GuestMemoryTest, MmioMisalignedAccessesSplitIntoNaturallyAlignedPieces) {
  auto mem = GuestMemory::Create(1 * kMiB);
  FakeMmio mmio;
  mem->SetMmioHandler(&mmio);
  const uint64_t base = 0xFEC00000;
  // 8 bytes at base+1: 1 @1, 2 @2, 4 @4, 1 @8.
  uint8_t buf[8];
  mem->Read(base + 1, buf, 8);
  EXPECT_THAT(
      mmio.ops,
      ElementsAre(FakeMmio::Op{false, base + 1, 1, 0}, FakeMmio::Op{false, base + 2, 2, 0},
                  FakeMmio::Op{false, base + 4, 4, 0}, FakeMmio::Op{false, base + 8, 1, 0}));
  uint64_t expect = 0;
  expect |= FakeMmio::ValueFor(base + 1, 1);
  expect |= FakeMmio::ValueFor(base + 2, 2) << 8;
  expect |= FakeMmio::ValueFor(base + 4, 4) << 24;
  expect |= FakeMmio::ValueFor(base + 8, 1) << 56;
  uint64_t got;
  std::memcpy(&got, buf, 8);
  EXPECT_EQ(got, expect);

  mmio.ops.clear();
  const uint8_t src[3] = {0x11, 0x22, 0x33};
  mem->Write(base + 2, src, 3);  // 2 @2, 1 @4
  EXPECT_THAT(mmio.ops, ElementsAre(FakeMmio::Op{true, base + 2, 2, 0x2211},
                                    FakeMmio::Op{true, base + 4, 1, 0x33}));
}

TEST(GuestMemoryTest, AccessSpanningRamAndMmio) {
  auto mem = GuestMemory::Create(1 * kMiB);
  FakeMmio mmio;
  mem->SetMmioHandler(&mmio);
  const uint64_t end = 1 * kMiB;
  mem->WriteU32(end - 4, 0xA1B2C3D4);
  uint64_t v = mem->ReadU64(end - 4);
  EXPECT_EQ(v & 0xFFFFFFFFu, 0xA1B2C3D4u);
  EXPECT_EQ(v >> 32, FakeMmio::ValueFor(end, 4));
  EXPECT_THAT(mmio.ops, ElementsAre(FakeMmio::Op{false, end, 4, 0}));

  mmio.ops.clear();
  mem->WriteU64(end - 2, 0x8877665544332211ull);
  EXPECT_EQ(mem->ReadU32(end - 4) >> 16, 0x2211u);
  // The MMIO part: 6 bytes at `end` -> 4 then 2.
  EXPECT_EQ(mmio.ops.front(), (FakeMmio::Op{true, end, 4, 0x66554433}));
  EXPECT_EQ(mmio.ops[1], (FakeMmio::Op{true, end + 4, 2, 0x8877}));
}

TEST(GuestMemoryTest, CrossPageRamCopy) {
  auto mem = GuestMemory::Create(1 * kMiB);
  std::vector<uint8_t> src(3 * kPageSize);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 7);
  mem->Write(0x1800, src.data(), src.size());
  std::vector<uint8_t> dst(src.size());
  mem->Read(0x1800, dst.data(), dst.size());
  EXPECT_EQ(src, dst);
  EXPECT_EQ(mem->host_base()[0x1800 + 5000], src[5000]);
}

class CodePageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem = GuestMemory::Create(4 * kMiB);
    mem->SetCodeWriteObserver([this](uint64_t page) { calls.push_back(page); });
  }
  std::unique_ptr<GuestMemory> mem;
  std::vector<uint64_t> calls;
};

TEST_F(CodePageTest, NoCallsWhenNothingIsMarked) {
  uint8_t buf[64] = {};
  mem->Write(0x2000, buf, sizeof(buf));
  mem->WriteU64(0x5000, 1);
  EXPECT_TRUE(calls.empty());
}

TEST_F(CodePageTest, MarkClearAndQuery) {
  EXPECT_FALSE(mem->IsCodePage(0x7000));
  mem->MarkCodePage(0x7123);  // any address in the page
  EXPECT_TRUE(mem->IsCodePage(0x7000));
  EXPECT_TRUE(mem->IsCodePage(0x7FFF));
  EXPECT_FALSE(mem->IsCodePage(0x6FFF));
  EXPECT_FALSE(mem->IsCodePage(0x8000));
  mem->MarkCodePage(0x7000);  // marking twice is idempotent
  mem->ClearCodePage(0x7000);
  EXPECT_FALSE(mem->IsCodePage(0x7000));
  mem->WriteU32(0x7000, 1);
  EXPECT_TRUE(calls.empty());
  // Outside the reservation: ignored.
  mem->MarkCodePage(1ull << 44);
  EXPECT_FALSE(mem->IsCodePage(1ull << 44));
}

TEST_F(CodePageTest, ObserverFiresOncePerWrittenCodePage) {
  mem->MarkCodePage(0x10000);
  mem->MarkCodePage(0x12000);
  mem->MarkCodePage(0x20000);
  // One write covering 0x10000..0x12FFF: pages 0x10000 and 0x12000, not 0x11000.
  std::vector<uint8_t> buf(3 * kPageSize, 0x90);
  mem->Write(0x10000, buf.data(), buf.size());
  EXPECT_THAT(calls, ElementsAre(0x10000u, 0x12000u));
  // The observer runs before the write lands.
  calls.clear();
  mem->SetCodeWriteObserver([&](uint64_t page) {
    calls.push_back(page);
    if (page == 0x12000) {
      EXPECT_EQ(mem->ReadU32(page), 0x90909090u);
    }
  });
  mem->WriteU32(0x12000, 0xCCCCCCCC);
  EXPECT_THAT(calls, ElementsAre(0x12000u));
  EXPECT_EQ(mem->ReadU32(0x12000), 0xCCCCCCCCu);
  // A write to a non-code page does not fire; a write ending right before a code page neither.
  calls.clear();
  mem->WriteU64(0x11000, 0);
  mem->Write(0x1F000, buf.data(), kPageSize);
  EXPECT_TRUE(calls.empty());
  // A one-byte write at the last byte of a code page.
  mem->Write(0x20FFF, buf.data(), 1);
  EXPECT_THAT(calls, ElementsAre(0x20000u));
}

TEST_F(CodePageTest, ObserverAcrossBitmapWords) {
  // Pages 63, 64 and 130 sit in different bitmap words.
  for (uint64_t page : {63u, 64u, 130u}) mem->MarkCodePage(page * kPageSize);
  std::vector<uint8_t> buf(200 * kPageSize);
  mem->Write(0, buf.data(), buf.size());
  EXPECT_THAT(calls, ElementsAre(63 * kPageSize, 64 * kPageSize, 130 * kPageSize));
  calls.clear();
  mem->Write(65 * kPageSize, buf.data(), 65 * kPageSize);  // pages 65..129
  EXPECT_TRUE(calls.empty());
}

TEST_F(CodePageTest, NotifyWriteWithoutAnObserverIsHarmless) {
  mem->SetCodeWriteObserver(nullptr);
  mem->MarkCodePage(0x3000);
  mem->WriteU32(0x3000, 7);
  EXPECT_EQ(mem->ReadU32(0x3000), 7u);
}

TEST_F(CodePageTest, ConcurrentMarkAndClearKeepBitsConsistent) {
  // Each thread owns pages interleaved with the others' in the same bitmap words.
  constexpr int kThreads = 4;
  constexpr int kPagesPerThread = 64;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 200; ++round) {
        for (int i = 0; i < kPagesPerThread; ++i) {
          const uint64_t page = static_cast<uint64_t>(i * kThreads + t) * kPageSize;
          mem->MarkCodePage(page);
          if (round % 2 == 1 || i % 2 == 1) mem->ClearCodePage(page);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  // Last round is odd: everything cleared.
  for (int p = 0; p < kThreads * kPagesPerThread; ++p) EXPECT_FALSE(mem->IsCodePage(p * kPageSize));
  std::vector<uint8_t> buf(kThreads * kPagesPerThread * kPageSize);
  mem->Write(0, buf.data(), buf.size());
  EXPECT_TRUE(calls.empty());
}

}  // namespace
}  // namespace rove
