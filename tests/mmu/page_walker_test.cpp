// Page-walker tests common to every paging mode: translation, accessed/dirty bits, and the
// permission rules of Intel SDM vol. 3 section 4.6 with the exact #PF error code (4.7).
#include "rove/mmu/page_walker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>

#include "page_tables.h"

namespace rove {
namespace {

using namespace rove::test;
using namespace paging_bits;
namespace pf = pf_error;

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kLinear = 0x00403000;  // valid in every mode
constexpr uint64_t kPhys = 0x02345000;

enum class Priv {
  kSupervisor,        // CPL 0-2 explicit access, RFLAGS.AC = 0
  kSupervisorAc,      // CPL 0-2 explicit access, RFLAGS.AC = 1
  kUser,              // CPL 3 explicit access
  kImplicit,          // implicit supervisor access (GDT, IDT, TSS...), AC = 1
  kImplicitFromUser,  // implicit supervisor access made while at CPL 3
};

class WalkerTest : public ::testing::TestWithParam<Mode> {
 protected:
  WalkerTest() : mem_(GuestMemory::Create(64 * kMiB)), pt_(*mem_, GetParam()) {
    regs_ = pt_.Regs();
  }

  WalkResult Walk(uint64_t linear, Access access, Priv priv = Priv::kSupervisor,
                  bool set_ad = true) {
    WalkRequest req;
    req.linear = linear;
    req.access = access;
    req.user = priv == Priv::kUser || priv == Priv::kImplicitFromUser;
    req.ac = priv == Priv::kSupervisorAc || priv == Priv::kImplicit;
    req.implicit_supervisor = priv == Priv::kImplicit || priv == Priv::kImplicitFromUser;
    req.set_ad = set_ad;
    return WalkPageTables(*mem_, regs_, req);
  }

  // Error-code I/D bit for a fetch in this mode with the default registers (NXE is on for
  // the PAE-based modes; 32-bit paging reports I/D only with SMEP).
  uint32_t FetchBit() const {
    const bool id = (regs_.cr4 & kCr4Smep) || ((regs_.cr4 & kCr4Pae) && (regs_.efer & kEferNxe));
    return id ? pf::kFetch : 0;
  }

  // Levels that carry A, U/S and R/W (all but the PAE PDPTE).
  bool HasAttrs(size_t level) const { return !(GetParam() == Mode::kPae && level == 0); }

