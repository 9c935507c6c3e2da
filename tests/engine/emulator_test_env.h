// Test environment for the system emulator: guest RAM with descriptor tables, IDT, TSS and page
// tables built by hand, fake I/O ports, a recording TranslationControl, a manual clock and a
// CPU model made from a fixed fake host (so results do not depend on the build machine).
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <initializer_list>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "rove/engine/cpu_model.h"
#include "rove/engine/guest_clock.h"
#include "rove/engine/io_ports.h"
#include "rove/engine/segmentation.h"
#include "rove/engine/system_emulator.h"
#include "rove/mmu/guest_memory.h"
#include "rove/mmu/linear_memory.h"
#include "rove/translator/cpu_state.h"
#include "rove/translator/exit.h"

namespace rove::test {

struct FakeIo : IoPorts {
  struct Access {
    uint16_t port;
    unsigned width;
    uint32_t value;
  };
  std::vector<Access> outs;
  std::vector<Access> ins;
  uint32_t next_in = 0;
  uint32_t In(uint16_t port, unsigned width) override {
    uint32_t v = next_in++;
    if (width < 4) v &= (1u << (width * 8)) - 1;
    ins.push_back({port, width, v});
    return v;
  }
  void Out(uint16_t port, unsigned width, uint32_t value) override {
    outs.push_back({port, width, value});
  }
};

struct FakeControl : TranslationControl {
  int flush_tlb = 0;
  int flush_tlb_global = 0;
  std::vector<uint64_t> flushed_pages;
  int flush_translations = 0;
  void FlushTlb(bool include_global) override {
    flush_tlb++;
    if (include_global) flush_tlb_global++;
  }
  void FlushTlbPage(uint64_t linear) override { flushed_pages.push_back(linear); }
  void FlushTranslations() override { flush_translations++; }
};

class ManualClock : public GuestClock {
 public:
  explicit ManualClock(uint64_t hz) : GuestClock(hz) { Restart(); }
  uint64_t now_ns = 1000;

 protected:
  uint64_t NowNs() const override { return now_ns; }
};

// A host with SSE..AVX-512, XSAVE (standard offsets), PCID, FSGSBASE, SMEP/SMAP, UMIP, PKU,
// VMX and x2APIC (so the tests can check what the model hides).
inline HostCpuInfo FakeHost() {
  HostCpuInfo h;
  h.xcr0 = 0x2E7;  // x87 SSE AVX opmask ZMM_Hi256 Hi16_ZMM PKRU
  h.cpuid = [](uint32_t leaf, uint32_t sub) -> CpuidResult {
    switch (leaf) {
      case 0:
        return {0x1F, 0x756E6547, 0x6C65746E, 0x49656E69};  // GenuineIntel
      case 1:
        return {0x000806F8, 0x00100800,
                (1u << 0) | (1u << 5) /*VMX*/ | (1u << 17) | (1u << 21) /*x2APIC*/ | (1u << 24) |
                    (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30),
                0xBFEBFBFF};
      case 7:
        if (sub == 0)
          return {1,
                  (1u << 0) | (1u << 5) | (1u << 7) | (1u << 10) | (1u << 11) /*RTM*/ | (1u << 16) |
                      (1u << 20) | (1u << 17) | (1u << 30) | (1u << 31),
                  (1u << 2) | (1u << 3) /*PKU*/ | (1u << 16) /*LA57*/ | (1u << 22),
                  (1u << 26) | (1u << 29)};
        return {1u << 5, 0, 0, 0};
      case 0xD:
        switch (sub) {
          case 0:
            return {0x2E7, 2696, 2696, 0};
          case 1:
            return {0xF, 0, 0, 0};
          case 2:
            return {256, 576, 0, 0};
          case 5:
            return {64, 1088, 0, 0};
          case 6:
            return {512, 1152, 0, 0};
          case 7:
            return {1024, 1664, 0, 0};
          case 9:
            return {8, 2688, 0, 0};
          default:
            return {};
        }
      case 0x15:
        return {2, 200, 25000000, 0};  // 2.5 GHz
      case 0x80000000:
        return {0x80000008, 0, 0, 0};
      case 0x80000001:
        return {0, 0, 1u << 0, (1u << 11) | (1u << 20) | (1u << 26) | (1u << 27) | (1u << 29)};
      case 0x80000008:
        return {0x3030, 1u << 9, 0, 0};
      default:
        return {};
    }
  };
  return h;
}

// Physical layout (identity-mapped when paging is on).
inline constexpr uint64_t kGdt = 0x1000;
inline constexpr uint64_t kIdt = 0x2000;
inline constexpr uint64_t kTss = 0x3000;
inline constexpr uint64_t kPml4 = 0x10000;
inline constexpr uint64_t kCode = 0x100000;
inline constexpr uint64_t kKernelStack = 0x1FF000;  // RSP0 / ESP0
inline constexpr uint64_t kUserStack = 0x2FF000;
inline constexpr uint64_t kHandlers = 0x400000;  // handler for vector v at kHandlers + 16*v
inline constexpr uint64_t kIstStack = 0x500000;

// Long-mode GDT (Linux-like, matches STAR = 0x0020'0010 << 32).
inline constexpr uint16_t kKCode32 = 0x08, kKCode64 = 0x10, kKData = 0x18, kUCode32 = 0x23,
                          kUData = 0x2B, kUCode64 = 0x33, kTssSel = 0x40;

class EmulatorTest : public ::testing::Test {
 protected:
  EmulatorTest()
      : mem(GuestMemory::Create(32ull << 20)),
        lin(*mem),
        model(CpuModelOptions{}, FakeHost()),
        clock(1000000000),
        emu(s, *mem, lin, io, tc, model, clock) {
    ResetCpuState(s);
  }

