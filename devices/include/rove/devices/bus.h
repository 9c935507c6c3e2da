// The port-I/O and MMIO buses. A device claims a window [base, base+length) and sees accesses
// as an offset into its own window. Overlapping windows are rejected.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace rove {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  // `data.size()` is the access width (1, 2, 4 or 8). Reads fill `data`.
  virtual void Read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void Write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class Bus {
 public:
  explicit Bus(std::string name) : name_(std::move(name)) {}
  // Returns false (and changes nothing) if the window overlaps an existing one or is empty.
  bool Insert(std::shared_ptr<BusDevice> device, uint64_t base, uint64_t length);
  // Accesses; an access no device claims reads as all ones, writes are dropped, and both are
  // counted. Returns true if a device claimed the access.
  bool Read(uint64_t address, std::span<uint8_t> data);
  bool Write(uint64_t address, std::span<const uint8_t> data);

  uint64_t unclaimed_reads() const { return unclaimed_reads_; }
  uint64_t unclaimed_writes() const { return unclaimed_writes_; }
  const std::string& name() const { return name_; }

 private:
  struct Entry {
    uint64_t base;
    uint64_t length;
    std::shared_ptr<BusDevice> device;
  };
  const Entry* Find(uint64_t address) const;
  std::string name_;
  std::vector<Entry> entries_;  // sorted by base
  uint64_t unclaimed_reads_ = 0;
  uint64_t unclaimed_writes_ = 0;
};

}  // namespace rove
