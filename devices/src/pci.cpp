#include "rove/devices/pci.h"

#include <algorithm>
#include <cstring>

namespace rove {

// --- PciConfigSpace. ---

PciConfigSpace::PciConfigSpace(size_t size) : space_(size, 0), writable_(size, 0), w1c_(size, 0) {
  // Command: I/O, memory, bus master, parity error response, SERR, INTx disable.
  SetWritableMask(kCommand, std::array<uint8_t, 2>{0x47, 0x05});
  // Status: the error bits are write-1-to-clear.
  SetW1cMask16(kStatus, 0xF900);
  writable_[0x0C] = 0xFF;  // cache line size
  writable_[0x0D] = 0xFF;  // latency timer
  writable_[kInterruptLine] = 0xFF;
}

void PciConfigSpace::ConfigRead(uint16_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = offset + i < space_.size() ? space_[offset + i] : 0;
  }
}

void PciConfigSpace::ConfigWrite(uint16_t offset, std::span<const uint8_t> data) {
  {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < data.size(); ++i) {
      const size_t o = offset + i;
      if (o >= space_.size()) break;
      const uint8_t v = data[i];
      space_[o] = uint8_t((space_[o] & ~writable_[o]) | (v & writable_[o]));
      space_[o] &= uint8_t(~(v & w1c_[o]));
    }
  }
  OnConfigWrite(offset, data.size());
}

void PciConfigSpace::SetHeader(uint16_t vendor, uint16_t device, uint32_t class_code,
                               uint8_t revision, uint8_t header_type) {
  Set16(kVendorId, vendor);
  Set16(kDeviceId, device);
  Set8(kRevision, revision);
  Set8(kClassCode, uint8_t(class_code));
  Set8(kClassCode + 1, uint8_t(class_code >> 8));
  Set8(kClassCode + 2, uint8_t(class_code >> 16));
  Set8(kHeaderType, header_type);
}

void PciConfigSpace::Set8(uint16_t offset, uint8_t value) {
  std::lock_guard lock(mu_);
  space_.at(offset) = value;
}
void PciConfigSpace::Set16(uint16_t offset, uint16_t value) {
  Set8(offset, uint8_t(value));
  Set8(uint16_t(offset + 1), uint8_t(value >> 8));
}
void PciConfigSpace::Set32(uint16_t offset, uint32_t value) {
  Set16(offset, uint16_t(value));
  Set16(uint16_t(offset + 2), uint16_t(value >> 16));
}
uint32_t PciConfigSpace::Get32(uint16_t offset) const {
  std::lock_guard lock(mu_);
  uint32_t v = 0;
  for (unsigned i = 0; i < 4; ++i) v |= uint32_t(space_.at(offset + i)) << (8 * i);
  return v;
}

void PciConfigSpace::SetWritableMask(uint16_t offset, std::span<const uint8_t> mask) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < mask.size(); ++i) writable_.at(offset + i) = mask[i];
}
void PciConfigSpace::SetWritableMask32(uint16_t offset, uint32_t mask) {
  std::array<uint8_t, 4> m{};
  StoreLe(m, mask);
  SetWritableMask(offset, m);
}
void PciConfigSpace::SetW1cMask16(uint16_t offset, uint16_t mask) {
  std::lock_guard lock(mu_);
  w1c_.at(offset) = uint8_t(mask);
  w1c_.at(offset + 1) = uint8_t(mask >> 8);
}

void PciConfigSpace::DeclareBar(unsigned index, uint64_t size, uint32_t flags) {
  const uint16_t off = uint16_t(kBar0 + 4 * index);
  const uint64_t addr_mask = ~(size - 1);
  if (flags & kBarIo) {
    Set32(off, kBarIo);
    SetWritableMask32(off, uint32_t(addr_mask) & 0xFFFFFFFC);
    return;
  }
  Set32(off, flags & 0xF);
  SetWritableMask32(off, uint32_t(addr_mask) & 0xFFFFFFF0);
  if (flags & kBarMem64) {
    Set32(uint16_t(off + 4), 0);
    SetWritableMask32(uint16_t(off + 4), uint32_t(addr_mask >> 32));
  }
}