  std::unique_ptr<GuestMemory> mem_;
  PageTables pt_;
  PagingRegs regs_;
};

TEST_P(WalkerTest, Translates4KPage) {
  pt_.Map(kLinear, kPhys, k4K, pte::kUser);
  for (uint64_t off : {0ull, 0xABCull, 0xFFFull}) {
    const WalkResult r = Walk(kLinear + off, Access::kRead);
    ASSERT_TRUE(r.ok) << std::hex << r.error_code;
    EXPECT_EQ(r.phys, kPhys + off);
    EXPECT_EQ(r.page_size, k4K);
    EXPECT_TRUE(r.writable);
    EXPECT_TRUE(r.user);
    EXPECT_TRUE(r.executable);
    EXPECT_FALSE(r.global);
  }
  // The neighbouring page is not mapped.
  EXPECT_FALSE(Walk(kLinear + k4K, Access::kRead).ok);
  EXPECT_FALSE(Walk(kLinear - 1, Access::kRead).ok);
}

TEST_P(WalkerTest, ReadSetsAccessedOnEveryLevelButNoDirty) {
  const auto used = pt_.Map(kLinear, kPhys, k4K, pte::kUser);
  const WalkResult r = Walk(kLinear, Access::kRead);
  ASSERT_TRUE(r.ok);
  EXPECT_FALSE(r.dirty);
  for (size_t i = 0; i < used.size(); ++i) {
    const uint64_t e = pt_.Get(used[i]);
    EXPECT_EQ((e & pte::kA) != 0, HasAttrs(i)) << "level " << i;
    EXPECT_EQ(e & pte::kD, 0u) << "level " << i;
  }
}

TEST_P(WalkerTest, WriteSetsDirtyOnTheLeafOnly) {
  const auto used = pt_.Map(kLinear, kPhys, k4K, pte::kUser);
  std::vector<uint64_t> before;
  for (uint64_t a : used) before.push_back(pt_.Get(a));
  const WalkResult r = Walk(kLinear, Access::kWrite, Priv::kUser);
  ASSERT_TRUE(r.ok);
  EXPECT_TRUE(r.dirty);
  for (size_t i = 0; i < used.size(); ++i) {
    const bool leaf = i + 1 == used.size();
    uint64_t expected = before[i] | (HasAttrs(i) ? pte::kA : 0) | (leaf ? pte::kD : 0);
    EXPECT_EQ(pt_.Get(used[i]), expected) << "level " << i;  // nothing else changes
  }
  // Walking again changes nothing.
  ASSERT_TRUE(Walk(kLinear, Access::kWrite).ok);
  EXPECT_EQ(pt_.Get(used.back()), before.back() | pte::kA | pte::kD);
}

TEST_P(WalkerTest, ReadReportsExistingDirtyBit) {
  pt_.Map(kLinear, kPhys, k4K, pte::kUser | pte::kD);
  EXPECT_TRUE(Walk(kLinear, Access::kRead).dirty);
}

TEST_P(WalkerTest, ProbeDoesNotSetAccessedOrDirty) {
  const auto used = pt_.Map(kLinear, kPhys, k4K, pte::kUser);
  std::vector<uint64_t> before;
  for (uint64_t a : used) before.push_back(pt_.Get(a));
  const WalkResult r = Walk(kLinear, Access::kWrite, Priv::kSupervisor, /*set_ad=*/false);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.phys, kPhys);
  EXPECT_FALSE(r.dirty);
  for (size_t i = 0; i < used.size(); ++i) EXPECT_EQ(pt_.Get(used[i]), before[i]);
}

TEST_P(WalkerTest, NotPresentAtEachLevel) {
  const auto used = pt_.Map(kLinear, kPhys, k4K, pte::kUser);
  for (size_t level = 0; level < used.size(); ++level) {
    SCOPED_TRACE(testing::Message() << "level " << level);
    for (uint64_t a : used) pt_.Clear(a, pte::kA | pte::kD);
    pt_.Clear(used[level], pte::kP);

    WalkResult r = Walk(kLinear, Access::kRead);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error_code, 0u);
    // Levels above the fault got A, the faulting level and below did not.
    for (size_t i = 0; i < used.size(); ++i) {
      EXPECT_EQ((pt_.Get(used[i]) & pte::kA) != 0, i < level && HasAttrs(i)) << "entry " << i;
    }
    EXPECT_EQ(Walk(kLinear, Access::kWrite).error_code, pf::kWrite);
    EXPECT_EQ(Walk(kLinear, Access::kRead, Priv::kUser).error_code, pf::kUser);
    EXPECT_EQ(Walk(kLinear, Access::kWrite, Priv::kUser).error_code, pf::kWrite | pf::kUser);
    EXPECT_EQ(Walk(kLinear, Access::kExecute, Priv::kUser).error_code, pf::kUser | FetchBit());
    EXPECT_EQ(Walk(kLinear, Access::kExecute).error_code, FetchBit());
    pt_.Or(used[level], pte::kP);
  }
  EXPECT_TRUE(Walk(kLinear, Access::kRead).ok);
}

TEST_P(WalkerTest, UserAccessToSupervisorPage) {
  const auto used = pt_.Map(kLinear, kPhys, k4K, pte::kUser);
  for (size_t level = 0; level < used.size(); ++level) {
    if (!HasAttrs(level)) continue;
    SCOPED_TRACE(testing::Message() << "U/S clear at level " << level);
    for (uint64_t a : used) pt_.Clear(a, pte::kA | pte::kD);
    pt_.Clear(used[level], pte::kUs);

    WalkResult r = Walk(kLinear, Access::kRead, Priv::kUser);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error_code, pf::kPresent | pf::kUser);
    // A protection fault: the tables were walked (upper A set) but the leaf is not accessed.
    for (size_t i = 0; i + 1 < used.size(); ++i) {
      EXPECT_EQ((pt_.Get(used[i]) & pte::kA) != 0, HasAttrs(i)) << "entry " << i;
    }
    EXPECT_EQ(pt_.Get(used.back()) & (pte::kA | pte::kD), 0u);

    EXPECT_EQ(Walk(kLinear, Access::kWrite, Priv::kUser).error_code,
              pf::kPresent | pf::kWrite | pf::kUser);
    EXPECT_EQ(Walk(kLinear, Access::kExecute, Priv::kUser).error_code,
              pf::kPresent | pf::kUser | FetchBit());
    // Supervisor accesses are fine, and the result says the page is not a user page.
    r = Walk(kLinear, Access::kWrite);
    ASSERT_TRUE(r.ok);
    EXPECT_FALSE(r.user);
    EXPECT_TRUE(Walk(kLinear, Access::kExecute).ok);
    pt_.Or(used[level], pte::kUs);
  }
}

