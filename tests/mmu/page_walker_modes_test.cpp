// Page-walker tests specific to one paging mode: large pages, reserved bits, NX, PSE-36,
// PAE PDPTEs, 5-level indexing, canonical addresses, tables outside RAM.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "page_tables.h"
#include "rove/mmu/page_walker.h"

namespace rove {
namespace {

using namespace rove::test;
using namespace paging_bits;
namespace pf = pf_error;

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint32_t kRsvdFault = pf::kPresent | pf::kReserved;

class ModeTest : public ::testing::Test {
 protected:
  explicit ModeTest(Mode mode) : mem_(GuestMemory::Create(64 * kMiB)), pt_(*mem_, mode) {
    regs_ = pt_.Regs();
  }
  WalkResult Walk(uint64_t linear, Access access, bool user = false) {
    WalkRequest req;
    req.linear = linear;
    req.access = access;
    req.user = user;
    return WalkPageTables(*mem_, regs_, req);
  }
  // Expects a reserved-bit fault for every kind of access, with the right error code.
  void ExpectReserved(uint64_t linear, uint32_t fetch_bit) {
    EXPECT_EQ(Walk(linear, Access::kRead).error_code, kRsvdFault);
    EXPECT_EQ(Walk(linear, Access::kWrite, true).error_code, kRsvdFault | pf::kWrite | pf::kUser);
    EXPECT_EQ(Walk(linear, Access::kExecute).error_code, kRsvdFault | fetch_bit);
    EXPECT_FALSE(Walk(linear, Access::kRead).ok);
  }

  std::unique_ptr<GuestMemory> mem_;
  PageTables pt_;
  PagingRegs regs_;
};

// ---------------------------------------------------------------------------------------------
// 32-bit paging

class Bits32Test : public ModeTest {
 protected:
  Bits32Test() : ModeTest(Mode::k32) {}
};

TEST_F(Bits32Test, FourMegPage) {
  const auto used = pt_.Map(0x00C00000, 0x01C00000, k4M, pte::kUser);
  ASSERT_EQ(used.size(), 1u);
  WalkResult r = Walk(0x00C12345, Access::kRead);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.phys, 0x01C12345u);
  EXPECT_EQ(r.page_size, k4M);
  EXPECT_EQ(pt_.Get(used[0]) & (pte::kA | pte::kD), pte::kA);
  r = Walk(0x00FFFFFF, Access::kWrite);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.phys, 0x01FFFFFFu);
  EXPECT_EQ(pt_.Get(used[0]) & (pte::kA | pte::kD), pte::kA | pte::kD);
}

TEST_F(Bits32Test, Pse36HighPhysicalBits) {
  pt_.Map(0x00400000, 0x12'3440'0000ull, k4M, pte::kUser);
  const WalkResult r = Walk(0x00456789, Access::kRead);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.phys, 0x12'3445'6789ull);
}

TEST_F(Bits32Test, LargePageBit21IsReserved) {
  const auto used = pt_.Map(0x00400000, 0x00800000, k4M, pte::kUser);
  pt_.Or(used[0], 1ull << 21);
  ExpectReserved(0x00400000, 0);
  EXPECT_EQ(pt_.Get(used[0]) & pte::kA, 0u);  // the faulting entry gets no A
  regs_.cr4 |= kCr4Smep;
  EXPECT_EQ(Walk(0x00400000, Access::kExecute).error_code, kRsvdFault | pf::kFetch);
}

TEST_F(Bits32Test, PsIgnoredWithoutCr4Pse) {
  const auto used = pt_.Map(0x00403000, 0x02345000, k4K, pte::kUser);
  pt_.Or(used[0], pte::kPs);
  regs_.cr4 &= ~kCr4Pse;
  WalkResult r = Walk(0x00403010, Access::kRead);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.phys, 0x02345010u);
  EXPECT_EQ(r.page_size, k4K);
  // With PSE the same PDE maps a 4 MiB page: bits 31:22 of the entry, and bits 20:13 (the
  // low bits of the page table's address) become physical bits 39:32.
  regs_.cr4 |= kCr4Pse;
  r = Walk(0x00403010, Access::kRead);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.page_size, k4M);
  const uint64_t pde = pt_.Get(used[0]);
  EXPECT_EQ(r.phys, (pde & 0xFFC00000u) | (((pde >> 13) & 0xFF) << 32) | 0x3010u);
}

