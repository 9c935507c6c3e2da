#include "rove/mmu/linear_memory.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <numeric>
#include <vector>

#include "page_tables.h"

namespace rove {
namespace {

using namespace rove::test;
using namespace paging_bits;
using ::testing::ElementsAre;
namespace pf = pf_error;

constexpr uint64_t kMiB = 1ull << 20;

// Linear layout used by most tests (4-level paging):
//   0x10000 -> phys 0x200000 (user, RW)
//   0x11000 -> phys 0x500000 (user, RW)   -- not contiguous with the page before
//   0x12000    not mapped
//   0x13000 -> phys 0x300000 (user, read-only)
//   0x14000 -> phys 0x301000 (user, RW, NX)
class LinearMemoryTest : public ::testing::Test {
 protected:
  explicit LinearMemoryTest(Mode mode = Mode::k4Level)
      : mem_(GuestMemory::Create(16 * kMiB)), pt_(*mem_, mode), lin_(*mem_) {
    regs_ = pt_.Regs();
  }
  void SetUp() override {
    pte10_ = pt_.Map(0x10000, 0x200000, k4K, pte::kUser).back();
    pte11_ = pt_.Map(0x11000, 0x500000, k4K, pte::kUser).back();
    pt_.Map(0x13000, 0x300000, k4K, pte::kP | pte::kUs);
    pt_.Map(0x14000, 0x301000, k4K, pte::kUser | (pt_.wide() ? pte::kXd : 0));
    // Recognisable contents.
    for (uint64_t page : {0x200000ull, 0x500000ull, 0x300000ull, 0x301000ull}) {
      for (uint64_t i = 0; i < kPageSize; ++i) {
        mem_->host_base()[page + i] = static_cast<uint8_t>((page >> 12) + i);
      }
    }
  }
  std::vector<uint8_t> Phys(uint64_t gpa, size_t len) {
    std::vector<uint8_t> v(len);
    mem_->Read(gpa, v.data(), len);
    return v;
  }

