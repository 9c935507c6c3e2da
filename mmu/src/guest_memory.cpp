#include "rove/mmu/guest_memory.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace rove {
namespace {

// PROT_NONE space kept after the reservation, so that a host access running past the end of
// the reservation (e.g. an 8-byte access at the last RAM byte) faults instead of touching
// whatever the host mapped there.
constexpr uint64_t kGuardBytes = 2ull << 20;
// The reservation is aligned so that large guest pages can be backed by host huge pages.
constexpr uint64_t kReservationAlign = 2ull << 20;

std::string Errno() {
  return std::strerror(errno);
}

uint64_t MiB(uint64_t bytes) {
  return bytes >> 20;
}

}  // namespace

std::unique_ptr<GuestMemory> GuestMemory::Create(uint64_t ram_bytes) {
  if (ram_bytes == 0) throw std::runtime_error("rove: guest RAM size must not be 0");
  if (ram_bytes > (1ull << 46) - kHighRamStart) {
    throw std::runtime_error(
        fmt::format("rove: guest RAM of {} MiB exceeds the 46-bit guest physical address space",
                    MiB(ram_bytes)));
  }
  const uint64_t ram = (ram_bytes + kPageSize - 1) & kPageMask;

  std::unique_ptr<GuestMemory> mem(new GuestMemory());
  mem->ram_size_ = ram;
  mem->low_ram_size_ = std::min(ram, kLowRamLimit);
  mem->high_ram_size_ = ram - mem->low_ram_size_;
  mem->reservation_size_ = std::max(kHighRamStart, kHighRamStart + mem->high_ram_size_);

  mem->memfd_ = memfd_create("rove-guest-ram", MFD_CLOEXEC);
  if (mem->memfd_ < 0) {
    throw std::runtime_error(
        fmt::format("rove: memfd_create for {} MiB of guest RAM failed: {}", MiB(ram), Errno()));
  }
  if (ftruncate(mem->memfd_, static_cast<off_t>(ram)) != 0) {
    throw std::runtime_error(fmt::format(
        "rove: cannot size the guest RAM memfd to {} MiB (ftruncate): {}", MiB(ram), Errno()));
  }

  // One PROT_NONE reservation (plus alignment slack and the trailing guard). MAP_NORESERVE:
  // address space only, no commit charge.
  const size_t map_size = mem->reservation_size_ + kGuardBytes + kReservationAlign;
  void* raw =
      mmap(nullptr, map_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) {
    throw std::runtime_error(fmt::format(
        "rove: cannot reserve {} MiB of host address space for guest physical memory: {}",
        MiB(map_size), Errno()));
  }
  mem->mapping_base_ = static_cast<uint8_t*>(raw);
  mem->mapping_size_ = map_size;
  const uintptr_t aligned =
      (reinterpret_cast<uintptr_t>(raw) + kReservationAlign - 1) & ~(kReservationAlign - 1);
  mem->host_base_ = reinterpret_cast<uint8_t*>(aligned);

  auto map_ram = [&](uint64_t gpa, uint64_t size, uint64_t file_offset) {
    void* want = mem->host_base_ + gpa;
    void* got = mmap(want, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, mem->memfd_,
                     static_cast<off_t>(file_offset));
    if (got == MAP_FAILED) {
      throw std::runtime_error(
          fmt::format("rove: cannot map {} MiB of guest RAM at guest physical {:#x}: {}", MiB(size),
                      gpa, Errno()));
    }
    // Best effort: back guest RAM with transparent huge pages where the host allows it.
    (void)madvise(want, size, MADV_HUGEPAGE);
  };
  map_ram(0, mem->low_ram_size_, 0);
  if (mem->high_ram_size_ != 0) map_ram(kHighRamStart, mem->high_ram_size_, kLowRamLimit);

  const uint64_t pages = mem->reservation_size_ / kPageSize;
  mem->code_bitmap_ = std::vector<std::atomic<uint64_t>>((pages + 63) / 64);
  return mem;
}

GuestMemory::~GuestMemory() {
  if (mapping_base_ != nullptr) munmap(mapping_base_, mapping_size_);
  if (memfd_ >= 0) close(memfd_);
}

void GuestMemory::MmioReadPieces(uint64_t gpa, uint8_t* dst, size_t len) {
  while (len != 0) {
    unsigned width = 8;
    while (width > 1 && ((gpa & (width - 1)) != 0 || width > len)) width >>= 1;
    uint64_t value = mmio_ != nullptr ? mmio_->MmioRead(gpa, width) : ~0ull;
    std::memcpy(dst, &value, width);  // little-endian host: low bytes first
    gpa += width;
    dst += width;
    len -= width;
  }
}

void GuestMemory::MmioWritePieces(uint64_t gpa, const uint8_t* src, size_t len) {
  while (len != 0) {
    unsigned width = 8;
    while (width > 1 && ((gpa & (width - 1)) != 0 || width > len)) width >>= 1;
    if (mmio_ != nullptr) {
      uint64_t value = 0;
      std::memcpy(&value, src, width);
      mmio_->MmioWrite(gpa, width, value);
    }
    gpa += width;
    src += width;
    len -= width;
  }
}