TEST_F(Bits32Test, NoExecuteDisableBit) {
  // NXE has no effect on 32-bit paging: every page is executable and I/D is not reported
  // without SMEP.
  regs_.efer |= kEferNxe;
  pt_.Map(0x00403000, 0x02345000, k4K, pte::kUser);
  const WalkResult r = Walk(0x00403000, Access::kExecute, true);
  ASSERT_TRUE(r.ok);
  EXPECT_TRUE(r.executable);
  EXPECT_EQ(Walk(0x00500000, Access::kExecute).error_code, 0u);
}

TEST_F(Bits32Test, UpperLinearBitsAndCr3FlagsIgnored) {
  pt_.Map(0x00403000, 0x02345000, k4K, pte::kUser);
  regs_.cr3 |= 0x18;  // PWT, PCD
  const WalkResult r = Walk(0x1'0040'3004ull, Access::kRead);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.phys, 0x02345004u);
}

TEST_F(Bits32Test, GlobalFourMegPage) {
  pt_.Map(0x00400000, 0x00800000, k4M, pte::kUser | pte::kG);
  regs_.cr4 |= kCr4Pge;
  EXPECT_TRUE(Walk(0x00400000, Access::kRead).global);
}

// ---------------------------------------------------------------------------------------------
// PAE paging

class PaeTest : public ModeTest {
 protected:
  PaeTest() : ModeTest(Mode::kPae) {}
};

TEST_F(PaeTest, TwoMegPage) {
  const auto used = pt_.Map(0x40200000, 0x00600000, k2M, pte::kUser | (1ull << 12) /* PAT */);
  ASSERT_EQ(used.size(), 2u);
  WalkResult r = Walk(0x40212345, Access::kWrite);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.phys, 0x00612345u);
  EXPECT_EQ(r.page_size, k2M);
  EXPECT_EQ(pt_.Get(used[0]) & pte::kA, 0u);  // PDPTEs have no accessed bit
  EXPECT_EQ(pt_.Get(used[1]) & (pte::kA | pte::kD), pte::kA | pte::kD);
}

TEST_F(PaeTest, TwoMegPageLowBitsReserved) {
  const auto used = pt_.Map(0x40200000, 0x00600000, k2M, pte::kUser);
  pt_.Or(used[1], 1ull << 13);
  ExpectReserved(0x40200000, pf::kFetch);
}

TEST_F(PaeTest, PdpteReservedBits) {
  const auto used = pt_.Map(0x80403000, 0x02345000, k4K, pte::kUser);
  for (unsigned bit : {1u, 2u, 5u, 6u, 7u, 8u, 46u, 52u, 62u, 63u}) {
    SCOPED_TRACE(testing::Message() << "bit " << bit);
    pt_.Or(used[0], 1ull << bit);
    ExpectReserved(0x80403000, pf::kFetch);
    EXPECT_EQ(pt_.Get(used[1]) & pte::kA, 0u);
    pt_.Clear(used[0], 1ull << bit);
  }
  EXPECT_TRUE(Walk(0x80403000, Access::kRead).ok);
  // Software-available bits 11:9 are not reserved.
  pt_.Or(used[0], 0xE00);
  EXPECT_TRUE(Walk(0x80403000, Access::kRead).ok);
}

TEST_F(PaeTest, BitsAboveMaxPhyAddrReservedUpTo62) {
  const auto used = pt_.Map(0x00403000, 0x02345000, k4K, pte::kUser);
  for (size_t level : {1u, 2u}) {
    for (unsigned bit : {46u, 51u, 52u, 58u, 62u}) {
      SCOPED_TRACE(testing::Message() << "level " << level << " bit " << bit);
      pt_.Or(used[level], 1ull << bit);
      ExpectReserved(0x00403000, pf::kFetch);
      pt_.Clear(used[level], 1ull << bit);
    }
  }
  // The highest physical address below MAXPHYADDR is fine.
  pt_.Set(used[2], 0x3FFF'FFFF'F000ull | pte::kUser);
  const WalkResult r = Walk(0x00403ABC, Access::kRead);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.phys, 0x3FFF'FFFF'FABCull);
}

