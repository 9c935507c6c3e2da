// Translator-level tests: run small 64-bit guest programs on BtCpu directly and check state.
#include "rove/translator/bt_cpu.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "rove/mmu/guest_memory.h"
#include "rove/translator/cpu_state.h"

namespace rove {
namespace {

// Long-mode guest: identity-mapped first 1 GiB with 2 MiB pages, code at 0x100000,
// stack top at 0x80000, data at 0x200000.
class LongModeGuest {
 public:
  static constexpr uint64_t kCode = 0x100000;
  static constexpr uint64_t kData = 0x200000;
  static constexpr uint64_t kStackTop = 0x80000;

  LongModeGuest() : mem(GuestMemory::Create(64ull << 20)) {
    const uint64_t pml4 = 0x1000, pdpt = 0x2000, pd = 0x3000;
    mem->WriteU64(pml4, pdpt | 0x7);
    mem->WriteU64(pdpt, pd | 0x7);
    for (uint64_t i = 0; i < 512; ++i) mem->WriteU64(pd + 8 * i, (i << 21) | 0x87);
    ResetCpuState(state);
    state.cr0 = cr0::kPe | cr0::kPg | cr0::kEt | cr0::kNe | cr0::kWp;
    state.cr3 = pml4;
    state.cr4 = cr4::kPae | cr4::kOsfxsr | cr4::kOsxmmexcpt;
    state.efer = efer::kLme | efer::kLma | efer::kNxe | efer::kSce;
    for (auto& s : state.seg) {
      s.base = 0;
      s.limit = 0xFFFFFFFF;
      s.attr = seg_attr::kP | seg_attr::kS | seg_attr::kTypeWritable | seg_attr::kTypeAccessed |
               seg_attr::kDb | seg_attr::kG;
    }
    state.seg[kCs].attr = seg_attr::kP | seg_attr::kS | seg_attr::kTypeCode |
                          seg_attr::kTypeReadable | seg_attr::kL | seg_attr::kG;
    state.seg[kCs].selector = 0x8;
    state.rip = kCode;
    state.gpr[kRsp] = kStackTop;
    cpu = std::make_unique<BtCpu>(*mem, state);
  }

  void Load(const std::vector<uint8_t>& code) { mem->Write(kCode, code.data(), code.size()); }

  // Runs until the emulator would be needed (HLT ends every program here).
  Exit RunToEmulate() {
    for (int i = 0; i < 1000; ++i) {
      Exit e = cpu->Run();
      if (e.reason != ExitReason::kRequest) return e;
    }
    return Exit{};
  }

