// Guest page-table walk, following Intel SDM vol. 3, chapter 4 (4.3 32-bit paging, 4.4 PAE
// paging, 4.5 4-level and 5-level paging, 4.6 access rights, 4.7 page-fault error code, 4.8
// accessed and dirty flags).
#include "rove/mmu/page_walker.h"

namespace rove {
namespace {

using namespace paging_bits;

// Paging-structure entry bits.
constexpr uint64_t kP = 1ull << 0;
constexpr uint64_t kRw = 1ull << 1;
constexpr uint64_t kUs = 1ull << 2;
constexpr uint64_t kA = 1ull << 5;
constexpr uint64_t kD = 1ull << 6;
constexpr uint64_t kPs = 1ull << 7;
constexpr uint64_t kG = 1ull << 8;
constexpr uint64_t kXd = 1ull << 63;

constexpr uint64_t Bits(unsigned hi, unsigned lo) {
  return (hi == 63 ? ~0ull : (1ull << (hi + 1)) - 1) & ~((1ull << lo) - 1);
}

constexpr unsigned kM = kMaxPhysAddrBits;
constexpr uint64_t kFrameMask = Bits(kM - 1, 12);  // address bits M-1:12 of a 64-bit entry
constexpr uint64_t kRsvdHigh51 = Bits(51, kM);     // 4-/5-level: bits 51:M reserved
constexpr uint64_t kRsvdHigh62 = Bits(62, kM);     // PAE: bits 62:M reserved
// PAE PDPTE: bits 2:1 and 8:5 are reserved as well as 63:M (there is no XD bit).
constexpr uint64_t kRsvdPaePdpte = Bits(2, 1) | Bits(8, 5) | Bits(63, kM);
// 32-bit paging 4 MiB page with PSE-36: bits 20:13 hold physical bits 39:32 (M is capped at
// 40 for 32-bit paging), bit 21 is reserved.
constexpr uint64_t kRsvdPse4M = 1ull << 21;

enum class Mode { kNone, k32, kPae, k4, k5 };

Mode PagingMode(const PagingRegs& regs) {
  if (!(regs.cr0 & kCr0Pg)) return Mode::kNone;
  if (!(regs.cr4 & kCr4Pae)) return Mode::k32;
  if (!(regs.efer & (kEferLma | kEferLme))) return Mode::kPae;
  return (regs.cr4 & kCr4La57) ? Mode::k5 : Mode::k4;
}

// One level of a paging structure hierarchy.
struct Level {
  unsigned shift = 12;      // lowest linear-address bit translated by this level
  unsigned index_bits = 9;  // number of linear-address bits indexing this table
  bool wide = true;         // 8-byte entries (4-byte in 32-bit paging)
  bool large_ok = false;    // PS = 1 maps a page here
  bool last = false;        // page table: always a leaf
  bool has_attrs = true;    // R/W, U/S, XD, A exist (not in PAE PDPTEs)
  uint64_t rsvd = 0;        // reserved bits when the entry references a table / 4K page
  uint64_t rsvd_large = 0;  // reserved bits when the entry maps a large page
};

// A paging-structure entry in guest physical memory.
class EntryRef {
 public:
  EntryRef(GuestMemory& memory, uint64_t gpa, bool wide)
      : memory_(memory), gpa_(gpa), wide_(wide), host_(memory.HostPointer(gpa)) {}

  uint64_t Load() const {
    if (host_ != nullptr) {
      if (wide_) return __atomic_load_n(reinterpret_cast<uint64_t*>(host_), __ATOMIC_ACQUIRE);
      return __atomic_load_n(reinterpret_cast<uint32_t*>(host_), __ATOMIC_ACQUIRE);
    }
    return wide_ ? memory_.ReadU64(gpa_) : memory_.ReadU32(gpa_);
  }

