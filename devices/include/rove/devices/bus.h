// The port-I/O and MMIO buses. A device claims a window [base, base+length) and sees accesses
// as an offset into its own window (Firecracker style). Overlapping windows are rejected.
//
// Threading: Read/Write may be called concurrently from any number of vCPU threads; the bus
// itself takes no lock (devices lock their own state). Insert is a setup-time call: make every
// Insert before vCPU threads start using the bus.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace rove {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  // `data.size()` is the access width (1, 2, 4 or 8). Reads fill `data`. The access lies wholly
  // inside the device's window. Multi-byte values are little-endian, as on x86.
  virtual void Read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void Write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class Bus {
 public:
  explicit Bus(std::string name) : name_(std::move(name)) {}
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;

  // Returns false (and changes nothing) if the window overlaps an existing one, is empty, wraps
  // around the address space or `device` is null.
  bool Insert(std::shared_ptr<BusDevice> device, uint64_t base, uint64_t length);
  // Accesses. An access is claimed when it lies wholly inside one device's window. An access no
  // device claims reads as all ones, writes are dropped, and both are counted. Returns true if a
  // device claimed the access.
  bool Read(uint64_t address, std::span<uint8_t> data);
  bool Write(uint64_t address, std::span<const uint8_t> data);

  // The device whose window holds `address`, or null.
  BusDevice* DeviceAt(uint64_t address) const;

  uint64_t unclaimed_reads() const { return unclaimed_reads_.load(std::memory_order_relaxed); }
  uint64_t unclaimed_writes() const { return unclaimed_writes_.load(std::memory_order_relaxed); }
  const std::string& name() const { return name_; }

 private:
  struct Entry {
    uint64_t base;
    uint64_t length;
    std::shared_ptr<BusDevice> device;
  };
  const Entry* Find(uint64_t address, uint64_t size) const;
  std::string name_;
  std::vector<Entry> entries_;  // sorted by base
  std::atomic<uint64_t> unclaimed_reads_{0};
  std::atomic<uint64_t> unclaimed_writes_{0};
};

// A device that answers in several disjoint windows (the PIC pair at 0x20, 0xA0 and 0x4D0;
// the PIT at 0x40 and 0x61; ...). Each window is registered on a bus as a BusWindow that
// forwards to the device with the window's number.
class MultiWindowDevice {
 public:
  virtual ~MultiWindowDevice() = default;
  virtual void Read(unsigned window, uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void Write(unsigned window, uint64_t offset, std::span<const uint8_t> data) = 0;
};

class BusWindow final : public BusDevice {
 public:
  BusWindow(std::shared_ptr<MultiWindowDevice> device, unsigned window)
      : device_(std::move(device)), window_(window) {}
  void Read(uint64_t offset, std::span<uint8_t> data) override {
    device_->Read(window_, offset, data);
  }
  void Write(uint64_t offset, std::span<const uint8_t> data) override {
    device_->Write(window_, offset, data);
  }

 private:
  std::shared_ptr<MultiWindowDevice> device_;
  unsigned window_;
};

// Little-endian helpers for devices: the value of an access and filling a read.
inline uint64_t LoadLe(std::span<const uint8_t> data) {
  uint64_t v = 0;
  for (size_t i = 0; i < data.size() && i < 8; ++i) v |= uint64_t{data[i]} << (8 * i);
  return v;
}
inline void StoreLe(std::span<uint8_t> data, uint64_t value) {
  for (size_t i = 0; i < data.size(); ++i) data[i] = i < 8 ? uint8_t(value >> (8 * i)) : 0;
}

}  // namespace rove