  void Put(uint64_t gpa, std::initializer_list<uint8_t> bytes) {
    std::vector<uint8_t> v(bytes);
    mem->Write(gpa, v.data(), v.size());
  }
  void Put64(uint64_t gpa, uint64_t v) { mem->WriteU64(gpa, v); }
  uint64_t Get64(uint64_t gpa) { return mem->ReadU64(gpa); }
  uint32_t Get32(uint64_t gpa) { return mem->ReadU32(gpa); }
  uint16_t Get16(uint64_t gpa) {
    uint16_t v;
    mem->Read(gpa, &v, 2);
    return v;
  }

  // Places `code` at the current CS:RIP (linear == physical here) and emulates it.
  EmulationResult Run(std::initializer_list<uint8_t> code) {
    uint64_t linear = s.seg[kCs].base + s.rip;
    std::vector<uint8_t> v(code);
    mem->Write(linear, v.data(), v.size());
    return emu.EmulateInstruction();
  }

  static uint64_t HandlerFor(uint8_t v) { return kHandlers + 16ull * v; }

  SegmentCache SegFromGdt(uint16_t sel) {
    return DecodeSegmentDescriptor(Get64(kGdt + (sel & ~7)), sel);
  }

  // 64-bit long mode at CPL 0, flat segments, identity paging of the first 32 MiB (user
  // accessible), IDT with a 64-bit interrupt gate per vector (DPL 0) and a TSS with RSP0.
  void SetupLong64() {
    auto put_desc = [&](uint16_t sel, uint32_t attr) {
      Put64(kGdt + (sel & ~7), EncodeSegmentDescriptor(0, 0xFFFFF, attr));
    };
    Put64(kGdt, 0);
    put_desc(kKCode32, 0xC09B);
    put_desc(kKCode64, 0xA09B);
    put_desc(kKData, 0xC093);
    put_desc(kUCode32, 0xC0FB);
    put_desc(kUData, 0xC0F3);
    put_desc(kUCode64, 0xA0FB);
    Put64(kGdt + kTssSel, EncodeSegmentDescriptor(static_cast<uint32_t>(kTss), 0x2068, 0x89));
    Put64(kGdt + kTssSel + 8, 0);
    s.gdtr = {kGdt, 0x7F};
    s.idtr = {kIdt, 0xFFF};
    for (int v = 0; v < 256; ++v) SetGate64(static_cast<uint8_t>(v), sys_type::kIntGate, 0, 0);
    // TSS: RSP0, IST1, I/O bitmap base 0x68 with all ports denied.
    Put64(kTss + 4, kKernelStack);
    Put64(kTss + 36, kIstStack);
    uint16_t iobase = 0x68;
    mem->Write(kTss + 102, &iobase, 2);
    std::vector<uint8_t> bitmap(0x2000 + 1, 0xFF);
    mem->Write(kTss + 0x68, bitmap.data(), bitmap.size());
    // Page tables.
    Put64(kPml4, (kPml4 + 0x1000) | 7);
    Put64(kPml4 + 0x1000, (kPml4 + 0x2000) | 7);
    for (uint64_t i = 0; i < 16; ++i) Put64(kPml4 + 0x2000 + i * 8, (i << 21) | 0x87);
    s.cr0 = cr0::kPe | cr0::kPg | cr0::kEt | cr0::kNe | cr0::kWp;
    s.cr3 = kPml4;
    s.cr4 = cr4::kPae | cr4::kOsfxsr | cr4::kOsxmmexcpt;
    s.efer = efer::kLme | efer::kLma | efer::kSce | efer::kNxe;
    s.seg[kCs] = SegFromGdt(kKCode64);
    for (SegReg r : {kSs, kDs, kEs}) s.seg[r] = SegFromGdt(kKData);
    s.seg[kFs] = NullSegment(0);
    s.seg[kGs] = NullSegment(0);
    s.ldtr = NullSegment(0);
    s.tr = DecodeSegmentDescriptor(Get64(kGdt + kTssSel), kTssSel, 0, true);
    s.tr.attr = (s.tr.attr & ~0xFu) | sys_type::kTssBusy;
    s.rip = kCode;
    s.gpr[kRsp] = 0x1F0000;
    s.rflags = rflags::kFixed1;
    s.msr.star = (0x0020ull << 48) | (0x0010ull << 32);
    s.msr.lstar = 0x600000;
    s.msr.sfmask = rflags::kIf | rflags::kTf | rflags::kDf;
  }

