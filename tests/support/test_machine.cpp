#include "test_machine.h"

#include <algorithm>
#include <cstring>

#include "xsave_layout.h"

namespace rove::testing {
namespace {

constexpr uint64_t kPteP = 1ull << 0;
constexpr uint64_t kPteRw = 1ull << 1;
constexpr uint64_t kPteUs = 1ull << 2;
constexpr uint64_t kPteA = 1ull << 5;
constexpr uint64_t kPteD = 1ull << 6;
constexpr uint64_t kPteNx = 1ull << 63;

constexpr uint64_t kPdptGpa = 0x2000;
constexpr uint64_t kPdGpa = 0x3000;
constexpr uint64_t kPtDataGpa = 0x4000;
constexpr uint64_t kPtCodeGpa = 0x5000;
constexpr uint64_t kPtSysGpa = 0x6000;

void Put64(GuestMemory& mem, uint64_t gpa, uint64_t v) {
  std::memcpy(mem.host_base() + gpa, &v, 8);
}

// Maps [va, va+size) with 4 KiB pages in the page table at pt_gpa (one PT covers the 2 MiB the
// region lives in), each page to TestRegionGpa(va) (or linearly from `gpa` for the system
// region).
void MapRegion(GuestMemory& mem, uint64_t pt_gpa, uint64_t va, uint64_t size, uint64_t gpa,
               uint64_t flags, bool scattered) {
  for (uint64_t off = 0; off < size; off += kPageSize) {
    const uint64_t index = ((va + off) >> 12) & 511;
    const uint64_t page_gpa = scattered ? TestRegionGpa(va + off) : gpa + off;
    Put64(mem, pt_gpa + 8 * index, page_gpa | flags);
  }
}

// Legacy code/data descriptor from flat base/limit and the access-rights layout of seg_attr.
uint64_t Descriptor(uint32_t attr) {
  const uint64_t limit = 0xFFFFF;
  uint64_t d = limit & 0xFFFF;
  d |= static_cast<uint64_t>(attr & 0xFF) << 40;
  d |= ((limit >> 16) & 0xF) << 48;
  d |= static_cast<uint64_t>((attr >> 12) & 0xF) << 52;
  return d;
}

SegmentCache FlatSegment(uint16_t selector, uint32_t attr) {
  SegmentCache s;
  s.base = 0;
  s.limit = 0xFFFFFFFF;
  s.attr = attr;
  s.selector = selector;
  return s;
}

constexpr uint32_t kCode64Attr = seg_attr::kTypeCode | seg_attr::kTypeReadable |
                                 seg_attr::kTypeAccessed | seg_attr::kS | seg_attr::kP |
                                 seg_attr::kL | seg_attr::kG;
constexpr uint32_t kCode32Attr = seg_attr::kTypeCode | seg_attr::kTypeReadable |
                                 seg_attr::kTypeAccessed | seg_attr::kS | seg_attr::kP |
                                 seg_attr::kDb | seg_attr::kG;
constexpr uint32_t kDataAttr = seg_attr::kTypeWritable | seg_attr::kTypeAccessed | seg_attr::kS |
                               seg_attr::kP | seg_attr::kDb | seg_attr::kG;
constexpr uint32_t kDpl3 = 3u << seg_attr::kDplShift;

}  // namespace

uint64_t TestRegionGpa(uint64_t va) {
  // Data: virtual pages 0 1 2 3 -> physical pages 2 0 3 1. Code: pairs swapped (1 0 3 2 ...).
  static constexpr uint64_t kDataOrder[4] = {2, 0, 3, 1};
  static_assert(kDataSize == 4 * kPageSize);
  if (va >= kDataVa && va < kDataVa + kDataSize) {
    const uint64_t page = (va - kDataVa) / kPageSize;
    return kDataGpa + kDataOrder[page] * kPageSize + (va & (kPageSize - 1));
  }
  if (va >= kCodeVa && va < kCodeVa + kCodeSize) {
    const uint64_t page = (va - kCodeVa) / kPageSize;
    return kCodeGpa + (page ^ 1) * kPageSize + (va & (kPageSize - 1));
  }
  return ~0ull;
}

void WriteGuestVa(GuestMemory& mem, uint64_t va, const void* src, size_t len) {
  const auto* p = static_cast<const uint8_t*>(src);
  while (len > 0) {
    const size_t n = std::min<size_t>(len, kPageSize - (va & (kPageSize - 1)));
    std::memcpy(mem.host_base() + TestRegionGpa(va), p, n);
    va += n;
    p += n;
    len -= n;
  }
}

void ReadGuestVa(GuestMemory& mem, uint64_t va, void* dst, size_t len) {
  auto* p = static_cast<uint8_t*>(dst);
  while (len > 0) {
    const size_t n = std::min<size_t>(len, kPageSize - (va & (kPageSize - 1)));
    std::memcpy(p, mem.host_base() + TestRegionGpa(va), n);
    va += n;
    p += n;
    len -= n;
  }
}

bool VectorHasErrorCode(uint8_t vector) {
  switch (vector) {
    case 8:
    case 10:
    case 11:
    case 12:
    case 13:
    case 14:
    case 17:
    case 21:
    case 29:
    case 30:
      return true;
    default:
      return false;
  }
}

void BuildTestMachine(GuestMemory& mem, const TestMachineConfig& config) {
  uint8_t* host = mem.host_base();
  std::memset(host + kPml4Gpa, 0, 6 * kPageSize);
  std::memset(host + kSysGpa, 0, kSysSize);
  const uint64_t user = config.user_mode ? kPteUs : 0;

  // Paging structures: PML4[0] -> PDPT[0] -> PD; PD[128] data, PD[256] code, PD[511] sys.
  Put64(mem, kPml4Gpa, kPdptGpa | kPteP | kPteRw | kPteUs);
  Put64(mem, kPdptGpa, kPdGpa | kPteP | kPteRw | kPteUs);
  Put64(mem, kPdGpa + 8 * ((kDataVa >> 21) & 511), kPtDataGpa | kPteP | kPteRw | kPteUs);
  Put64(mem, kPdGpa + 8 * ((kCodeVa >> 21) & 511), kPtCodeGpa | kPteP | kPteRw | kPteUs);
  Put64(mem, kPdGpa + 8 * ((kSysVa >> 21) & 511), kPtSysGpa | kPteP | kPteRw | kPteUs);
  MapRegion(mem, kPtDataGpa, kDataVa, kDataSize, kDataGpa, kPteP | kPteRw | kPteNx | user, true);
  MapRegion(mem, kPtCodeGpa, kCodeVa, kCodeSize, kCodeGpa, kPteP | user, true);
  MapRegion(mem, kPtSysGpa, kSysVa, kSysSize, kSysGpa, kPteP | kPteRw | kPteA | kPteD, false);

  // GDT: null, kernel code64, kernel data, user data, user code64, 64-bit TSS (two slots),
  // kernel code32, user code32.
  const uint64_t gdt = kSysGpa + kGdtOffset;
  Put64(mem, gdt + 0x08, Descriptor(kCode64Attr));
  Put64(mem, gdt + 0x10, Descriptor(kDataAttr));
  Put64(mem, gdt + 0x18, Descriptor(kDataAttr | kDpl3));
  Put64(mem, gdt + 0x20, Descriptor(kCode64Attr | kDpl3));
  const uint64_t tss_va = kSysVa + kTssOffset;
  uint64_t tss_lo = 0x67;
  tss_lo |= (tss_va & 0xFFFFFF) << 16;
  tss_lo |= 0x8Bull << 40;  // present, type 11 (busy 64-bit TSS)
  tss_lo |= ((tss_va >> 24) & 0xFF) << 56;
  Put64(mem, gdt + 0x28, tss_lo);
  Put64(mem, gdt + 0x30, tss_va >> 32);
  Put64(mem, gdt + 0x38, Descriptor(kCode32Attr));
  Put64(mem, gdt + 0x40, Descriptor(kCode32Attr | kDpl3));

  // TSS: RSP0 and IST1.
  Put64(mem, kSysGpa + kTssOffset + 0x04, kSysVa + kRsp0TopOffset);
  Put64(mem, kSysGpa + kTssOffset + 0x24, kSysVa + kIstTopOffset);
  // No I/O permission bitmap: offset beyond the limit.
  const uint16_t iomap = 0x68;
  std::memcpy(host + kSysGpa + kTssOffset + 0x66, &iomap, 2);

  // IDT: 256 interrupt gates (DPL0, IST1) to the stubs.
  for (int v = 0; v < 256; ++v) {
    const uint64_t target = kSysVa + kStubOffset + 16 * v;
    uint64_t lo = target & 0xFFFF;
    lo |= static_cast<uint64_t>(kKernelCs) << 16;
    lo |= 1ull << 32;     // IST1
    lo |= 0x8Eull << 40;  // present, DPL0, 64-bit interrupt gate
    lo |= ((target >> 16) & 0xFFFF) << 48;
    Put64(mem, kSysGpa + kIdtOffset + 16 * v, lo);
    Put64(mem, kSysGpa + kIdtOffset + 16 * v + 8, target >> 32);

    // Stub: mov word [abs kSysVa+kMarkOffset], 0x100|v ; hlt ; jmp $-1
    uint8_t* s = host + kSysGpa + kStubOffset + 16 * v;
    const uint32_t mark = static_cast<uint32_t>(kSysVa + kMarkOffset);
    const uint16_t value = static_cast<uint16_t>(0x100 | v);
    const uint8_t stub[] = {0x66,
                            0xC7,
                            0x04,
                            0x25,
                            static_cast<uint8_t>(mark),
                            static_cast<uint8_t>(mark >> 8),
                            static_cast<uint8_t>(mark >> 16),
                            static_cast<uint8_t>(mark >> 24),
                            static_cast<uint8_t>(value),
                            static_cast<uint8_t>(value >> 8),
                            0xF4,
                            0xEB,
                            0xFD};
    std::memcpy(s, stub, sizeof(stub));
  }
}

void SetTestMachineState(CpuState& state, const TestMachineConfig& config) {
  state.cr0 = cr0::kPe | cr0::kMp | cr0::kEt | cr0::kNe | cr0::kWp | cr0::kPg;
  state.cr4 = cr4::kPae | cr4::kOsfxsr | cr4::kOsxmmexcpt | cr4::kOsxsave | cr4::kFsgsbase;
  state.cr3 = kPml4Gpa;
  state.cr2 = 0;
  state.efer = efer::kLme | efer::kLma | efer::kNxe;
  state.xcr0 = config.xcr0 ? config.xcr0 : HostXsaveLayout().guest_xcr0;

  if (config.user_mode) {
    state.seg[kCs] = config.compat32 ? FlatSegment(kUserCs32, kCode32Attr | kDpl3)
                                     : FlatSegment(kUserCs, kCode64Attr | kDpl3);
    const SegmentCache ds = FlatSegment(kUserDs, kDataAttr | kDpl3);
    for (int s : {kSs, kDs, kEs, kFs, kGs}) state.seg[s] = ds;
  } else {
    state.seg[kCs] = config.compat32 ? FlatSegment(kKernelCs32, kCode32Attr)
                                     : FlatSegment(kKernelCs, kCode64Attr);
    const SegmentCache ds = FlatSegment(kKernelDs, kDataAttr);
    for (int s : {kSs, kDs, kEs, kFs, kGs}) state.seg[s] = ds;
  }
  state.gdtr.base = kSysVa + kGdtOffset;
  state.gdtr.limit = 0x47;
  state.idtr.base = kSysVa + kIdtOffset;
  state.idtr.limit = 256 * 16 - 1;
  state.ldtr = SegmentCache{};
  state.ldtr.attr = seg_attr::kUnusable;
  state.ldtr.limit = 0;
  state.tr.selector = kTssSel;
  state.tr.base = kSysVa + kTssOffset;
  state.tr.limit = 0x67;
  state.tr.attr = 0xB | seg_attr::kP;
  state.rip = kCodeVa;
  state.rflags = rflags::kFixed1;
  state.halted = false;
  state.interrupt_shadow = false;
}

GuestException ReadGuestException(GuestMemory& mem) {
  GuestException e;
  uint16_t mark;
  std::memcpy(&mark, mem.host_base() + kSysGpa + kMarkOffset, 2);
  if (!(mark & 0x100)) return e;
  e.taken = true;
  e.vector = static_cast<uint8_t>(mark);
  e.has_error_code = VectorHasErrorCode(e.vector);
  const uint8_t* top = mem.host_base() + kSysGpa + kIstTopOffset;
  const uint8_t* frame = top - (e.has_error_code ? 48 : 40);
  auto get = [&](int i) {
    uint64_t v;
    std::memcpy(&v, frame + 8 * i, 8);
    return v;
  };
  int i = 0;
  if (e.has_error_code) e.error_code = get(i++);
  e.rip = get(i++);
  e.cs = get(i++);
  e.rflags = get(i++);
  e.rsp = get(i++);
  e.ss = get(i++);
  return e;
}

}  // namespace rove::testing