TEST_P(WalkerTest, WriteToReadOnlyPage) {
  const auto used = pt_.Map(kLinear, kPhys, k4K, pte::kUser);
  for (size_t level = 0; level < used.size(); ++level) {
    if (!HasAttrs(level)) continue;
    SCOPED_TRACE(testing::Message() << "R/W clear at level " << level);
    pt_.Clear(used.back(), pte::kA | pte::kD);
    pt_.Clear(used[level], pte::kRw);
    regs_.cr0 |= kCr0Wp;

    EXPECT_EQ(Walk(kLinear, Access::kWrite, Priv::kUser).error_code,
              pf::kPresent | pf::kWrite | pf::kUser);
    EXPECT_EQ(Walk(kLinear, Access::kWrite).error_code, pf::kPresent | pf::kWrite);
    EXPECT_EQ(pt_.Get(used.back()) & pte::kD, 0u);
    WalkResult r = Walk(kLinear, Access::kRead, Priv::kUser);
    ASSERT_TRUE(r.ok);
    EXPECT_FALSE(r.writable);
    EXPECT_FALSE(r.dirty);

    // CR0.WP = 0: supervisor writes ignore R/W (and set D); user writes still fault.
    regs_.cr0 &= ~kCr0Wp;
    EXPECT_EQ(Walk(kLinear, Access::kWrite, Priv::kUser).error_code,
              pf::kPresent | pf::kWrite | pf::kUser);
    r = Walk(kLinear, Access::kWrite);
    ASSERT_TRUE(r.ok);
    EXPECT_TRUE(r.dirty);
    EXPECT_FALSE(r.writable);
    EXPECT_NE(pt_.Get(used.back()) & pte::kD, 0u);
    pt_.Or(used[level], pte::kRw);
  }
}

TEST_P(WalkerTest, SupervisorWriteToUserReadOnlyPageWithWpClear) {
  pt_.Map(kLinear, kPhys, k4K, pte::kP | pte::kUs);
  regs_.cr0 &= ~kCr0Wp;
  EXPECT_TRUE(Walk(kLinear, Access::kWrite).ok);
  regs_.cr0 |= kCr0Wp;
  EXPECT_EQ(Walk(kLinear, Access::kWrite).error_code, pf::kPresent | pf::kWrite);
}

TEST_P(WalkerTest, Smep) {
  pt_.Map(kLinear, kPhys, k4K, pte::kUser);
  pt_.Map(kLinear + k4K, kPhys + k4K, k4K, pte::kP | pte::kRw);  // supervisor page
  EXPECT_TRUE(Walk(kLinear, Access::kExecute).ok);               // SMEP off
  regs_.cr4 |= kCr4Smep;
  WalkResult r = Walk(kLinear, Access::kExecute);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error_code, pf::kPresent | pf::kFetch);  // SMEP makes I/D reported in any mode
  EXPECT_TRUE(Walk(kLinear, Access::kExecute, Priv::kUser).ok);
  EXPECT_TRUE(Walk(kLinear, Access::kRead).ok);  // SMEP is about fetches only
  EXPECT_TRUE(Walk(kLinear + k4K, Access::kExecute).ok);
  EXPECT_EQ(Walk(kLinear + k4K, Access::kExecute, Priv::kUser).error_code,
            pf::kPresent | pf::kUser | pf::kFetch);
}

