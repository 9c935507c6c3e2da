// Test helper: builds guest page tables for every paging mode inside a GuestMemory.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "rove/mmu/guest_memory.h"
#include "rove/mmu/page_walker.h"

namespace rove::test {

// Paging-structure entry bits.
namespace pte {
inline constexpr uint64_t kP = 1ull << 0;
inline constexpr uint64_t kRw = 1ull << 1;
inline constexpr uint64_t kUs = 1ull << 2;
inline constexpr uint64_t kA = 1ull << 5;
inline constexpr uint64_t kD = 1ull << 6;
inline constexpr uint64_t kPs = 1ull << 7;
inline constexpr uint64_t kG = 1ull << 8;
inline constexpr uint64_t kXd = 1ull << 63;
inline constexpr uint64_t kUser = kP | kRw | kUs;  // present, writable, user
}  // namespace pte

inline constexpr uint64_t k4K = 4ull << 10;
inline constexpr uint64_t k2M = 2ull << 20;
inline constexpr uint64_t k4M = 4ull << 20;
inline constexpr uint64_t k1G = 1ull << 30;

enum class Mode { k32, kPae, k4Level, k5Level };

inline std::string ModeName(Mode m) {
  switch (m) {
    case Mode::k32:
      return "Bits32";
    case Mode::kPae:
      return "Pae";
    case Mode::k4Level:
      return "Level4";
    case Mode::k5Level:
      return "Level5";
  }
  return "?";
}

class PageTables {
 public:
  // Tables are allocated from [pool, pool + pool_size) of guest RAM.
  PageTables(GuestMemory& memory, Mode mode, uint64_t pool = 0x100000,
             uint64_t pool_size = 0x400000)
      : memory_(memory), mode_(mode), next_(pool), end_(pool + pool_size) {
    switch (mode) {
      case Mode::k32:
        levels_ = {{22, 10}, {12, 10}};
        break;
      case Mode::kPae:
        levels_ = {{30, 2}, {21, 9}, {12, 9}};
        break;
      case Mode::k4Level:
        levels_ = {{39, 9}, {30, 9}, {21, 9}, {12, 9}};
        break;
      case Mode::k5Level:
        levels_ = {{48, 9}, {39, 9}, {30, 9}, {21, 9}, {12, 9}};
        break;
    }
    // The PAE PDPT only needs 32-byte alignment: put it off the page start to check CR3 use.
    root_ = Alloc() + (mode == Mode::kPae ? 0x40 : 0);
  }

  Mode mode() const { return mode_; }
  bool wide() const { return mode_ != Mode::k32; }
  uint64_t root() const { return root_; }

  // Typical OS settings for the mode: PG, PE, WP; PSE for 32-bit; PAE + NXE otherwise; LME/LMA
  // for 4-/5-level; LA57 for 5-level.
  PagingRegs Regs() const {
    using namespace paging_bits;
    PagingRegs r;
    r.cr0 = kCr0Pg | kCr0Wp | 1;
    r.cr3 = root_;
    switch (mode_) {
      case Mode::k32:
        r.cr4 = kCr4Pse;
        break;
      case Mode::kPae:
        r.cr4 = kCr4Pae;
        r.efer = kEferNxe;
        break;
      case Mode::k4Level:
        r.cr4 = kCr4Pae;
        r.efer = kEferNxe | kEferLme | kEferLma;
        break;
      case Mode::k5Level:
        r.cr4 = kCr4Pae | kCr4La57;
        r.efer = kEferNxe | kEferLme | kEferLma;
        break;
    }
    return r;
  }

  // Maps `linear` to `phys` with a page of `size` (4K, 2M, 4M or 1G). Intermediate tables are
  // created with `upper` flags (PAE PDPTEs get P only); existing ones are reused unchanged.
  // Returns the guest physical addresses of the entries used, top level first.
  std::vector<uint64_t> Map(uint64_t linear, uint64_t phys, uint64_t size, uint64_t leaf_flags,
                            uint64_t upper = pte::kUser) {
    std::vector<uint64_t> used;
    uint64_t table = root_;
    for (size_t i = 0; i < levels_.size(); ++i) {
      const auto [shift, bits] = levels_[i];
      const uint64_t entry = table + ((linear >> shift) & ((1ull << bits) - 1)) * (wide() ? 8 : 4);
      used.push_back(entry);
      if ((1ull << shift) == size) {
        uint64_t v = leaf_flags | (size != k4K ? pte::kPs : 0);
        if (mode_ == Mode::k32 && size == k4M) {
          v |= (phys & 0xFFC00000ull) | (((phys >> 32) & 0xFF) << 13);
        } else {
          v |= phys;
        }
        Set(entry, v);
        return used;
      }
      uint64_t e = Get(entry);
      if (!(e & pte::kP)) {
        const uint64_t next = Alloc();
        e = next | (mode_ == Mode::kPae && i == 0 ? pte::kP : upper);
        Set(entry, e);
      }
      table = wide() ? (e & 0x000FFFFFFFFFF000ull) : (e & 0xFFFFF000ull);
    }
    throw std::logic_error("PageTables::Map: page size does not match the paging mode");
  }

  uint64_t Get(uint64_t gpa) const { return wide() ? memory_.ReadU64(gpa) : memory_.ReadU32(gpa); }
  void Set(uint64_t gpa, uint64_t v) {
    if (wide()) {
      memory_.WriteU64(gpa, v);
    } else {
      memory_.WriteU32(gpa, static_cast<uint32_t>(v));
    }
  }
  void Or(uint64_t gpa, uint64_t bits) { Set(gpa, Get(gpa) | bits); }
  void Clear(uint64_t gpa, uint64_t bits) { Set(gpa, Get(gpa) & ~bits); }

  uint64_t Alloc() {
    if (next_ + kPageSize > end_) throw std::runtime_error("page-table pool exhausted");
    const uint64_t t = next_;
    next_ += kPageSize;
    std::memset(memory_.HostPointer(t), 0, kPageSize);
    return t;
  }

 private:
  GuestMemory& memory_;
  Mode mode_;
  uint64_t next_;
  uint64_t end_;
  uint64_t root_ = 0;
  std::vector<std::pair<unsigned, unsigned>> levels_;
};

}  // namespace rove::test
