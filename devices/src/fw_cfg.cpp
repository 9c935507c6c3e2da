#include "rove/devices/fw_cfg.h"

#include <algorithm>
#include <cstring>

namespace rove {

namespace {

void PutLe(std::vector<uint8_t>& out, uint64_t v, unsigned bytes) {
  for (unsigned i = 0; i < bytes; ++i) out.push_back(uint8_t(v >> (8 * i)));
}
void PutBe(std::vector<uint8_t>& out, uint64_t v, unsigned bytes) {
  for (unsigned i = bytes; i-- > 0;) out.push_back(uint8_t(v >> (8 * i)));
}
uint64_t GetBe(const uint8_t* p, unsigned bytes) {
  uint64_t v = 0;
  for (unsigned i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

constexpr char kDmaSignature[8] = {'Q', 'E', 'M', 'U', ' ', 'C', 'F', 'G'};

}  // namespace

FwCfg::FwCfg(DmaMemory* dma) : dma_(dma) {
  items_[kSignature] = {'Q', 'E', 'M', 'U'};
  std::vector<uint8_t> id;
  PutLe(id, dma ? 0x3 : 0x1, 4);
  items_[kId] = id;
  items_[kUuid] = std::vector<uint8_t>(16, 0);
  SetItemU16(kNoGraphic, 1);
  SetItemU16(kBootMenu, 0);
  SetCpuCount(1, 1);
  std::lock_guard lock(mu_);
  RebuildDirectoryLocked();
}

void FwCfg::SetItem(uint16_t key, std::vector<uint8_t> data) {
  std::lock_guard lock(mu_);
  items_[uint16_t(key & ~kWriteChannel)] = std::move(data);
}

void FwCfg::SetItemU16(uint16_t key, uint16_t value) {
  std::vector<uint8_t> d;
  PutLe(d, value, 2);
  SetItem(key, std::move(d));
}
void FwCfg::SetItemU32(uint16_t key, uint32_t value) {
  std::vector<uint8_t> d;
  PutLe(d, value, 4);
  SetItem(key, std::move(d));
}
void FwCfg::SetItemU64(uint16_t key, uint64_t value) {
  std::vector<uint8_t> d;
  PutLe(d, value, 8);
  SetItem(key, std::move(d));
}

bool FwCfg::AddFile(std::string_view name, std::vector<uint8_t> data) {
  if (name.empty() || name.size() >= kMaxFileName) return false;
  std::lock_guard lock(mu_);
  files_[std::string(name)] = std::move(data);
  RebuildDirectoryLocked();
  return true;
}

uint16_t FwCfg::FileSelector(std::string_view name) const {
  std::lock_guard lock(mu_);
  uint16_t select = kFileFirst;
  for (const auto& [n, d] : files_) {
    if (n == name) return select;
    ++select;
  }
  return 0;
}

void FwCfg::RebuildDirectoryLocked() {
  // Directory: u32 count, then per file u32 size, u16 select, u16 reserved, char name[56];
  // all big-endian. Files take selectors 0x20... in name order.
  for (auto it = items_.lower_bound(kFileFirst); it != items_.end() && it->first < kArchLocal;) {
    it = items_.erase(it);
  }
  std::vector<uint8_t> dir;
  PutBe(dir, files_.size(), 4);
  uint16_t select = kFileFirst;
  for (const auto& [name, data] : files_) {
    PutBe(dir, data.size(), 4);
    PutBe(dir, select, 2);
    PutBe(dir, 0, 2);
    char field[kMaxFileName] = {};
    std::memcpy(field, name.data(), name.size());
    dir.insert(dir.end(), field, field + kMaxFileName);
    items_[select++] = data;
  }
  items_[kFileDir] = std::move(dir);
}

void FwCfg::SetRamSize(uint64_t bytes) {
  SetItemU64(kRamSize, bytes);
}

void FwCfg::SetCpuCount(uint16_t cpus, uint16_t max_cpus) {
  SetItemU16(kNbCpus, cpus);
  SetItemU16(kMaxCpus, std::max(cpus, max_cpus));
}

void FwCfg::SetKernel(uint32_t load_address, std::vector<uint8_t> data) {
  SetItemU32(kKernelAddr, load_address);
  SetItemU32(kKernelSize, uint32_t(data.size()));
  SetItem(kKernelData, std::move(data));
}

void FwCfg::SetSetup(uint32_t load_address, std::vector<uint8_t> data) {
  SetItemU32(kSetupAddr, load_address);
  SetItemU32(kSetupSize, uint32_t(data.size()));
  SetItem(kSetupData, std::move(data));
}

void FwCfg::SetInitrd(uint32_t load_address, std::vector<uint8_t> data) {
  SetItemU32(kInitrdAddr, load_address);
  SetItemU32(kInitrdSize, uint32_t(data.size()));
  SetItem(kInitrdData, std::move(data));
}

void FwCfg::SetCmdline(uint32_t load_address, std::string_view cmdline) {
  std::vector<uint8_t> d(cmdline.begin(), cmdline.end());
  d.push_back(0);
  SetItemU32(kKernelCmdline, load_address);
  SetItemU32(kCmdlineAddr, load_address);
  SetItemU32(kCmdlineSize, uint32_t(d.size()));
  SetItem(kCmdlineData, std::move(d));
}

std::vector<uint8_t> FwCfg::EncodeE820(std::span<const E820Entry> entries) {
  std::vector<uint8_t> d;
  d.reserve(entries.size() * 20);
  for (const E820Entry& e : entries) {
    PutLe(d, e.address, 8);
    PutLe(d, e.length, 8);
    PutLe(d, e.type, 4);
  }
  return d;
}

void FwCfg::SetE820(std::span<const E820Entry> entries) {
  AddFile("etc/e820", EncodeE820(entries));
}

const std::vector<uint8_t>* FwCfg::ItemLocked(uint16_t key) const {
  auto it = items_.find(uint16_t(key & ~kWriteChannel));
  return it == items_.end() ? nullptr : &it->second;
}

void FwCfg::RunDmaLocked(uint64_t address) {
  // FWCfgDmaAccess: be32 control, be32 length, be64 address.
  uint8_t desc[16];
  if (!dma_ || !dma_->ReadPhysical(address, desc)) return;
  uint32_t control = uint32_t(GetBe(desc, 4));
  uint32_t length = uint32_t(GetBe(desc + 4, 4));
  const uint64_t target = GetBe(desc + 8, 8);
  if (control & kDmaSelect) {
    selected_ = uint16_t(control >> 16);
    offset_ = 0;
  }
  bool error = false;
  const std::vector<uint8_t>* item = ItemLocked(selected_);
  if (control & kDmaWrite) {
    error = true;  // no writable items
  } else if (control & (kDmaRead | kDmaSkip)) {
    if (control & kDmaRead) {
      std::vector<uint8_t> buf(length, 0);  // past the end of the item: zeros
      if (item && offset_ < item->size()) {
        const size_t n = std::min<size_t>(length, item->size() - offset_);
        std::memcpy(buf.data(), item->data() + offset_, n);
      }
      if (!dma_->WritePhysical(target, buf)) error = true;
    }
    offset_ += length;
  }
  uint8_t status[4] = {0, 0, 0, uint8_t(error ? kDmaError : 0)};
  dma_->WritePhysical(address, status);
}

void FwCfg::Read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t o = offset + i;
    uint8_t v = 0;
    if (o == kDataOffset) {
      const std::vector<uint8_t>* item = ItemLocked(selected_);
      if (item && offset_ < item->size()) v = (*item)[offset_];
      if (item && offset_ < item->size()) ++offset_;
    } else if (o >= kDmaOffset && o < kDmaOffset + 8 && dma_) {
      v = uint8_t(kDmaSignature[o - kDmaOffset]);
    } else if (o == kSelectorOffset || o == kSelectorOffset + 1) {
      v = 0;  // the selector is write-only
    } else {
      v = 0xFF;
    }
    data[i] = v;
  }
}

void FwCfg::Write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  if (offset == kSelectorOffset && !data.empty()) {
    selected_ = uint16_t(LoadLe(data.first(std::min<size_t>(data.size(), 2))));
    offset_ = 0;
    return;
  }
  if (offset >= kDmaOffset && offset + data.size() <= kDmaOffset + 8) {
    if (!dma_) return;
    std::memcpy(dma_address_ + (offset - kDmaOffset), data.data(), data.size());
    // Writing the low half (offset +4 within the register) starts the transfer.
    if (offset + data.size() == kDmaOffset + 8) {
      const uint64_t address = GetBe(dma_address_, 8);
      std::memset(dma_address_, 0, sizeof dma_address_);
      RunDmaLocked(address);
    }
  }
  // Writes to the data port are ignored, as in QEMU since 2.4.
}

// --- Snapshot. ---

void FwCfg::SaveState(StateWriter& out) const {
  std::lock_guard lock(mu_);
  out.U16(selected_);
  out.U32(offset_);
  out.Bytes(dma_address_, sizeof(dma_address_));
}

StateApply FwCfg::ParseState(StateReader& in) {
  const uint16_t selected = in.U16("selector");
  const uint32_t offset = in.U32("offset");
  uint8_t dma_address[sizeof(dma_address_)];
  in.Bytes(dma_address, sizeof(dma_address), "dma address");
  return [=, this]() mutable {
    std::lock_guard lock(mu_);
    selected_ = selected;
    offset_ = offset;
    std::copy(std::begin(dma_address), std::end(dma_address), dma_address_);
  };
}

void FwCfg::LoadState(StateReader& in) {
  ParseState(in)();
}

}  // namespace rove