TEST_P(WalkerTest, Smap) {
  pt_.Map(kLinear, kPhys, k4K, pte::kUser);
  pt_.Map(kLinear + k4K, kPhys + k4K, k4K, pte::kP | pte::kRw);  // supervisor page
  EXPECT_TRUE(Walk(kLinear, Access::kRead).ok);                  // SMAP off
  regs_.cr4 |= kCr4Smap;
  EXPECT_EQ(Walk(kLinear, Access::kRead).error_code, pf::kPresent);
  EXPECT_EQ(Walk(kLinear, Access::kWrite).error_code, pf::kPresent | pf::kWrite);
  // Explicit accesses with AC = 1 are allowed.
  EXPECT_TRUE(Walk(kLinear, Access::kRead, Priv::kSupervisorAc).ok);
  EXPECT_TRUE(Walk(kLinear, Access::kWrite, Priv::kSupervisorAc).ok);
  // Implicit supervisor accesses are checked whatever AC says, also when made at CPL 3;
  // their error code reports a supervisor access.
  EXPECT_EQ(Walk(kLinear, Access::kRead, Priv::kImplicit).error_code, pf::kPresent);
  EXPECT_EQ(Walk(kLinear, Access::kWrite, Priv::kImplicit).error_code, pf::kPresent | pf::kWrite);
  EXPECT_EQ(Walk(kLinear, Access::kRead, Priv::kImplicitFromUser).error_code, pf::kPresent);
  // User accesses, supervisor pages and fetches are not SMAP's business.
  EXPECT_TRUE(Walk(kLinear, Access::kWrite, Priv::kUser).ok);
  EXPECT_TRUE(Walk(kLinear + k4K, Access::kWrite).ok);
  EXPECT_TRUE(Walk(kLinear + k4K, Access::kRead, Priv::kImplicit).ok);
  EXPECT_TRUE(Walk(kLinear, Access::kExecute).ok);
}

TEST_P(WalkerTest, SmapWithAcStillHonoursReadOnly) {
  pt_.Map(kLinear, kPhys, k4K, pte::kP | pte::kUs);
  regs_.cr4 |= kCr4Smap;
  EXPECT_EQ(Walk(kLinear, Access::kWrite, Priv::kSupervisorAc).error_code,
            pf::kPresent | pf::kWrite);
  regs_.cr0 &= ~kCr0Wp;
  EXPECT_TRUE(Walk(kLinear, Access::kWrite, Priv::kSupervisorAc).ok);
  EXPECT_EQ(Walk(kLinear, Access::kWrite).error_code, pf::kPresent | pf::kWrite);
}

TEST_P(WalkerTest, ImplicitAccessFromUserIsASupervisorAccess) {
  pt_.Map(kLinear, kPhys, k4K, pte::kP | pte::kRw);  // supervisor page (a GDT, say)
  EXPECT_FALSE(Walk(kLinear, Access::kRead, Priv::kUser).ok);
  EXPECT_TRUE(Walk(kLinear, Access::kWrite, Priv::kImplicitFromUser).ok);
  pt_.Clear(pt_.Map(kLinear, kPhys, k4K, pte::kP | pte::kRw).back(), pte::kP);
  EXPECT_EQ(Walk(kLinear, Access::kWrite, Priv::kImplicitFromUser).error_code, pf::kWrite);
}

TEST_P(WalkerTest, GlobalOnlyOnTheLeafWithPge) {
  const auto used = pt_.Map(kLinear, kPhys, k4K, pte::kUser | pte::kG);
  EXPECT_FALSE(Walk(kLinear, Access::kRead).global);  // CR4.PGE = 0
  regs_.cr4 |= kCr4Pge;
  EXPECT_TRUE(Walk(kLinear, Access::kRead).global);
  // G in a non-leaf entry means nothing.
  pt_.Clear(used.back(), pte::kG);
  for (size_t i = 0; i + 1 < used.size(); ++i) {
    if (HasAttrs(i)) pt_.Or(used[i], pte::kG);
  }
  EXPECT_FALSE(Walk(kLinear, Access::kRead).global);
}