  std::unique_ptr<GuestMemory> mem;
  CpuState state;
  std::unique_ptr<BtCpu> cpu;
};

TEST(BtCpu, RegisterArithmeticAndHlt) {
  LongModeGuest g;
  // mov rax, 5; mov rbx, 7; add rax, rbx; imul rax, rax; hlt
  g.Load({0x48, 0xC7, 0xC0, 5,    0,    0,    0,    0x48, 0xC7, 0xC3, 7,
          0,    0,    0,    0x48, 0x01, 0xD8, 0x48, 0x0F, 0xAF, 0xC0, 0xF4});
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(g.state.rip, LongModeGuest::kCode + 21);
  EXPECT_EQ(g.state.gpr[kRax], 144u);
  EXPECT_EQ(g.state.gpr[kRbx], 7u);
}

TEST(BtCpu, MemoryLoadsStoresAndStack) {
  LongModeGuest g;
  // mov rdi, 0x200000; mov qword [rdi+8], 0x1234; mov rax, [rdi+8]; push rax; pop rcx;
  // add [rdi+8], rcx; mov rdx, [rdi+8]; hlt
  g.Load({0x48, 0xC7, 0xC7, 0x00, 0x00, 0x20, 0x00,     // mov rdi, 0x200000
          0x48, 0xC7, 0x47, 0x08, 0x34, 0x12, 0,    0,  // mov qword [rdi+8], 0x1234
          0x48, 0x8B, 0x47, 0x08,                       // mov rax, [rdi+8]
          0x50,                                         // push rax
          0x59,                                         // pop rcx
          0x48, 0x01, 0x4F, 0x08,                       // add [rdi+8], rcx
          0x48, 0x8B, 0x57, 0x08,                       // mov rdx, [rdi+8]
          0xF4});
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(g.state.gpr[kRax], 0x1234u);
  EXPECT_EQ(g.state.gpr[kRcx], 0x1234u);
  EXPECT_EQ(g.state.gpr[kRdx], 0x2468u);
  EXPECT_EQ(g.state.gpr[kRsp], LongModeGuest::kStackTop);
  EXPECT_EQ(g.mem->ReadU64(LongModeGuest::kData + 8), 0x2468u);
  EXPECT_EQ(g.mem->ReadU64(LongModeGuest::kStackTop - 8), 0x1234u);
}

TEST(BtCpu, LoopCallRetAndFlags) {
  LongModeGuest g;
  // xor eax, eax; mov ecx, 10; L: call F; loop L; hlt; F: add rax, 3; ret
  g.Load({0x31, 0xC0,                 // xor eax, eax
          0xB9, 10,   0,    0,    0,  // mov ecx, 10
          0xE8, 0x03, 0,    0,    0,  // call F (+3)
          0xE2, 0xF9,                 // loop L (-7)
          0xF4,                       // hlt
          0x48, 0x83, 0xC0, 0x03,     // F: add rax, 3
          0xC3});                     // ret
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(g.state.gpr[kRax], 30u);
  EXPECT_EQ(g.state.gpr[kRcx], 0u);
  EXPECT_EQ(g.state.gpr[kRsp], LongModeGuest::kStackTop);
  EXPECT_EQ(g.state.rip, LongModeGuest::kCode + 14);
}

TEST(BtCpu, DivideByZeroIsPreciseGuestException) {
  LongModeGuest g;
  // mov eax, 1; xor ecx, ecx; mov ebx, 9; div ecx; hlt
  g.Load({0xB8, 1, 0, 0, 0, 0x31, 0xC9, 0xBB, 9, 0, 0, 0, 0xF7, 0xF1, 0xF4});
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kException);
  EXPECT_EQ(e.exception.vector, kDe);
  EXPECT_EQ(g.state.rip, LongModeGuest::kCode + 12);
  EXPECT_EQ(g.state.gpr[kRbx], 9u);
}

TEST(BtCpu, PageFaultOnUnmappedAccess) {
  LongModeGuest g;
  // mov rax, [0x40000000] (beyond the 1 GiB identity map); hlt
  g.Load({0x48, 0x8B, 0x04, 0x25, 0x00, 0x00, 0x00, 0x40, 0xF4});
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kException);
  EXPECT_EQ(e.exception.vector, kPf);
  EXPECT_EQ(e.exception.cr2, 0x40000000u);
  EXPECT_EQ(e.exception.error_code, 0u);  // not present, read, supervisor
  EXPECT_EQ(g.state.rip, LongModeGuest::kCode);
}

TEST(BtCpu, SelfModifyingCodeSeesNewBytes) {
  LongModeGuest g;
  // L: mov eax, imm32 (at code+0); inc ebx; cmp ebx, 2; je done;
  //    mov dword [code+1], 99; jmp L; done: hlt
  std::vector<uint8_t> code = {0xB8, 1,    0,    0,    0,  // mov eax, 1
                               0xFF, 0xC3,                 // inc ebx
                               0x83, 0xFB, 0x02,           // cmp ebx, 2
                               0x74, 0x0D,                 // je +13
                               0xC7, 0x04, 0x25, 0x01, 0x00, 0x10, 0x00,
                               99,   0,    0,    0,    0xEB, 0xE7,  // jmp L (-25)
                               0xF4};
  g.Load(code);
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(g.state.gpr[kRbx], 2u);
  EXPECT_EQ(g.state.gpr[kRax], 99u);
}

}  // namespace
}  // namespace rove
