// Guest physical memory: RAM backed by a memfd and mapped into one host reservation, plus the
// routing of non-RAM physical addresses to an MMIO handler.
//
// Host layout: the reservation starts at host_base() and covers guest physical addresses
// [0, reservation_size()). RAM below the PCI hole (kLowRamLimit) maps 1:1 at host_base() + gpa;
// RAM beyond that is placed from 4 GiB up, as on a PC. Everything else in the reservation is
// PROT_NONE, so a stray host pointer derived from a non-RAM address faults instead of touching
// host memory.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace rove {

inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kPageMask = ~(kPageSize - 1);
// RAM above this guest physical address is relocated to start at 4 GiB (PCI/MMIO hole).
inline constexpr uint64_t kLowRamLimit = 0xC0000000ull;
inline constexpr uint64_t kHighRamStart = 0x100000000ull;

// Receives guest physical accesses that do not hit RAM. Width is 1, 2, 4 or 8 bytes.
class MmioHandler {
 public:
  virtual ~MmioHandler() = default;
  virtual uint64_t MmioRead(uint64_t gpa, unsigned width) = 0;
  virtual void MmioWrite(uint64_t gpa, unsigned width, uint64_t value) = 0;
};

class GuestMemory {
 public:
  // Creates guest RAM of `ram_bytes` (rounded up to a page; must not be 0). Throws
  // std::runtime_error with a clear message (including strerror) when the host refuses.
  // reservation_size() is max(4 GiB, kHighRamStart + RAM above kLowRamLimit); a further
  // PROT_NONE guard follows the reservation so that an access running past its end faults.
  static std::unique_ptr<GuestMemory> Create(uint64_t ram_bytes);
  ~GuestMemory();
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  uint64_t ram_size() const { return ram_size_; }
  uint8_t* host_base() const { return host_base_; }
  uint64_t reservation_size() const { return reservation_size_; }
  int memfd() const { return memfd_; }

  // True if the whole page holding `gpa` is RAM.
  bool IsRam(uint64_t gpa) const {
    return gpa < low_ram_size_ || (gpa >= kHighRamStart && gpa - kHighRamStart < high_ram_size_);
  }
  // Host pointer of the RAM byte at `gpa`, or nullptr if `gpa` is not RAM.
  uint8_t* HostPointer(uint64_t gpa) const { return IsRam(gpa) ? host_base_ + gpa : nullptr; }

  void SetMmioHandler(MmioHandler* handler) { mmio_ = handler; }

  // Physical accesses from C++ (page walks, DMA, loaders, emulated instructions). They may span
  // pages; RAM parts are copied, other parts go to the MMIO handler in naturally sized pieces
  // (reads of unclaimed addresses without a handler return all ones).
  void Read(uint64_t gpa, void* dst, size_t len);
  void Write(uint64_t gpa, const void* src, size_t len);
  uint64_t ReadU64(uint64_t gpa);
  uint32_t ReadU32(uint64_t gpa);
  void WriteU64(uint64_t gpa, uint64_t v);
  void WriteU32(uint64_t gpa, uint32_t v);

  // Translated code: pages holding guest code are tracked so writes to them invalidate the
  // translations (self-modifying code). The observer is called before the write lands, with
  // the page-aligned gpa; it must be cheap to call when nothing is translated there.
  //
  // Mark/Clear/IsCodePage and NotifyWrite may be called concurrently from any vCPU thread
  // (atomic bit operations). Pages at or beyond reservation_size() are never code pages.
  // The bit stays set after the observer runs: the observer (the translator) clears it once
  // the page's translations are gone. SetCodeWriteObserver is a setup-time call: do not call it
  // while other threads may be writing guest memory.
  bool IsCodePage(uint64_t gpa) const;
  void MarkCodePage(uint64_t gpa);
  void ClearCodePage(uint64_t gpa);
  void SetCodeWriteObserver(std::function<void(uint64_t page_gpa)> observer);
  // Called by every C++ write path before writing [gpa, gpa+len): calls the observer once for
  // each page of the range whose code bit is set. Costs one atomic load when no page of the
  // whole guest is marked.
  void NotifyWrite(uint64_t gpa, size_t len);

 private:
  GuestMemory() = default;
  void MmioReadPieces(uint64_t gpa, uint8_t* dst, size_t len);
  void MmioWritePieces(uint64_t gpa, const uint8_t* src, size_t len);

  uint64_t ram_size_ = 0;
  uint64_t low_ram_size_ = 0;   // RAM at [0, low_ram_size_)
  uint64_t high_ram_size_ = 0;  // RAM at [kHighRamStart, kHighRamStart + high_ram_size_)
  uint64_t reservation_size_ = 0;
  uint8_t* host_base_ = nullptr;
  uint8_t* mapping_base_ = nullptr;  // what munmap releases (reservation plus guard/alignment)
  size_t mapping_size_ = 0;
  int memfd_ = -1;
  MmioHandler* mmio_ = nullptr;
  std::vector<std::atomic<uint64_t>> code_bitmap_;  // one bit per guest page of the reservation
  std::atomic<uint64_t> code_page_count_{0};        // number of bits set in code_bitmap_
  std::function<void(uint64_t)> code_write_observer_;
};

}  // namespace rove
