// PCI configuration space: the functions, a config-space base class with write masks (BAR
// sizing works by itself), the host bridge 00:00.0, and PciRoot, which answers configuration
// mechanism #1 (0xCF8 address / 0xCFC-0xCFF data, byte/word/dword) and the ECAM MMIO window
// (bus << 20 | device << 15 | function << 12 | register) from one registry of functions.
//
// Unpopulated functions read as all ones (vendor 0xFFFF) and ignore writes. Linux scans
// functions 1-7 of a device only if function 0's header type has bit 7 (multi-function) set.
//
// PciRoot also implements the PIIX/ICH reset control register at 0xCF9 (byte access inside the
// 0xCF8 window): a write with bit 2 (RST_CPU) set calls the reset callback. The ACPI FADT's
// RESET_REG points there (value 0x06), and Linux's reboot=pci writes it directly.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "rove/devices/bus.h"
#include "rove/devices/device_state.h"

namespace rove {

class PciFunction {
 public:
  virtual ~PciFunction() = default;
  // `offset` is 0-4095; the access (1, 2 or 4 bytes) does not cross a dword.
  virtual void ConfigRead(uint16_t offset, std::span<uint8_t> data) = 0;
  virtual void ConfigWrite(uint16_t offset, std::span<const uint8_t> data) = 0;
  // Snapshot of the function's state. The defaults throw StateError: a function that does not
  // implement them cannot be saved. ParseState reads and checks without changing anything and
  // returns what applies the state.
  virtual void SaveState(StateWriter& out) const;
  virtual StateApply ParseState(StateReader& in);
  void LoadState(StateReader& in) { ParseState(in)(); }
};

// A config space image with per-byte writable and write-1-to-clear masks. Subclasses set the
// header up in their constructor and may override OnConfigWrite to react to writes (a BAR
// moved, the command register changed). Thread-safe.
class PciConfigSpace : public PciFunction {
 public:
  // Standard header registers.
  static constexpr uint16_t kVendorId = 0x00;
  static constexpr uint16_t kDeviceId = 0x02;
  static constexpr uint16_t kCommand = 0x04;
  static constexpr uint16_t kStatus = 0x06;
  static constexpr uint16_t kRevision = 0x08;
  static constexpr uint16_t kClassCode = 0x09;  // 3 bytes: prog-if, subclass, class
  static constexpr uint16_t kHeaderType = 0x0E;
  static constexpr uint16_t kBar0 = 0x10;
  static constexpr uint16_t kSubsystemVendorId = 0x2C;
  static constexpr uint16_t kSubsystemId = 0x2E;
  static constexpr uint16_t kInterruptLine = 0x3C;
  static constexpr uint16_t kInterruptPin = 0x3D;
  // BAR flags.
  static constexpr uint32_t kBarIo = 0x1;
  static constexpr uint32_t kBarMem32 = 0x0;
  static constexpr uint32_t kBarMem64 = 0x4;
  static constexpr uint32_t kBarPrefetchable = 0x8;

  // `size` is 256 (conventional) or 4096 (PCI Express extended space).
  explicit PciConfigSpace(size_t size = 256);

  void ConfigRead(uint16_t offset, std::span<uint8_t> data) override;
  void ConfigWrite(uint16_t offset, std::span<const uint8_t> data) override;

  // Set-up helpers (raw stores, ignoring masks).
  void SetHeader(uint16_t vendor, uint16_t device, uint32_t class_code, uint8_t revision,
                 uint8_t header_type = 0);
  void Set8(uint16_t offset, uint8_t value);
  void Set16(uint16_t offset, uint16_t value);
  void Set32(uint16_t offset, uint32_t value);
  uint32_t Get32(uint16_t offset) const;
  void SetWritableMask(uint16_t offset, std::span<const uint8_t> mask);
  void SetWritableMask32(uint16_t offset, uint32_t mask);
  void SetW1cMask16(uint16_t offset, uint16_t mask);
  // A BAR of `size` bytes (a power of two; at least 16 for memory, 4 for I/O). A 64-bit BAR
  // takes `index` and `index + 1`.
  void DeclareBar(unsigned index, uint64_t size, uint32_t flags);
  // The address programmed into BAR `index` (64-bit BARs combined).
  uint64_t bar_address(unsigned index) const;

  // Snapshot: the config space image (the masks are the device's wiring, not state). Applying
  // it calls OnConfigWrite(0, size) so a subclass can react to the whole space changing.
  // Subclasses with more state override both and call these first.
  void SaveState(StateWriter& out) const override;
  StateApply ParseState(StateReader& in) override;

 protected:
  virtual void OnConfigWrite(uint16_t offset, size_t size) {}

 private:
  mutable std::mutex mu_;
  std::vector<uint8_t> space_;
  std::vector<uint8_t> writable_;
  std::vector<uint8_t> w1c_;
};

// Host bridge 00:00.0, identifying as an Intel 440FX PMC (the chipset Linux and firmware know
// best from QEMU's "pc" machine).
class PciHostBridge final : public PciConfigSpace {
 public:
  static constexpr uint16_t kVendor = 0x8086;
  static constexpr uint16_t kDevice = 0x1237;
  PciHostBridge();
};

class PciRoot final : public MultiWindowDevice {
 public:
  enum Window : unsigned { kConfigPortsWindow = 0, kEcamWindow = 1 };
  static constexpr uint64_t kConfigPortsSize = 8;  // 0xCF8-0xCFF
  static constexpr uint64_t EcamSize(unsigned buses) { return uint64_t(buses) << 20; }

  explicit PciRoot(std::function<void()> reset = nullptr);

  // Registers a function on bus 0. False if the slot is taken or out of range.
  bool Add(uint8_t device, uint8_t function, std::shared_ptr<PciFunction> fn);
  PciFunction* Get(uint8_t bus, uint8_t device, uint8_t function) const;

  // Direct config access (loaders, firmware tables, tests).
  void ConfigRead(uint8_t bus, uint8_t device, uint8_t function, uint16_t offset,
                  std::span<uint8_t> data);
  void ConfigWrite(uint8_t bus, uint8_t device, uint8_t function, uint16_t offset,
                   std::span<const uint8_t> data);

  void Read(unsigned window, uint64_t offset, std::span<uint8_t> data) override;
  void Write(unsigned window, uint64_t offset, std::span<const uint8_t> data) override;

  // Snapshot: the CF8 latch, the 0xCF9 reset control and every populated function (by slot).
  // LoadState requires the same functions in the same slots.
  void SaveState(StateWriter& out) const;
  void LoadState(StateReader& in);
  StateApply ParseState(StateReader& in);

 private:
  std::function<void()> reset_;
  std::array<std::shared_ptr<PciFunction>, 256> bus0_;  // device * 8 + function
  mutable std::mutex mu_;
  uint32_t address_ = 0;  // 0xCF8
  uint8_t reset_control_ = 0;
};

}  // namespace rove