TEST_P(WalkerTest, ProtectionFaultMatchesTheWalk) {
  // A TLB made from a walk must give the same verdict as a fresh walk.
  pt_.Map(kLinear, kPhys, k4K, pte::kP | pte::kUs);
  regs_.cr4 |= kCr4Smap | kCr4Smep;
  const WalkResult mapping = Walk(kLinear, Access::kRead, Priv::kUser);
  ASSERT_TRUE(mapping.ok);
  for (Access access : {Access::kRead, Access::kWrite, Access::kExecute}) {
    for (Priv priv : {Priv::kSupervisor, Priv::kSupervisorAc, Priv::kUser, Priv::kImplicit,
                      Priv::kImplicitFromUser}) {
      for (bool wp : {false, true}) {
        regs_.cr0 = wp ? (regs_.cr0 | kCr0Wp) : (regs_.cr0 & ~kCr0Wp);
        WalkRequest req;
        req.linear = kLinear;
        req.access = access;
        req.user = priv == Priv::kUser || priv == Priv::kImplicitFromUser;
        req.ac = priv == Priv::kSupervisorAc || priv == Priv::kImplicit;
        req.implicit_supervisor = priv == Priv::kImplicit || priv == Priv::kImplicitFromUser;
        req.set_ad = false;
        const WalkResult walk = WalkPageTables(*mem_, regs_, req);
        EXPECT_EQ(ProtectionFault(regs_, mapping, req), walk.ok ? 0 : walk.error_code)
            << "access " << static_cast<int>(access) << " priv " << static_cast<int>(priv) << " wp "
            << wp;
      }
    }
  }
}

TEST_P(WalkerTest, ConcurrentAccessedDirtyUpdatesLoseNoOtherBits) {
  const auto used = pt_.Map(kLinear, kPhys, k4K, pte::kUser);
  const uint64_t leaf = used.back();
  uint8_t* host = mem_->HostPointer(leaf);
  constexpr uint64_t kAvail = 1ull << 9;  // software-available bit
  constexpr int kToggles = 20000;
  std::atomic<bool> stop{false};
  auto fetch_xor = [&](uint64_t bit) {
    if (pt_.wide()) {
      __atomic_fetch_xor(reinterpret_cast<uint64_t*>(host), bit, __ATOMIC_SEQ_CST);
    } else {
      __atomic_fetch_xor(reinterpret_cast<uint32_t*>(host), static_cast<uint32_t>(bit),
                         __ATOMIC_SEQ_CST);
    }
  };
  auto fetch_and = [&](uint64_t mask) {
    if (pt_.wide()) {
      __atomic_fetch_and(reinterpret_cast<uint64_t*>(host), mask, __ATOMIC_SEQ_CST);
    } else {
      __atomic_fetch_and(reinterpret_cast<uint32_t*>(host), static_cast<uint32_t>(mask),
                         __ATOMIC_SEQ_CST);
    }
  };
  std::atomic<int> walks{0};
  std::thread walker([&] {
    while (!stop.load()) {
      const WalkResult r = Walk(kLinear, Access::kWrite);
      EXPECT_TRUE(r.ok);
      walks.fetch_add(1);
    }
  });
  std::thread clearer([&] {
    while (!stop.load()) fetch_and(~(pte::kA | pte::kD));
  });
  // Keep toggling (an even number of times) until the walker has raced with us for a while.
  int toggles = 0;
  while (toggles < kToggles || walks.load() < 20000) {
    fetch_xor(kAvail);
    fetch_xor(kAvail);
    toggles += 2;
  }
  stop = true;
  walker.join();
  clearer.join();
  EXPECT_EQ(pt_.Get(leaf) & kAvail, 0u);
  EXPECT_EQ(pt_.Get(leaf) & ~(pte::kA | pte::kD), kPhys | pte::kUser);
}

INSTANTIATE_TEST_SUITE_P(AllModes, WalkerTest,
                         ::testing::Values(Mode::k32, Mode::kPae, Mode::k4Level, Mode::k5Level),
                         [](const auto& info) { return ModeName(info.param); });

TEST(PagingOffTest, IdentityWithFullPermissions) {
  auto mem = GuestMemory::Create(4 * kMiB);
  PagingRegs regs;
  regs.cr0 = 1;  // PE only
  regs.cr4 = kCr4Smap | kCr4Smep;
  for (Access access : {Access::kRead, Access::kWrite, Access::kExecute}) {
    WalkRequest req;
    req.linear = 0x123456789ull;  // linear addresses are 32-bit without paging
    req.access = access;
    req.user = true;
    const WalkResult r = WalkPageTables(*mem, regs, req);
    ASSERT_TRUE(r.ok);
    EXPECT_EQ(r.phys, 0x23456789u);
    EXPECT_TRUE(r.writable && r.user && r.executable && r.dirty);
    EXPECT_EQ(ProtectionFault(regs, r, req), 0u);
  }
  EXPECT_FALSE(PagingEnabled(regs));
}

}  // namespace
}  // namespace rove