uint64_t PciConfigSpace::bar_address(unsigned index) const {
  const uint16_t off = uint16_t(kBar0 + 4 * index);
  const uint32_t low = Get32(off);
  if (low & kBarIo) return low & 0xFFFFFFFC;
  uint64_t addr = low & 0xFFFFFFF0;
  if (low & kBarMem64) addr |= uint64_t(Get32(uint16_t(off + 4))) << 32;
  return addr;
}

// --- Host bridge. ---

PciHostBridge::PciHostBridge() {
  SetHeader(kVendor, kDevice, 0x060000 /* bridge: host */, 0x02);
  Set16(kCommand, 0x0006);  // memory space and bus master, as after firmware
  SetWritableMask(kCommand, std::array<uint8_t, 2>{0, 0});
}

// --- PciRoot. ---

PciRoot::PciRoot(std::function<void()> reset) : reset_(std::move(reset)) {}

bool PciRoot::Add(uint8_t device, uint8_t function, std::shared_ptr<PciFunction> fn) {
  if (device >= 32 || function >= 8 || !fn) return false;
  auto& slot = bus0_[device * 8 + function];
  if (slot) return false;
  slot = std::move(fn);
  return true;
}

PciFunction* PciRoot::Get(uint8_t bus, uint8_t device, uint8_t function) const {
  if (bus != 0 || device >= 32 || function >= 8) return nullptr;
  return bus0_[device * 8 + function].get();
}

void PciRoot::ConfigRead(uint8_t bus, uint8_t device, uint8_t function, uint16_t offset,
                         std::span<uint8_t> data) {
  PciFunction* fn = Get(bus, device, function);
  if (!fn || offset >= 4096) {
    std::memset(data.data(), 0xFF, data.size());
    return;
  }
  fn->ConfigRead(offset, data);
}

void PciRoot::ConfigWrite(uint8_t bus, uint8_t device, uint8_t function, uint16_t offset,
                          std::span<const uint8_t> data) {
  PciFunction* fn = Get(bus, device, function);
  if (fn && offset < 4096) fn->ConfigWrite(offset, data);
}

void PciRoot::Read(unsigned window, uint64_t offset, std::span<uint8_t> data) {
  if (window == kEcamWindow) {
    // An 8-byte access is two dword configuration reads.
    if (data.size() == 8) {
      Read(window, offset, data.first(4));
      Read(window, offset + 4, data.subspan(4));
      return;
    }
    ConfigRead(uint8_t(offset >> 20), uint8_t((offset >> 15) & 31), uint8_t((offset >> 12) & 7),
               uint16_t(offset & 0xFFF), data);
    return;
  }
  uint32_t address;
  {
    std::lock_guard lock(mu_);
    if (offset == 0 && data.size() == 4) {
      StoreLe(data, address_);
      return;
    }
    if (offset == 1 && data.size() == 1) {
      data[0] = reset_control_;
      return;
    }
    address = address_;
  }
  if (offset < 4 || !(address & 0x80000000u)) {
    std::memset(data.data(), 0xFF, data.size());
    return;
  }
  ConfigRead(uint8_t(address >> 16), uint8_t((address >> 11) & 31), uint8_t((address >> 8) & 7),
             uint16_t((address & 0xFC) + (offset - 4)), data);
}