void GuestMemory::Read(uint64_t gpa, void* dst, size_t len) {
  auto* out = static_cast<uint8_t*>(dst);
  while (len != 0) {
    const size_t chunk = std::min<uint64_t>(len, kPageSize - (gpa & (kPageSize - 1)));
    if (IsRam(gpa)) {
      std::memcpy(out, host_base_ + gpa, chunk);
    } else {
      MmioReadPieces(gpa, out, chunk);
    }
    gpa += chunk;
    out += chunk;
    len -= chunk;
  }
}

void GuestMemory::Write(uint64_t gpa, const void* src, size_t len) {
  NotifyWrite(gpa, len);
  const auto* in = static_cast<const uint8_t*>(src);
  while (len != 0) {
    const size_t chunk = std::min<uint64_t>(len, kPageSize - (gpa & (kPageSize - 1)));
    if (IsRam(gpa)) {
      std::memcpy(host_base_ + gpa, in, chunk);
    } else {
      MmioWritePieces(gpa, in, chunk);
    }
    gpa += chunk;
    in += chunk;
    len -= chunk;
  }
}

uint64_t GuestMemory::ReadU64(uint64_t gpa) {
  uint64_t v;
  if ((gpa & (kPageSize - 1)) <= kPageSize - sizeof(v) && IsRam(gpa)) {
    std::memcpy(&v, host_base_ + gpa, sizeof(v));
  } else {
    Read(gpa, &v, sizeof(v));
  }
  return v;
}

uint32_t GuestMemory::ReadU32(uint64_t gpa) {
  uint32_t v;
  if ((gpa & (kPageSize - 1)) <= kPageSize - sizeof(v) && IsRam(gpa)) {
    std::memcpy(&v, host_base_ + gpa, sizeof(v));
  } else {
    Read(gpa, &v, sizeof(v));
  }
  return v;
}

void GuestMemory::WriteU64(uint64_t gpa, uint64_t v) {
  Write(gpa, &v, sizeof(v));
}

void GuestMemory::WriteU32(uint64_t gpa, uint32_t v) {
  Write(gpa, &v, sizeof(v));
}

bool GuestMemory::IsCodePage(uint64_t gpa) const {
  const uint64_t page = gpa / kPageSize;
  if (page / 64 >= code_bitmap_.size()) return false;
  return (code_bitmap_[page / 64].load(std::memory_order_acquire) >> (page % 64)) & 1;
}

void GuestMemory::MarkCodePage(uint64_t gpa) {
  const uint64_t page = gpa / kPageSize;
  if (page / 64 >= code_bitmap_.size()) return;
  const uint64_t bit = 1ull << (page % 64);
  // Count first so a concurrent NotifyWrite never sees a set bit with a zero count.
  code_page_count_.fetch_add(1, std::memory_order_acq_rel);
  if (code_bitmap_[page / 64].fetch_or(bit, std::memory_order_acq_rel) & bit) {
    code_page_count_.fetch_sub(1, std::memory_order_acq_rel);  // was already marked
  }
}

void GuestMemory::ClearCodePage(uint64_t gpa) {
  const uint64_t page = gpa / kPageSize;
  if (page / 64 >= code_bitmap_.size()) return;
  const uint64_t bit = 1ull << (page % 64);
  if (code_bitmap_[page / 64].fetch_and(~bit, std::memory_order_acq_rel) & bit) {
    code_page_count_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void GuestMemory::SetCodeWriteObserver(std::function<void(uint64_t page_gpa)> observer) {
  code_write_observer_ = std::move(observer);
}

void GuestMemory::NotifyWrite(uint64_t gpa, size_t len) {
  if (code_page_count_.load(std::memory_order_acquire) == 0 || len == 0) return;
  if (!code_write_observer_) return;
  const uint64_t pages = code_bitmap_.size() * 64;
  const uint64_t first = gpa / kPageSize;
  if (first >= pages) return;
  const uint64_t end = gpa + (len - 1);
  uint64_t last = end < gpa ? pages - 1 : end / kPageSize;  // clamp a range that wraps 2^64
  last = std::min(last, pages - 1);
  for (uint64_t word = first / 64; word <= last / 64; ++word) {
    uint64_t bits = code_bitmap_[word].load(std::memory_order_acquire);
    if (bits == 0) continue;
    if (word == first / 64) bits &= ~0ull << (first % 64);
    if (word == last / 64 && last % 64 != 63) bits &= (2ull << (last % 64)) - 1;
    while (bits != 0) {
      const unsigned b = static_cast<unsigned>(std::countr_zero(bits));
      bits &= bits - 1;
      code_write_observer_((word * 64 + b) * kPageSize);
    }
  }
}

}  // namespace rove
