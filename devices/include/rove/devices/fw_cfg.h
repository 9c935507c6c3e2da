// QEMU-compatible firmware configuration device (fw_cfg), I/O interface at 0x510:
//
//   +0x0  selector (16-bit write; selects an item and rewinds it)
//   +0x1  data (8-bit read; bytes of the selected item, then zeros)
//   +0x4  DMA address (64-bit big-endian; high half at +0x4, low half at +0x8 — writing the low
//         half starts the transfer). Reads return the signature "QEMU CFG".
//
// Items: signature "QEMU" (0x00), ID (0x01: traditional interface, plus DMA when a DmaMemory
// is given), UUID, RAM size, CPU counts, kernel/initrd/command line address-size-data items,
// and named files listed in the file directory (0x19) at selectors 0x20 and up, sorted by
// name. The e820 memory map is the file "etc/e820" (20-byte entries: u64 address, u64 length,
// u32 type, little-endian). Guest writes to items are not supported (ignored, or the DMA
// error bit).
//
// Thread-safe. Items are normally set up before the guest runs.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rove/devices/bus.h"
#include "rove/devices/device_state.h"

namespace rove {

// Guest-physical memory access for DMA-capable devices (implemented by the engine over its
// guest memory). Returns false if the range is not all accessible.
class DmaMemory {
 public:
  virtual ~DmaMemory() = default;
  virtual bool ReadPhysical(uint64_t gpa, std::span<uint8_t> data) = 0;
  virtual bool WritePhysical(uint64_t gpa, std::span<const uint8_t> data) = 0;
};

struct E820Entry {
  uint64_t address = 0;
  uint64_t length = 0;
  uint32_t type = 0;
};
inline constexpr uint32_t kE820Ram = 1;
inline constexpr uint32_t kE820Reserved = 2;
inline constexpr uint32_t kE820Acpi = 3;
inline constexpr uint32_t kE820Nvs = 4;

class FwCfg final : public BusDevice {
 public:
  static constexpr uint64_t kSize = 0x0C;
  static constexpr uint64_t kSelectorOffset = 0x0;
  static constexpr uint64_t kDataOffset = 0x1;
  static constexpr uint64_t kDmaOffset = 0x4;

  enum Key : uint16_t {
    kSignature = 0x00,
    kId = 0x01,
    kUuid = 0x02,
    kRamSize = 0x03,
    kNoGraphic = 0x04,
    kNbCpus = 0x05,
    kMachineId = 0x06,
    kKernelAddr = 0x07,
    kKernelSize = 0x08,
    kKernelCmdline = 0x09,
    kInitrdAddr = 0x0A,
    kInitrdSize = 0x0B,
    kBootDevice = 0x0C,
    kNuma = 0x0D,
    kBootMenu = 0x0E,
    kMaxCpus = 0x0F,
    kKernelEntry = 0x10,
    kKernelData = 0x11,
    kInitrdData = 0x12,
    kCmdlineAddr = 0x13,
    kCmdlineSize = 0x14,
    kCmdlineData = 0x15,
    kSetupAddr = 0x16,
    kSetupSize = 0x17,
    kSetupData = 0x18,
    kFileDir = 0x19,
    kFileFirst = 0x20,
  };
  static constexpr uint16_t kWriteChannel = 0x4000;
  static constexpr uint16_t kArchLocal = 0x8000;
  static constexpr size_t kMaxFileName = 56;  // including the terminating NUL

  // DMA control bits.
  static constexpr uint32_t kDmaError = 0x01;
  static constexpr uint32_t kDmaRead = 0x02;
  static constexpr uint32_t kDmaSkip = 0x04;
  static constexpr uint32_t kDmaSelect = 0x08;
  static constexpr uint32_t kDmaWrite = 0x10;

  // `dma` may be null: then the DMA interface is not advertised.
  explicit FwCfg(DmaMemory* dma = nullptr);

  void SetItem(uint16_t key, std::vector<uint8_t> data);
  void SetItemU16(uint16_t key, uint16_t value);
  void SetItemU32(uint16_t key, uint32_t value);
  void SetItemU64(uint16_t key, uint64_t value);
  // Adds (or replaces) a named file. False if the name is empty or too long.
  bool AddFile(std::string_view name, std::vector<uint8_t> data);
  // The selector of a file, or 0 if there is none.
  uint16_t FileSelector(std::string_view name) const;

  void SetRamSize(uint64_t bytes);
  void SetCpuCount(uint16_t cpus, uint16_t max_cpus);
  void SetKernel(uint32_t load_address, std::vector<uint8_t> data);
  void SetSetup(uint32_t load_address, std::vector<uint8_t> data);
  void SetInitrd(uint32_t load_address, std::vector<uint8_t> data);
  void SetCmdline(uint32_t load_address, std::string_view cmdline);
  void SetE820(std::span<const E820Entry> entries);
  static std::vector<uint8_t> EncodeE820(std::span<const E820Entry> entries);

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

  // Snapshot (record body, see device_state.h): the selector, the offset in
  // the selected item and the DMA address latch. The items themselves are the machine's
  // configuration (the loader sets them again on the loading machine).
  void SaveState(StateWriter& out) const;
  void LoadState(StateReader& in);
  // LoadState in two steps: reads and checks everything (throwing StateError, changing
  // nothing), then returns what applies it.
  StateApply ParseState(StateReader& in);

 private:
  void RebuildDirectoryLocked();
  const std::vector<uint8_t>* ItemLocked(uint16_t key) const;
  void RunDmaLocked(uint64_t address);

  DmaMemory* dma_;
  mutable std::mutex mu_;
  std::map<uint16_t, std::vector<uint8_t>> items_;
  std::map<std::string, std::vector<uint8_t>, std::less<>> files_;
  uint16_t selected_ = 0;
  uint32_t offset_ = 0;
  uint8_t dma_address_[8] = {};
};

}  // namespace rove