TEST_F(PaeTest, NoExecute) {
  const auto used = pt_.Map(0x00403000, 0x02345000, k4K, pte::kUser | pte::kXd);
  WalkResult r = Walk(0x00403000, Access::kRead);
  ASSERT_TRUE(r.ok);
  EXPECT_FALSE(r.executable);
  EXPECT_EQ(Walk(0x00403000, Access::kExecute).error_code, pf::kPresent | pf::kFetch);
  EXPECT_EQ(Walk(0x00403000, Access::kExecute, true).error_code,
            pf::kPresent | pf::kFetch | pf::kUser);
  // XD in the PDE alone is enough.
  pt_.Clear(used[2], pte::kXd);
  pt_.Or(used[1], pte::kXd);
  EXPECT_EQ(Walk(0x00403000, Access::kExecute).error_code, pf::kPresent | pf::kFetch);
  pt_.Clear(used[1], pte::kXd);
  EXPECT_TRUE(Walk(0x00403000, Access::kExecute).ok);
}

TEST_F(PaeTest, XdIsReservedWithoutNxe) {
  const auto used = pt_.Map(0x00403000, 0x02345000, k4K, pte::kUser | pte::kXd);
  regs_.efer &= ~kEferNxe;
  // Without NXE (and SMEP) I/D is not reported.
  ExpectReserved(0x00403000, 0);
  pt_.Clear(used[2], pte::kXd);
  const WalkResult r = Walk(0x00403000, Access::kExecute);
  ASSERT_TRUE(r.ok);
  EXPECT_TRUE(r.executable);
  EXPECT_EQ(Walk(0x00500000, Access::kExecute).error_code, 0u);
}

TEST_F(PaeTest, PdptIsThirtyTwoByteAligned) {
  EXPECT_EQ(pt_.root() & 0xFFF, 0x40u);  // the helper places it off the page start
  pt_.Map(0xC0000000, 0x00200000, k2M, pte::kUser);
  const WalkResult r = Walk(0xC0000123, Access::kRead);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.phys, 0x00200123u);
}

// ---------------------------------------------------------------------------------------------
// 4-level paging

class Level4Test : public ModeTest {
 protected:
  Level4Test() : ModeTest(Mode::k4Level) {}
};

TEST_F(Level4Test, LargePages) {
  const auto two = pt_.Map(0x7F00'0020'0000ull, 0x00400000, k2M, pte::kUser);
  const auto one = pt_.Map(0x7F00'4000'0000ull, 0x3'C000'0000ull, k1G, pte::kUser);
  ASSERT_EQ(two.size(), 3u);
  ASSERT_EQ(one.size(), 2u);
  WalkResult r = Walk(0x7F00'0021'2345ull, Access::kRead);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.phys, 0x00412345u);
  EXPECT_EQ(r.page_size, k2M);
  EXPECT_EQ(pt_.Get(two[2]) & (pte::kA | pte::kD), pte::kA);
  r = Walk(0x7F00'7FFF'FFF8ull, Access::kWrite);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.phys, 0x3'FFFF'FFF8ull);
  EXPECT_EQ(r.page_size, k1G);
  EXPECT_EQ(pt_.Get(one[0]) & (pte::kA | pte::kD), pte::kA);
  EXPECT_EQ(pt_.Get(one[1]) & (pte::kA | pte::kD), pte::kA | pte::kD);
}