  void SetGate64(uint8_t v, uint8_t type, uint8_t dpl, uint8_t ist) {
    uint64_t hi = 0;
    uint64_t lo = EncodeGate(kKCode64, HandlerFor(v), type, dpl, ist, &hi);
    Put64(kIdt + v * 16ull, lo);
    Put64(kIdt + v * 16ull + 8, hi);
  }

  // Switches the long-mode setup to CPL 3 64-bit code with a user stack.
  void EnterUser64() {
    s.seg[kCs] = SegFromGdt(kUCode64);
    s.seg[kSs] = SegFromGdt(kUData);
    s.seg[kDs] = s.seg[kEs] = SegFromGdt(kUData);
    s.gpr[kRsp] = kUserStack;
    s.rflags |= rflags::kIf;
  }

  // 32-bit protected mode, no paging: flat code/data for CPL 0 (0x08/0x10) and CPL 3
  // (0x1B/0x23), a 32-bit TSS at 0x28 with ESP0/SS0, and 32-bit interrupt gates.
  static constexpr uint16_t kPCode0 = 0x08, kPData0 = 0x10, kPCode3 = 0x1B, kPData3 = 0x23,
                            kPTss = 0x28;
  void SetupProtected32() {
    Put64(kGdt, 0);
    Put64(kGdt + 0x08, EncodeSegmentDescriptor(0, 0xFFFFF, 0xC09B));
    Put64(kGdt + 0x10, EncodeSegmentDescriptor(0, 0xFFFFF, 0xC093));
    Put64(kGdt + 0x18, EncodeSegmentDescriptor(0, 0xFFFFF, 0xC0FB));
    Put64(kGdt + 0x20, EncodeSegmentDescriptor(0, 0xFFFFF, 0xC0F3));
    Put64(kGdt + 0x28, EncodeSegmentDescriptor(static_cast<uint32_t>(kTss), 0x67, 0x89));
    s.gdtr = {kGdt, 0x2F};
    s.idtr = {kIdt, 0x7FF};
    for (int v = 0; v < 256; ++v) SetGate32(static_cast<uint8_t>(v), sys_type::kIntGate, 0);
    mem->WriteU32(kTss + 4, static_cast<uint32_t>(kKernelStack));
    mem->WriteU32(kTss + 8, kPData0);
    uint16_t iobase = 0x68;  // beyond the limit: no bitmap
    mem->Write(kTss + 102, &iobase, 2);
    s.cr0 = cr0::kPe | cr0::kEt | cr0::kNe;
    s.cr3 = 0;
    s.cr4 = 0;
    s.efer = 0;
    s.seg[kCs] = SegFromGdt(kPCode0);
    for (SegReg r : {kSs, kDs, kEs, kFs, kGs}) s.seg[r] = SegFromGdt(kPData0);
    s.ldtr = NullSegment(0);
    s.tr = DecodeSegmentDescriptor(Get64(kGdt + kPTss), kPTss);
    s.tr.attr = (s.tr.attr & ~0xFu) | sys_type::kTssBusy;
    s.rip = kCode;
    s.gpr[kRsp] = 0x1F0000;
    s.rflags = rflags::kFixed1;
  }

  void SetGate32(uint8_t v, uint8_t type, uint8_t dpl) {
    Put64(kIdt + v * 8ull, EncodeGate(kPCode0, HandlerFor(v), type, dpl));
  }

  void EnterUser32() {
    s.seg[kCs] = SegFromGdt(kPCode3);
    for (SegReg r : {kSs, kDs, kEs, kFs, kGs}) s.seg[r] = SegFromGdt(kPData3);
    s.gpr[kRsp] = kUserStack;
  }

  // Real mode: CS=0, IP=kCode-relative small program at 0x7C00 style addresses.
  void SetupReal() {
    ResetCpuState(s);
    s.seg[kCs].selector = 0;
    s.seg[kCs].base = 0;
    for (SegReg r : {kSs, kDs, kEs}) s.seg[r] = RealModeSegment(0, false, s.seg[r]);
    s.idtr = {0, 0x3FF};
    s.rip = 0x7C00;
    s.gpr[kRsp] = 0x7000;
  }

  std::unique_ptr<GuestMemory> mem;
  LinearMemory lin;
  CpuState s;
  FakeIo io;
  FakeControl tc;
  CpuModel model;
  ManualClock clock;
  SystemEmulator emu;
};

}  // namespace rove::test