  std::unique_ptr<GuestMemory> mem_;
  PageTables pt_;
  LinearMemory lin_;
  PagingRegs regs_;
  uint64_t pte10_ = 0;
  uint64_t pte11_ = 0;
  const LinearAccessMode kSup{};
  const LinearAccessMode kUser{.user = true};
};

TEST_F(LinearMemoryTest, CrossPageRead) {
  uint8_t buf[16];
  ASSERT_EQ(lin_.Read(regs_, kUser, 0x10FF8, buf, sizeof(buf)), std::nullopt);
  const auto a = Phys(0x200FF8, 8);
  const auto b = Phys(0x500000, 8);
  EXPECT_EQ(0, std::memcmp(buf, a.data(), 8));
  EXPECT_EQ(0, std::memcmp(buf + 8, b.data(), 8));
  EXPECT_EQ(pt_.Get(pte10_) & (pte::kA | pte::kD), pte::kA);
  EXPECT_EQ(pt_.Get(pte11_) & (pte::kA | pte::kD), pte::kA);
}

TEST_F(LinearMemoryTest, CrossPageWrite) {
  uint8_t src[16];
  std::iota(src, src + 16, 0xA0);
  ASSERT_EQ(lin_.Write(regs_, kUser, 0x10FF8, src, sizeof(src)), std::nullopt);
  EXPECT_EQ(Phys(0x200FF8, 8), std::vector<uint8_t>(src, src + 8));
  EXPECT_EQ(Phys(0x500000, 8), std::vector<uint8_t>(src + 8, src + 16));
  EXPECT_EQ(pt_.Get(pte10_) & (pte::kA | pte::kD), pte::kA | pte::kD);
  EXPECT_EQ(pt_.Get(pte11_) & (pte::kA | pte::kD), pte::kA | pte::kD);
}

TEST_F(LinearMemoryTest, FaultOnSecondPageLeavesMemoryAndTablesUnchanged) {
  const auto before = Phys(0x500000, kPageSize);
  const uint64_t pte_before = pt_.Get(pte11_);
  uint8_t src[16] = {};
  const auto fault = lin_.Write(regs_, kSup, 0x11FF8, src, sizeof(src));
  ASSERT_TRUE(fault.has_value());
  EXPECT_EQ(fault->linear, 0x12000u);  // CR2: the first byte in the faulting page
  EXPECT_EQ(fault->error_code, pf::kWrite);
  EXPECT_EQ(Phys(0x500000, kPageSize), before);
  EXPECT_EQ(pt_.Get(pte11_), pte_before);  // no A/D from a failed split write
}

TEST_F(LinearMemoryTest, FaultOnFirstPage) {
  uint8_t buf[32];
  auto fault = lin_.Read(regs_, kSup, 0x12FF0, buf, sizeof(buf));
  ASSERT_TRUE(fault.has_value());
  EXPECT_EQ(fault->linear, 0x12FF0u);
  EXPECT_EQ(fault->error_code, 0u);
  fault = lin_.Read(regs_, kUser, 0x12FF0, buf, sizeof(buf));
  ASSERT_TRUE(fault.has_value());
  EXPECT_EQ(fault->error_code, pf::kUser);
}

TEST_F(LinearMemoryTest, ReadOnlyPageFaultsUserWriteWithoutTouchingTheNextPage) {
  const auto before = Phys(0x301000, 16);
  uint8_t src[16] = {};
  auto fault = lin_.Write(regs_, kUser, 0x13FF8, src, sizeof(src));
  ASSERT_TRUE(fault.has_value());
  EXPECT_EQ(fault->linear, 0x13FF8u);
  EXPECT_EQ(fault->error_code, pf::kPresent | pf::kWrite | pf::kUser);
  EXPECT_EQ(Phys(0x301000, 16), before);
  // Supervisor with WP: also a fault; without WP: allowed.
  fault = lin_.Write(regs_, kSup, 0x13FF8, src, sizeof(src));
  ASSERT_TRUE(fault.has_value());
  EXPECT_EQ(fault->error_code, pf::kPresent | pf::kWrite);
  regs_.cr0 &= ~kCr0Wp;
  EXPECT_EQ(lin_.Write(regs_, kSup, 0x13FF8, src, sizeof(src)), std::nullopt);
  EXPECT_EQ(Phys(0x301000, 8), std::vector<uint8_t>(8, 0));
}

TEST_F(LinearMemoryTest, FetchHonoursNx) {
  uint8_t buf[4];
  auto fault = lin_.Fetch(regs_, kUser, 0x14000, buf, sizeof(buf));
  ASSERT_TRUE(fault.has_value());
  EXPECT_EQ(fault->error_code, pf::kPresent | pf::kUser | pf::kFetch);
  // Data reads of the NX page work.
  EXPECT_EQ(lin_.Read(regs_, kUser, 0x14000, buf, sizeof(buf)), std::nullopt);
  // A fetch crossing from an executable page into the NX page faults on the second page.
  fault = lin_.Fetch(regs_, kUser, 0x13FFE, buf, sizeof(buf));
  ASSERT_TRUE(fault.has_value());
  EXPECT_EQ(fault->linear, 0x14000u);
  ASSERT_EQ(lin_.Fetch(regs_, kUser, 0x10FFE, buf, sizeof(buf)), std::nullopt);
  EXPECT_EQ(buf[0], mem_->host_base()[0x200FFE]);
  EXPECT_EQ(buf[3], mem_->host_base()[0x500001]);
}

TEST_F(LinearMemoryTest, SmapThroughAccessMode) {
  regs_.cr4 |= kCr4Smap;
  uint8_t buf[4];
  auto fault = lin_.Read(regs_, kSup, 0x10000, buf, sizeof(buf));
  ASSERT_TRUE(fault.has_value());
  EXPECT_EQ(fault->error_code, pf::kPresent);
  EXPECT_EQ(lin_.Read(regs_, LinearAccessMode{.ac = true}, 0x10000, buf, sizeof(buf)),
            std::nullopt);
  // An implicit access (e.g. delivering an exception from CPL 3) ignores AC and CPL.
  const LinearAccessMode implicit{.user = true, .ac = true, .implicit_supervisor = true};
  fault = lin_.Write(regs_, implicit, 0x10000, buf, sizeof(buf));
  ASSERT_TRUE(fault.has_value());
  EXPECT_EQ(fault->error_code, pf::kPresent | pf::kWrite);
}

TEST_F(LinearMemoryTest, WritesNotifyTheCodeObserver) {
  std::vector<uint64_t> calls;
  mem_->SetCodeWriteObserver([&](uint64_t page) { calls.push_back(page); });
  mem_->MarkCodePage(0x500000);
  uint8_t src[8] = {};
  ASSERT_EQ(lin_.Write(regs_, kSup, 0x10FFC, src, sizeof(src)), std::nullopt);
  EXPECT_THAT(calls, ElementsAre(0x500000u));
  calls.clear();
  ASSERT_EQ(lin_.Write(regs_, kSup, 0x10000, src, sizeof(src)), std::nullopt);
  EXPECT_TRUE(calls.empty());
  // A faulting write does not notify either.
  EXPECT_TRUE(lin_.Write(regs_, kSup, 0x11FFC, src, sizeof(src)).has_value());
  EXPECT_TRUE(calls.empty());
}

TEST_F(LinearMemoryTest, TranslateOneAddress) {
  const WalkResult r = lin_.Translate(regs_, kUser, 0x11234, Access::kWrite);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.phys, 0x500234u);
  EXPECT_EQ(pt_.Get(pte11_) & (pte::kA | pte::kD), pte::kA | pte::kD);
  EXPECT_EQ(lin_.Translate(regs_, kUser, 0x13000, Access::kWrite).error_code,
            pf::kPresent | pf::kWrite | pf::kUser);
  EXPECT_EQ(&lin_.physical(), mem_.get());
}

TEST_F(LinearMemoryTest, ZeroLengthAccessesNothing) {
  EXPECT_EQ(lin_.Read(regs_, kSup, 0x12000, nullptr, 0), std::nullopt);
  EXPECT_EQ(lin_.Write(regs_, kSup, 0x12000, nullptr, 0), std::nullopt);
}

TEST_F(LinearMemoryTest, ManyPageAccess) {
  // Eight linear pages at 0x400000 mapped to physical pages in reverse order.
  for (uint64_t i = 0; i < 8; ++i) {
    pt_.Map(0x400000 + i * kPageSize, 0x800000 + (7 - i) * kPageSize, k4K, pte::kUser);
  }
  std::vector<uint8_t> src(6 * kPageSize + 100);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 13 + 1);
  const uint64_t start = 0x400000 + 0x123;
  ASSERT_EQ(lin_.Write(regs_, kUser, start, src.data(), src.size()), std::nullopt);
  std::vector<uint8_t> back(src.size());
  ASSERT_EQ(lin_.Read(regs_, kUser, start, back.data(), back.size()), std::nullopt);
  EXPECT_EQ(back, src);
  // Byte k of the access lives in linear page (start+k)/4K -> its physical page.
  for (size_t k : {size_t{0}, size_t{4000}, size_t{10000}, src.size() - 1}) {
    const uint64_t lin = start + k;
    const uint64_t page = (lin - 0x400000) / kPageSize;
    EXPECT_EQ(mem_->host_base()[0x800000 + (7 - page) * kPageSize + (lin & 0xFFF)], src[k]);
  }
  // Past the mapped range: a fault on page 8, nothing written.
  std::vector<uint8_t> zeros(src.size() + 2 * kPageSize, 0);
  auto fault = lin_.Write(regs_, kUser, start, zeros.data(), zeros.size());
  ASSERT_TRUE(fault.has_value());
  EXPECT_EQ(fault->linear, 0x408000u);
  ASSERT_EQ(lin_.Read(regs_, kUser, start, back.data(), back.size()), std::nullopt);
  EXPECT_EQ(back, src);
}