  // Sets `bits` in the entry if it still holds `seen` (lock cmpxchg). Returns false when the
  // entry changed meanwhile: the caller re-reads and re-checks it. Entries outside RAM are
  // not updated (returns true).
  bool TrySet(uint64_t seen, uint64_t bits) {
    if (host_ == nullptr) return true;
    if (wide_) {
      uint64_t expected = seen;
      return __atomic_compare_exchange_n(reinterpret_cast<uint64_t*>(host_), &expected, seen | bits,
                                         false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    auto expected = static_cast<uint32_t>(seen);
    return __atomic_compare_exchange_n(reinterpret_cast<uint32_t*>(host_), &expected,
                                       static_cast<uint32_t>(seen | bits), false, __ATOMIC_ACQ_REL,
                                       __ATOMIC_ACQUIRE);
  }

  bool in_ram() const { return host_ != nullptr; }

 private:
  GuestMemory& memory_;
  uint64_t gpa_;
  bool wide_;
  uint8_t* host_;
};

bool EffectiveUser(const WalkRequest& req) {
  return req.user && !req.implicit_supervisor;
}

// W/R, U/S and I/D bits of the error code (SDM 4.7); P and RSVD are added by the caller.
uint32_t AccessErrorBits(const PagingRegs& regs, const WalkRequest& req) {
  uint32_t err = 0;
  if (req.access == Access::kWrite) err |= pf_error::kWrite;
  if (EffectiveUser(req)) err |= pf_error::kUser;
  // I/D is reported only when SMEP is on, or with PAE/4-level/5-level paging and NXE.
  if (req.access == Access::kExecute &&
      ((regs.cr4 & kCr4Smep) || ((regs.cr4 & kCr4Pae) && (regs.efer & kEferNxe)))) {
    err |= pf_error::kFetch;
  }
  return err;
}

WalkResult Fault(uint32_t error_code) {
  WalkResult r;
  r.ok = false;
  r.error_code = error_code;
  return r;
}

}  // namespace

bool IsCanonical(const PagingRegs& regs, uint64_t linear) {
  const unsigned bits = (regs.cr4 & kCr4La57) ? 57 : 48;
  const auto sign_extended =
      static_cast<uint64_t>(static_cast<int64_t>(linear << (64 - bits)) >> (64 - bits));
  return sign_extended == linear;
}

uint32_t ProtectionFault(const PagingRegs& regs, const WalkResult& mapping,
                         const WalkRequest& req) {
  if (!PagingEnabled(regs)) return 0;
  const bool user = EffectiveUser(req);
  // SMAP forbids supervisor data accesses to user-mode addresses unless the access is explicit
  // and RFLAGS.AC is set (SDM 4.6.1).
  const bool smap_blocks =
      mapping.user && (regs.cr4 & kCr4Smap) && (req.implicit_supervisor || !req.ac);
  bool allowed = false;
  switch (req.access) {
    case Access::kRead:
      allowed = user ? mapping.user : !smap_blocks;
      break;
    case Access::kWrite:
      if (user) {
        allowed = mapping.user && mapping.writable;
      } else {
        // With CR0.WP = 0 supervisor writes ignore R/W (to user pages as well).
        allowed = !smap_blocks && (mapping.writable || !(regs.cr0 & kCr0Wp));
      }
      break;
    case Access::kExecute:
      if (user) {
        allowed = mapping.user && mapping.executable;
      } else {
        allowed = mapping.executable && !(mapping.user && (regs.cr4 & kCr4Smep));
      }
      break;
  }
  return allowed ? 0 : pf_error::kPresent | AccessErrorBits(regs, req);
}

WalkResult WalkPageTables(GuestMemory& memory, const PagingRegs& regs, const WalkRequest& req) {
  const Mode mode = PagingMode(regs);
  if (mode == Mode::kNone) {
    WalkResult r;
    r.ok = true;
    r.phys = req.linear & 0xFFFFFFFFull;
    r.page_size = kPageSize;
    r.writable = r.user = r.executable = true;
    r.dirty = true;
    return r;
  }

  const bool nxe = (regs.efer & kEferNxe) != 0;
  const uint64_t xd_rsvd = nxe ? 0 : kXd;  // XD is a reserved bit when NXE = 0

  Level levels[5];
  int count = 0;
  uint64_t table = 0;
  switch (mode) {
    case Mode::kNone:
      break;
    case Mode::k32: {
      const bool pse = (regs.cr4 & kCr4Pse) != 0;
      levels[count++] = {22, 10, false, pse, false, true, 0, kRsvdPse4M};
      levels[count++] = {12, 10, false, false, true, true, 0, 0};
      table = regs.cr3 & 0xFFFFF000ull;
      break;
    }
    case Mode::kPae: {
      const uint64_t rsvd = kRsvdHigh62 | xd_rsvd;
      levels[count++] = {30, 2, true, false, false, false, kRsvdPaePdpte, 0};
      levels[count++] = {21, 9, true, true, false, true, rsvd, rsvd | Bits(20, 13)};
      levels[count++] = {12, 9, true, false, true, true, rsvd, 0};
      table = regs.cr3 & 0xFFFFFFE0ull;
      break;
    }
    case Mode::k4:
    case Mode::k5: {
      const uint64_t rsvd = kRsvdHigh51 | xd_rsvd;
      if (mode == Mode::k5) levels[count++] = {48, 9, true, false, false, true, rsvd | kPs, 0};
      levels[count++] = {39, 9, true, false, false, true, rsvd | kPs, 0};
      levels[count++] = {30, 9, true, true, false, true, rsvd, rsvd | Bits(29, 13)};
      levels[count++] = {21, 9, true, true, false, true, rsvd, rsvd | Bits(20, 13)};
      levels[count++] = {12, 9, true, false, true, true, rsvd, 0};
      table = regs.cr3 & kFrameMask;
      break;
    }
  }

  const uint32_t access_err = AccessErrorBits(regs, req);
  const bool is_write = req.access == Access::kWrite;
  // Attributes combined over the levels walked so far.
  bool writable = true;
  bool user = true;
  bool executable = true;

  for (int i = 0; i < count; ++i) {
    const Level& lv = levels[i];
    const uint64_t index = (req.linear >> lv.shift) & ((1ull << lv.index_bits) - 1);
    EntryRef entry(memory, table + index * (lv.wide ? 8 : 4), lv.wide);
    for (;;) {
      const uint64_t e = entry.Load();
      if (!(e & kP)) return Fault(access_err);
      const bool leaf = lv.last || (lv.large_ok && (e & kPs));
      if (e & ((leaf && !lv.last) ? lv.rsvd_large : lv.rsvd)) {
        return Fault(pf_error::kPresent | pf_error::kReserved | access_err);
      }
      bool w = writable, u = user, x = executable;
      if (lv.has_attrs) {
        w = w && (e & kRw);
        u = u && (e & kUs);
        x = x && !(nxe && (e & kXd));
      }

      if (!leaf) {
        // The entry is used to reach the next level: it gets A now, whatever happens below.
        if (req.set_ad && lv.has_attrs && !(e & kA) && !entry.TrySet(e, kA)) continue;
        writable = w;
        user = u;
        executable = x;
        table = lv.wide ? (e & kFrameMask) : (e & 0xFFFFF000ull);
        break;
      }

      WalkResult r;
      r.writable = w;
      r.user = u;
      r.executable = x;
      if (const uint32_t err = ProtectionFault(regs, r, req); err != 0) return Fault(err);
      const uint64_t want = kA | (is_write ? kD : 0);
      if (req.set_ad && (e & want) != want && !entry.TrySet(e, want)) continue;

      const bool updated = req.set_ad && entry.in_ram();
      const uint64_t final_e = updated ? (e | want) : e;
      r.ok = true;
      r.page_size = 1ull << lv.shift;
      if (lv.last) {
        const uint64_t frame = lv.wide ? (e & kFrameMask) : (e & 0xFFFFF000ull);
        r.phys = frame | (req.linear & (kPageSize - 1));
      } else if (lv.wide) {
        r.phys = (e & kFrameMask & ~(r.page_size - 1)) | (req.linear & (r.page_size - 1));
      } else {
        // 4 MiB page with PSE-36: physical bits 39:32 come from entry bits 20:13.
        r.phys = (e & 0xFFC00000ull) | (((e >> 13) & 0xFF) << 32) | (req.linear & 0x3FFFFF);
      }
      r.global = (e & kG) && (regs.cr4 & kCr4Pge);
      r.dirty = (final_e & kD) != 0;
      return r;
    }
  }
  return Fault(access_err);  // not reached: the last level is always a leaf
}

}  // namespace rove