void PciRoot::Write(unsigned window, uint64_t offset, std::span<const uint8_t> data) {
  if (window == kEcamWindow) {
    if (data.size() == 8) {
      Write(window, offset, data.first(4));
      Write(window, offset + 4, data.subspan(4));
      return;
    }
    ConfigWrite(uint8_t(offset >> 20), uint8_t((offset >> 15) & 31), uint8_t((offset >> 12) & 7),
                uint16_t(offset & 0xFFF), data);
    return;
  }
  uint32_t address;
  bool reset = false;
  {
    std::lock_guard lock(mu_);
    if (offset == 0 && data.size() == 4) {
      address_ = uint32_t(LoadLe(data)) & 0x80FFFFFCu;
      return;
    }
    if (offset == 1 && data.size() == 1) {
      reset = data[0] & 0x04;           // RST_CPU: reset now
      reset_control_ = data[0] & 0x0A;  // SYS_RST and FULL_RST are kept; RST_CPU self-clears
    }
    address = address_;
  }
  if (reset) {
    if (reset_) reset_();
    return;
  }
  if (offset < 4 || !(address & 0x80000000u)) return;
  ConfigWrite(uint8_t(address >> 16), uint8_t((address >> 11) & 31), uint8_t((address >> 8) & 7),
              uint16_t((address & 0xFC) + (offset - 4)), data);
}

// --- Snapshot. ---

void PciFunction::SaveState(StateWriter&) const {
  throw StateError("device state: a PCI function without snapshot support cannot be saved");
}

StateApply PciFunction::ParseState(StateReader& in) {
  in.Fail("a PCI function without snapshot support cannot be loaded");
}

void PciConfigSpace::SaveState(StateWriter& out) const {
  std::lock_guard lock(mu_);
  out.Blob(space_);
}

StateApply PciConfigSpace::ParseState(StateReader& in) {
  size_t size;
  {
    std::lock_guard lock(mu_);
    size = space_.size();
  }
  std::vector<uint8_t> space = in.Blob(size, "config space");
  if (space.size() != size) in.Fail("config space size differs from the device's");
  return [this, space = std::move(space)]() {
    {
      std::lock_guard lock(mu_);
      space_ = space;
    }
    OnConfigWrite(0, space.size());
  };
}

void PciRoot::SaveState(StateWriter& out) const {
  std::array<std::shared_ptr<PciFunction>, 256> functions;
  {
    std::lock_guard lock(mu_);
    out.U32(address_);
    out.U8(reset_control_);
    functions = bus0_;
  }
  uint32_t count = 0;
  for (const auto& fn : functions) count += fn != nullptr;
  out.U32(count);
  for (size_t slot = 0; slot < functions.size(); ++slot) {
    if (!functions[slot]) continue;
    out.U8(uint8_t(slot));
    const size_t record = out.BeginRecord(StateTag("PCIF"), 1);
    functions[slot]->SaveState(out);
    out.EndRecord(record);
  }
}

StateApply PciRoot::ParseState(StateReader& in) {
  const uint32_t address = in.U32("cf8 address");
  if (address & ~0x80FFFFFCu) in.Fail("CF8 address sets reserved bits");
  const uint8_t reset_control = in.U8("reset control");
  if (reset_control & ~0x0A) in.Fail("invalid reset control bits");
  std::array<std::shared_ptr<PciFunction>, 256> functions;
  {
    std::lock_guard lock(mu_);
    functions = bus0_;
  }
  uint32_t expected = 0;
  for (const auto& fn : functions) expected += fn != nullptr;
  const uint32_t count = in.U32("function count");
  if (count != expected) {
    in.Fail("the snapshot has " + std::to_string(count) + " PCI functions, this machine " +
            std::to_string(expected));
  }
  std::vector<StateApply> applies;
  int last_slot = -1;
  for (uint32_t i = 0; i < count; ++i) {
    const uint8_t slot = in.U8("function slot");
    if (int(slot) <= last_slot) in.Fail("PCI function slots out of order");
    last_slot = slot;
    if (!functions[slot])
      in.Fail("the snapshot has a PCI function in a slot this machine has empty");
    StateReader body = in.ReadRecord(StateTag("PCIF"), 1);
    applies.push_back(functions[slot]->ParseState(body));
    body.ExpectEnd();
  }
  return [this, address, reset_control, applies = std::move(applies)]() {
    for (const StateApply& apply : applies) apply();
    std::lock_guard lock(mu_);
    address_ = address;
    reset_control_ = reset_control;
  };
}

void PciRoot::LoadState(StateReader& in) {
  ParseState(in)();
}

}  // namespace rove
