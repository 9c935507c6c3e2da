#include "cpu_setup.h"

#include <algorithm>

#include "bytes.h"
#include "guest_writer.h"
#include "rove/engine/loader/boot_layout.h"
#include "rove/mmu/guest_memory.h"
#include "rove/translator/cpu_state.h"

namespace rove::loader::detail {
namespace {

constexpr uint64_t kGiB = 1ull << 30;
constexpr uint64_t kTablePresentWritable = 0x3;  // P | RW
constexpr uint64_t kLargePage = 0x80;            // PS in a PDE: 2 MiB page

// GDT descriptors: base 0, limit 0xFFFFF pages (4 GiB), G = 1, present, DPL 0, accessed.
constexpr uint64_t kGdtCode32 = 0x00CF9B000000FFFFull;  // D = 1, execute/read
constexpr uint64_t kGdtCode64 = 0x00AF9B000000FFFFull;  // L = 1, execute/read
constexpr uint64_t kGdtData = 0x00CF93000000FFFFull;    // B = 1, read/write

constexpr uint32_t kFlatCode32Attr = seg_attr::kTypeCode | seg_attr::kTypeReadable |
                                     seg_attr::kTypeAccessed | seg_attr::kS | seg_attr::kP |
                                     seg_attr::kDb | seg_attr::kG;
constexpr uint32_t kFlatCode64Attr = seg_attr::kTypeCode | seg_attr::kTypeReadable |
                                     seg_attr::kTypeAccessed | seg_attr::kS | seg_attr::kP |
                                     seg_attr::kL | seg_attr::kG;
constexpr uint32_t kFlatDataAttr = seg_attr::kTypeWritable | seg_attr::kTypeAccessed |
                                   seg_attr::kS | seg_attr::kP | seg_attr::kDb | seg_attr::kG;
constexpr uint32_t kBusyTssAttr = 0xB | seg_attr::kP;  // 32/64-bit busy TSS
constexpr uint32_t kLdtUnusable = seg_attr::kUnusable;

uint64_t MapGiB(uint64_t size) {
  uint64_t gib = AlignUp(std::max(size, kIdentityMapMin), kGiB) / kGiB;
  return std::min(gib, kIdentityMapMax / kGiB);
}

SegmentCache Segment(uint16_t selector, uint64_t base, uint32_t limit, uint32_t attr) {
  SegmentCache s;
  s.selector = selector;
  s.base = base;
  s.limit = limit;
  s.attr = attr;
  return s;
}

void SetSystemTables(CpuState& cpu) {
  cpu.gdtr.base = kBootGdtAddr;
  cpu.gdtr.limit = kBootGdtSize - 1;
  cpu.idtr.base = 0;
  cpu.idtr.limit = 0;
  cpu.ldtr = Segment(0, 0, 0, kLdtUnusable);
  cpu.tr = Segment(0, 0, 0xFFFF, kBusyTssAttr);
}

void SetFlatSegments(CpuState& cpu, uint32_t code_attr) {
  cpu.seg[kCs] = Segment(kBootCodeSelector, 0, 0xFFFFFFFF, code_attr);
  for (SegReg r : {kDs, kEs, kSs, kFs, kGs}) {
    cpu.seg[r] = Segment(kBootDataSelector, 0, 0xFFFFFFFF, kFlatDataAttr);
  }
  SetSystemTables(cpu);
}

}  // namespace

void WriteBootGdt(GuestWriter& writer, bool long_mode) {
  ByteBuffer gdt(kBootGdtSize);
  gdt.Put64(kBootCodeSelector, long_mode ? kGdtCode64 : kGdtCode32);
  gdt.Put64(kBootDataSelector, kGdtData);
  writer.Write("boot GDT", kBootGdtAddr, gdt.span());
}

uint64_t IdentityPageTablesSize(uint64_t size) {
  return (2 + MapGiB(size)) * kPageSize;
}

uint64_t WriteIdentityPageTables(GuestWriter& writer, uint64_t size) {
  const uint64_t gib = MapGiB(size);
  ByteBuffer tables(IdentityPageTablesSize(size));
  const uint64_t pml4 = kPageTablesAddr;
  const uint64_t pdpt = pml4 + kPageSize;
  const uint64_t pd0 = pdpt + kPageSize;
  tables.Put64(0, pdpt | kTablePresentWritable);
  for (uint64_t i = 0; i < gib; ++i) {
    tables.Put64(kPageSize + i * 8, (pd0 + i * kPageSize) | kTablePresentWritable);
    for (uint64_t j = 0; j < 512; ++j) {
      uint64_t phys = i * kGiB + j * (2ull << 20);
      tables.Put64((2 + i) * kPageSize + j * 8, phys | kTablePresentWritable | kLargePage);
    }
  }
  writer.Write("page tables", kPageTablesAddr, tables.span());
  return pml4;
}

void ClearRegisters(CpuState& cpu) {
  for (uint64_t& r : cpu.gpr) r = 0;
  cpu.rflags = rflags::kFixed1;
  cpu.interrupt_shadow = false;
  cpu.halted = false;
}

void SetProtectedMode32(CpuState& cpu) {
  SetFlatSegments(cpu, kFlatCode32Attr);
  cpu.cr0 = cr0::kPe | cr0::kEt;
  cpu.cr3 = 0;
  cpu.cr4 = 0;
  cpu.efer = 0;
}

void SetLongMode(CpuState& cpu, uint64_t cr3) {
  SetFlatSegments(cpu, kFlatCode64Attr);
  cpu.cr0 = cr0::kPe | cr0::kEt | cr0::kPg;
  cpu.cr3 = cr3;
  cpu.cr4 = cr4::kPae;
  cpu.efer = efer::kLme | efer::kLma;
}

void SetRealMode(CpuState& cpu, uint16_t cs) {
  constexpr uint32_t kRealData =
      seg_attr::kTypeWritable | seg_attr::kTypeAccessed | seg_attr::kS | seg_attr::kP;
  constexpr uint32_t kRealCode = seg_attr::kTypeCode | seg_attr::kTypeReadable |
                                 seg_attr::kTypeAccessed | seg_attr::kS | seg_attr::kP;
  cpu.seg[kCs] = Segment(cs, uint64_t{cs} << 4, 0xFFFF, kRealCode);
  for (SegReg r : {kDs, kEs, kSs, kFs, kGs}) cpu.seg[r] = Segment(0, 0, 0xFFFF, kRealData);
  cpu.gdtr.base = 0;
  cpu.gdtr.limit = 0xFFFF;
  cpu.idtr.base = 0;
  cpu.idtr.limit = 0x3FF;  // the real-mode IVT
  cpu.ldtr = Segment(0, 0, 0xFFFF, 0x2 | seg_attr::kP);
  cpu.tr = Segment(0, 0, 0xFFFF, kBusyTssAttr);
  cpu.cr0 = cr0::kEt;
  cpu.cr3 = 0;
  cpu.cr4 = 0;
  cpu.efer = 0;
}

}  // namespace rove::loader::detail