TEST(LinearMemoryPagingOffTest, PhysicalAccess) {
  auto mem = GuestMemory::Create(4 * kMiB);
  LinearMemory lin(*mem);
  PagingRegs regs;
  regs.cr0 = 1;
  const uint32_t v = 0x12345678;
  ASSERT_EQ(lin.Write(regs, {}, 0x7FFE, &v, 4), std::nullopt);
  EXPECT_EQ(mem->ReadU32(0x7FFE), v);
  uint32_t back = 0;
  ASSERT_EQ(lin.Fetch(regs, {.user = true}, 0x7FFE, &back, 4), std::nullopt);
  EXPECT_EQ(back, v);
}

class LinearMemory32Test : public LinearMemoryTest {
 protected:
  LinearMemory32Test() : LinearMemoryTest(Mode::k32) {}
};

TEST_F(LinearMemory32Test, AccessWrapsAt4GiB) {
  pt_.Map(0xFFFFF000, 0x600000, k4K, pte::kUser);
  pt_.Map(0x00000000, 0x700000, k4K, pte::kUser);
  const uint64_t v = 0x1122334455667788ull;
  ASSERT_EQ(lin_.Write(regs_, kUser, 0xFFFFFFFC, &v, 8), std::nullopt);
  EXPECT_EQ(mem_->ReadU32(0x600FFC), 0x55667788u);
  EXPECT_EQ(mem_->ReadU32(0x700000), 0x11223344u);
  uint64_t back = 0;
  ASSERT_EQ(lin_.Read(regs_, kUser, 0xFFFFFFFC, &back, 8), std::nullopt);
  EXPECT_EQ(back, v);
}

TEST_F(LinearMemory32Test, CrossPageReadWith4ByteEntries) {
  uint8_t buf[16];
  ASSERT_EQ(lin_.Read(regs_, kUser, 0x10FF8, buf, sizeof(buf)), std::nullopt);
  EXPECT_EQ(buf[0], mem_->host_base()[0x200FF8]);
  EXPECT_EQ(buf[15], mem_->host_base()[0x500007]);
  // No NX in 32-bit paging: 0x14000 is executable.
  EXPECT_EQ(lin_.Fetch(regs_, kUser, 0x14000, buf, 4), std::nullopt);
}

}  // namespace
}  // namespace rove
