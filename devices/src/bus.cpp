#include "rove/devices/bus.h"

#include <algorithm>
#include <cstring>

namespace rove {

bool Bus::Insert(std::shared_ptr<BusDevice> device, uint64_t base, uint64_t length) {
  if (!device || length == 0 || base + (length - 1) < base) return false;
  const uint64_t last = base + (length - 1);
  auto it = std::lower_bound(entries_.begin(), entries_.end(), base,
                             [](const Entry& e, uint64_t b) { return e.base < b; });
  // The entry at or after `base` must start beyond our last byte ...
  if (it != entries_.end() && it->base <= last) return false;
  // ... and the entry before must end before `base`.
  if (it != entries_.begin()) {
    const Entry& prev = *(it - 1);
    if (prev.base + (prev.length - 1) >= base) return false;
  }
  entries_.insert(it, Entry{base, length, std::move(device)});
  return true;
}

const Bus::Entry* Bus::Find(uint64_t address, uint64_t size) const {
  // Last entry whose base <= address.
  auto it = std::upper_bound(entries_.begin(), entries_.end(), address,
                             [](uint64_t a, const Entry& e) { return a < e.base; });
  if (it == entries_.begin()) return nullptr;
  const Entry& e = *(it - 1);
  const uint64_t offset = address - e.base;
  if (offset >= e.length) return nullptr;
  if (size > e.length - offset) return nullptr;  // runs past the window's end
  return &e;
}

BusDevice* Bus::DeviceAt(uint64_t address) const {
  const Entry* e = Find(address, 1);
  return e ? e->device.get() : nullptr;
}

bool Bus::Read(uint64_t address, std::span<uint8_t> data) {
  if (const Entry* e = Find(address, data.size())) {
    e->device->Read(address - e->base, data);
    return true;
  }
  std::memset(data.data(), 0xFF, data.size());
  unclaimed_reads_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

bool Bus::Write(uint64_t address, std::span<const uint8_t> data) {
  if (const Entry* e = Find(address, data.size())) {
    e->device->Write(address - e->base, data);
    return true;
  }
  unclaimed_writes_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

}  // namespace rove
