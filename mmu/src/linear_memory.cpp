#include "rove/mmu/linear_memory.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace rove {
namespace {

// Longest access handled in one call without a heap allocation for its page list.
constexpr size_t kInlinePages = 4;

WalkRequest MakeRequest(LinearAccessMode mode, uint64_t linear, Access access, bool set_ad) {
  WalkRequest req;
  req.linear = linear;
  req.access = access;
  req.user = mode.user && !mode.implicit_supervisor;
  req.ac = mode.ac;
  req.implicit_supervisor = mode.implicit_supervisor;
  req.set_ad = set_ad;
  return req;
}

// Linear addresses are 32 bits wide outside IA-32e mode and wrap at 4 GiB.
uint64_t LinearMask(const PagingRegs& regs) {
  const bool long_mode = PagingEnabled(regs) && (regs.cr4 & paging_bits::kCr4Pae) &&
                         (regs.efer & (paging_bits::kEferLma | paging_bits::kEferLme));
  return long_mode ? ~0ull : 0xFFFFFFFFull;
}

// One page-contained piece of a linear access.
struct Piece {
  uint64_t phys;
  size_t offset;  // into the caller's buffer
  size_t len;
};

// Translates every page of [linear, linear+len) for `access`, then calls copy(piece) for each
// piece. Nothing is copied if any page faults. Multi-page accesses are probed first without
// setting A/D bits, so a fault leaves the page tables unchanged as well.
template <typename Copy>
std::optional<PageFault> AccessPages(GuestMemory& memory, const PagingRegs& regs,
                                     LinearAccessMode mode, uint64_t linear, size_t len,
                                     Access access, Copy copy) {
  if (len == 0) return std::nullopt;
  const uint64_t mask = LinearMask(regs);
  linear &= mask;
  const uint64_t last = (linear + len - 1) & mask;
  const bool multi_page = (linear & kPageMask) != (last & kPageMask);

  auto for_each_page = [&](auto fn) -> std::optional<PageFault> {
    size_t done = 0;
    while (done < len) {
      const uint64_t addr = (linear + done) & mask;
      const size_t n = std::min<uint64_t>(len - done, kPageSize - (addr & (kPageSize - 1)));
      if (auto fault = fn(addr, done, n)) return fault;
      done += n;
    }
    return std::nullopt;
  };

  if (multi_page) {
    auto probe = for_each_page([&](uint64_t addr, size_t, size_t) -> std::optional<PageFault> {
      const WalkResult r = WalkPageTables(memory, regs, MakeRequest(mode, addr, access, false));
      if (!r.ok) return PageFault{addr, r.error_code};
      return std::nullopt;
    });
    if (probe) return probe;
  }

  Piece inline_pieces[kInlinePages];
  std::vector<Piece> heap_pieces;
  size_t count = 0;
  const size_t max_pieces = len / kPageSize + 2;
  Piece* pieces = inline_pieces;
  if (max_pieces > kInlinePages) {
    heap_pieces.resize(max_pieces);
    pieces = heap_pieces.data();
  }
  auto walked = for_each_page([&](uint64_t addr, size_t off, size_t n) -> std::optional<PageFault> {
    const WalkResult r = WalkPageTables(memory, regs, MakeRequest(mode, addr, access, true));
    if (!r.ok) return PageFault{addr, r.error_code};
    pieces[count++] = Piece{r.phys, off, n};
    return std::nullopt;
  });
  if (walked) return walked;
  for (size_t i = 0; i < count; ++i) copy(pieces[i]);
  return std::nullopt;
}

}  // namespace

std::optional<PageFault> LinearMemory::Read(const PagingRegs& regs, LinearAccessMode mode,
                                            uint64_t linear, void* dst, size_t len) {
  auto* out = static_cast<uint8_t*>(dst);
  return AccessPages(memory_, regs, mode, linear, len, Access::kRead,
                     [&](const Piece& p) { memory_.Read(p.phys, out + p.offset, p.len); });
}

std::optional<PageFault> LinearMemory::Write(const PagingRegs& regs, LinearAccessMode mode,
                                             uint64_t linear, const void* src, size_t len) {
  const auto* in = static_cast<const uint8_t*>(src);
  return AccessPages(memory_, regs, mode, linear, len, Access::kWrite,
                     [&](const Piece& p) { memory_.Write(p.phys, in + p.offset, p.len); });
}

std::optional<PageFault> LinearMemory::Fetch(const PagingRegs& regs, LinearAccessMode mode,
                                             uint64_t linear, void* dst, size_t len) {
  auto* out = static_cast<uint8_t*>(dst);
  return AccessPages(memory_, regs, mode, linear, len, Access::kExecute,
                     [&](const Piece& p) { memory_.Read(p.phys, out + p.offset, p.len); });
}

WalkResult LinearMemory::Translate(const PagingRegs& regs, LinearAccessMode mode, uint64_t linear,
                                   Access access) {
  return WalkPageTables(memory_, regs, MakeRequest(mode, linear & LinearMask(regs), access, true));
}

}  // namespace rove