TEST_F(Level4Test, LargePageReservedLowBits) {
  const auto two = pt_.Map(0x0020'0000ull, 0x00400000, k2M, pte::kUser | (1ull << 12));
  const auto one = pt_.Map(0x80'4000'0000ull, 0x4000'0000ull, k1G, pte::kUser | (1ull << 12));
  EXPECT_TRUE(Walk(0x0020'0000ull, Access::kRead).ok);  // PAT bit is fine
  EXPECT_TRUE(Walk(0x80'4000'0000ull, Access::kRead).ok);
  pt_.Or(two[2], 1ull << 20);
  ExpectReserved(0x0020'0000ull, pf::kFetch);
  for (unsigned bit : {13u, 21u, 29u}) {
    pt_.Or(one[1], 1ull << bit);
    ExpectReserved(0x80'4000'0000ull, pf::kFetch);
    pt_.Clear(one[1], 1ull << bit);
  }
}

TEST_F(Level4Test, PsIsReservedInPml4e) {
  const auto used = pt_.Map(0x00403000, 0x02345000, k4K, pte::kUser);
  pt_.Or(used[0], pte::kPs);
  ExpectReserved(0x00403000, pf::kFetch);
  EXPECT_EQ(pt_.Get(used[0]) & pte::kA, 0u);
}

TEST_F(Level4Test, ReservedAndIgnoredHighBits) {
  const auto used = pt_.Map(0x00403000, 0x02345000, k4K, pte::kUser);
  for (size_t level = 0; level < used.size(); ++level) {
    for (unsigned bit : {46u, 49u, 51u}) {
      SCOPED_TRACE(testing::Message() << "level " << level << " bit " << bit);
      for (uint64_t a : used) pt_.Clear(a, pte::kA);
      pt_.Or(used[level], 1ull << bit);
      ExpectReserved(0x00403000, pf::kFetch);
      // Levels above the faulting one were used and got A; the faulting one did not.
      for (size_t i = 0; i < used.size(); ++i) {
        EXPECT_EQ((pt_.Get(used[i]) & pte::kA) != 0, i < level) << "entry " << i;
      }
      pt_.Clear(used[level], 1ull << bit);
    }
    // Bits 62:52 and 11:9 are ignored (protection keys are not enabled).
    pt_.Or(used[level], 0x7FF0'0000'0000'0E00ull);
  }
  const WalkResult r = Walk(0x00403000, Access::kWrite);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.phys, 0x02345000u);
}

TEST_F(Level4Test, XdReservedWithoutNxeAtAnyLevel) {
  const auto used = pt_.Map(0x00403000, 0x02345000, k4K, pte::kUser);
  regs_.efer &= ~kEferNxe;
  pt_.Or(used[0], pte::kXd);
  ExpectReserved(0x00403000, 0);
  regs_.efer |= kEferNxe;
  WalkResult r = Walk(0x00403000, Access::kRead);
  ASSERT_TRUE(r.ok);
  EXPECT_FALSE(r.executable);
  EXPECT_EQ(Walk(0x00403000, Access::kExecute).error_code, pf::kPresent | pf::kFetch);
  // SMEP turns I/D on even without NXE.
  pt_.Clear(used[0], pte::kXd);
  regs_.efer &= ~kEferNxe;
  regs_.cr4 |= kCr4Smep;
  EXPECT_EQ(Walk(0x00500000, Access::kExecute).error_code, pf::kFetch);
}

TEST_F(Level4Test, HigherHalfAndCr3LowBits) {
  pt_.Map(0xFFFF'8000'0000'1000ull, 0x00345000, k4K, pte::kP | pte::kRw);
  regs_.cr3 |= 0x18 | 0x5 | (1ull << 63);  // PWT/PCD or a PCID, and the no-flush bit
  const WalkResult r = Walk(0xFFFF'8000'0000'1234ull, Access::kRead);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.phys, 0x00345234u);
}

TEST_F(Level4Test, GlobalLargePages) {
  pt_.Map(0x0020'0000ull, 0x00400000, k2M, pte::kUser | pte::kG);
  pt_.Map(0x80'4000'0000ull, 0x4000'0000ull, k1G, pte::kUser);
  regs_.cr4 |= kCr4Pge;
  EXPECT_TRUE(Walk(0x0020'0000ull, Access::kRead).global);
  EXPECT_FALSE(Walk(0x80'4000'0000ull, Access::kRead).global);
}

// A fake device whose registers hold a page table.
class PageTableMmio : public MmioHandler {
 public:
  uint64_t MmioRead(uint64_t gpa, unsigned width) override {
    ++reads;
    const uint64_t v = gpa == entry_gpa ? entry : 0;
    return width == 8 ? v : v & ((1ull << (8 * width)) - 1);
  }
  void MmioWrite(uint64_t, unsigned, uint64_t) override { ++writes; }
  uint64_t entry_gpa = 0;
  uint64_t entry = 0;
  int reads = 0;
  int writes = 0;
};

TEST_F(Level4Test, PageTableOutsideRam) {
  const uint64_t linear = 0x00403000;
  const auto used = pt_.Map(linear, 0x02345000, k4K, pte::kUser);
  const uint64_t mmio_table = 0xFED00000;  // not RAM
  pt_.Set(used[2], mmio_table | pte::kUser);
  PageTableMmio dev;
  dev.entry_gpa = mmio_table + ((linear >> 12) & 0x1FF) * 8;
  dev.entry = 0x02345000 | pte::kUser;
  mem_->SetMmioHandler(&dev);
  const WalkResult r = Walk(linear + 8, Access::kWrite);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.phys, 0x02345008u);
  EXPECT_FALSE(r.dirty);  // D cannot be set outside RAM
  EXPECT_EQ(dev.reads, 1);
  EXPECT_EQ(dev.writes, 0);
  EXPECT_NE(pt_.Get(used[2]) & pte::kA, 0u);  // the PDE in RAM did get A
  // Without a device the entry reads as all ones: reserved bits set.
  mem_->SetMmioHandler(nullptr);
  ExpectReserved(linear, pf::kFetch);
}

TEST(CanonicalTest, FortyEightAndFiftySevenBits) {
  PagingRegs regs;
  regs.cr4 = kCr4Pae;
  EXPECT_TRUE(IsCanonical(regs, 0));
  EXPECT_TRUE(IsCanonical(regs, 0x0000'7FFF'FFFF'FFFFull));
  EXPECT_FALSE(IsCanonical(regs, 0x0000'8000'0000'0000ull));
  EXPECT_TRUE(IsCanonical(regs, 0xFFFF'8000'0000'0000ull));
  EXPECT_FALSE(IsCanonical(regs, 0xFFFF'7FFF'FFFF'FFFFull));
  EXPECT_FALSE(IsCanonical(regs, 0x0001'0000'0000'0000ull));
  EXPECT_TRUE(IsCanonical(regs, ~0ull));
  regs.cr4 |= kCr4La57;
  EXPECT_TRUE(IsCanonical(regs, 0x0000'8000'0000'0000ull));
  EXPECT_TRUE(IsCanonical(regs, 0x00FF'FFFF'FFFF'FFFFull));
  EXPECT_FALSE(IsCanonical(regs, 0x0100'0000'0000'0000ull));
  EXPECT_TRUE(IsCanonical(regs, 0xFF00'0000'0000'0000ull));
  EXPECT_FALSE(IsCanonical(regs, 0xFEFF'FFFF'FFFF'FFFFull));
  EXPECT_FALSE(IsCanonical(regs, 0x8000'0000'0000'0000ull));
}

// ---------------------------------------------------------------------------------------------
// 5-level paging

class Level5Test : public ModeTest {
 protected:
  Level5Test() : ModeTest(Mode::k5Level) {}
};

TEST_F(Level5Test, Pml5IndexSelectsTheTree) {
  // Same bits 47:0, different bits 56:48.
  const uint64_t a = 0x0000'1234'5678'9000ull;
  const uint64_t b = 0x0001'1234'5678'9000ull;
  const uint64_t c = 0xFF80'1234'5678'9000ull;  // negative half, PML5 index 0x180
  const auto used_a = pt_.Map(a, 0x00100000 * 5, k4K, pte::kUser);
  const auto used_b = pt_.Map(b, 0x00100000 * 6, k4K, pte::kUser);
  pt_.Map(c, 0x00100000 * 7, k4K, pte::kUser);
  ASSERT_EQ(used_a.size(), 5u);
  EXPECT_NE(used_a[0], used_b[0]);
  EXPECT_EQ(used_b[0] - pt_.root(), 1 * 8u);
  EXPECT_EQ(Walk(a + 1, Access::kRead).phys, 0x00500001u);
  EXPECT_EQ(Walk(b + 2, Access::kRead).phys, 0x00600002u);
  EXPECT_EQ(Walk(c + 3, Access::kRead).phys, 0x00700003u);
  EXPECT_NE(pt_.Get(used_b[0]) & pte::kA, 0u);
}

TEST_F(Level5Test, LargePagesUnderPml5) {
  pt_.Map(0x00AB'0000'4000'0000ull, 0x8000'0000ull, k1G, pte::kUser);
  pt_.Map(0x00AB'0000'8020'0000ull, 0x00800000, k2M, pte::kUser);
  EXPECT_EQ(Walk(0x00AB'0000'4000'0010ull, Access::kRead).phys, 0x8000'0010ull);
  EXPECT_EQ(Walk(0x00AB'0000'8021'0000ull, Access::kRead).phys, 0x0081'0000ull);
}

TEST_F(Level5Test, PsIsReservedInPml5e) {
  const auto used = pt_.Map(0x00403000, 0x02345000, k4K, pte::kUser);
  pt_.Or(used[0], pte::kPs);
  ExpectReserved(0x00403000, pf::kFetch);
  pt_.Clear(used[0], pte::kPs);
  pt_.Or(used[1], pte::kPs);
  ExpectReserved(0x00403000, pf::kFetch);
  EXPECT_NE(pt_.Get(used[0]) & pte::kA, 0u);
}

}  // namespace
}  // namespace rove
