// Translator-level tests: run small 64-bit guest programs on BtCpu directly and check state.
#include "rove/translator/bt_cpu.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "long_mode_guest.h"
#include "rove/mmu/guest_memory.h"
#include "rove/translator/cpu_state.h"

namespace rove {
namespace {

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

// A direct JMP whose target is not canonical goes to the emulator (which raises #GP at the
// JMP, before anything changes); it must not leave with RIP = the target.
TEST(BtCpu, DirectJumpToNonCanonicalTargetIsEmulated) {
  LongModeGuest g;
  // Map linear 0x7FFFFFFFF000 (the last canonical lower-half page) to physical 0x300000.
  g.mem->WriteU64(0x1000 + 8 * 255, 0x4000 | 0x7);
  g.mem->WriteU64(0x4000 + 8 * 511, 0x5000 | 0x7);
  g.mem->WriteU64(0x5000 + 8 * 511, 0x6000 | 0x7);
  g.mem->WriteU64(0x6000 + 8 * 511, 0x300000 | 0x7);
  const uint8_t code[] = {0xE9, 0x00, 0x01, 0x00, 0x00};  // jmp +0x100: 0x800000000005
  g.mem->Write(0x300F00, code, sizeof(code));
  g.state.rip = 0x7FFFFFFFFF00;
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(g.state.rip, 0x7FFFFFFFFF00u);
  EXPECT_EQ(g.state.gpr[kRsp], LongModeGuest::kStackTop);
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

// ---- scratch registers, soft-TLB check variants, precise state, exit requests ----

TEST(BtCpu, ScratchRegistersUnderPressure) {
  LongModeGuest g;
  // Every GPR live; accesses indexed by RCX, relative to RSP, with high-byte registers (the
  // scratch registers must then be encodable without REX), and a PUSH/POP pair.
  g.Load({
      0xB8, 0x11, 0x11, 0x00, 0x00,        // mov rax, 0x1111
      0xBB, 0x22, 0x22, 0x00, 0x00,        // mov rbx, 0x2222
      0xB9, 0x02, 0x00, 0x00, 0x00,        // mov ecx, 2
      0xBA, 0x44, 0x44, 0x00, 0x00,        // mov rdx, 0x4444
      0xBE, 0x55, 0x55, 0x00, 0x00,        // mov rsi, 0x5555
      0xBF, 0x00, 0x00, 0x20, 0x00,        // mov rdi, 0x200000
      0xBD, 0x77, 0x77, 0x00, 0x00,        // mov rbp, 0x7777
      0x41, 0xB8, 0x88, 0x88, 0x00, 0x00,  // mov r8, 0x8888
      0x41, 0xB9, 0x99, 0x99, 0x00, 0x00,  // mov r9, 0x9999
      0x41, 0xBA, 0xAA, 0xAA, 0x00, 0x00,  // mov r10, 0xAAAA
      0x41, 0xBB, 0xBB, 0xBB, 0x00, 0x00,  // mov r11, 0xBBBB
      0x41, 0xBC, 0xCC, 0xCC, 0x00, 0x00,  // mov r12, 0xCCCC
      0x41, 0xBD, 0xDD, 0xDD, 0x00, 0x00,  // mov r13, 0xDDDD
      0x41, 0xBE, 0xEE, 0xEE, 0x00, 0x00,  // mov r14, 0xEEEE
      0x41, 0xBF, 0xFF, 0xFF, 0x00, 0x00,  // mov r15, 0xFFFF
      0x48, 0x89, 0x1C, 0xCF,              // mov [rdi + rcx*8], rbx          ; store indexed by rcx
      0x48, 0x03, 0x04, 0xCF,              // add rax, [rdi + rcx*8]          ; rax = 0x3333
      0x48, 0x89, 0x54, 0x24, 0xF0,        // mov [rsp - 16], rdx             ; rsp-relative store
      0x48, 0x03, 0x54, 0x24, 0xF0,        // add rdx, [rsp - 16]             ; rdx = 0x8888
      0xC6, 0x47, 0x01, 0x5A,              // mov byte [rdi + 1], 0x5A
      0x8A, 0x67, 0x01,  // mov ah, [rdi + 1]               ; high byte load: rax = 0x5A33
      0x8A, 0x6F, 0x01,  // mov ch, [rdi + 1]               ; rcx = 0x5A02
      0x00, 0x7F, 0x20,  // add [rdi + 8*4], bh             ; [rdi+32] = 0x22
      0x44, 0x0F, 0xB6, 0x7F, 0x20,  // movzx r15d, byte [rdi + 8*4]    ; r15 = 0x22
      0x56,                          // push rsi
      0x41, 0x5E,                    // pop r14                         ; r14 = 0x5555
      0xF4,                          // hlt
  });
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(g.state.gpr[kRax], 0x5A33u);
  EXPECT_EQ(g.state.gpr[kRbx], 0x2222u);
  EXPECT_EQ(g.state.gpr[kRcx], 0x5A02u);
  EXPECT_EQ(g.state.gpr[kRdx], 0x8888u);
  EXPECT_EQ(g.state.gpr[kRsi], 0x5555u);
  EXPECT_EQ(g.state.gpr[kRdi], 0x200000u);
  EXPECT_EQ(g.state.gpr[kRbp], 0x7777u);
  EXPECT_EQ(g.state.gpr[kRsp], LongModeGuest::kStackTop);
  EXPECT_EQ(g.state.gpr[kR8], 0x8888u);
  EXPECT_EQ(g.state.gpr[kR9], 0x9999u);
  EXPECT_EQ(g.state.gpr[kR10], 0xAAAAu);
  EXPECT_EQ(g.state.gpr[kR11], 0xBBBBu);
  EXPECT_EQ(g.state.gpr[kR12], 0xCCCCu);
  EXPECT_EQ(g.state.gpr[kR13], 0xDDDDu);
  EXPECT_EQ(g.state.gpr[kR14], 0x5555u);
  EXPECT_EQ(g.state.gpr[kR15], 0x22u);
  EXPECT_EQ(g.mem->ReadU64(0x200010), 0x2222u);
  EXPECT_EQ(g.mem->ReadU64(LongModeGuest::kStackTop - 16), 0x4444u);
  EXPECT_EQ(g.mem->ReadU64(LongModeGuest::kStackTop - 8), 0x5555u);
}

TEST(BtCpu, FlagsLiveAndDeadChecksAgree) {
  LongModeGuest g;
  g.Load({
      0xBF, 0x00, 0x00, 0x20, 0x00,              // mov rdi, 0x200000
      0x48, 0xC7, 0x07, 0x29, 0x00, 0x00, 0x00,  // mov qword [rdi], 41
      0xF9,                                      // stc
      0x48, 0x8B, 0x07,        // mov rax, [rdi]      ; flags live (adc reads CF): flag-free check
      0x48, 0x83, 0xD0, 0x00,  // adc rax, 0
      0xF9,                    // stc
      0x48, 0x8B, 0x1F,  // mov rbx, [rdi]      ; flags dead (add rewrites them): flag-clobbering
                         // check
      0x48, 0x83, 0xC3, 0x01,  // add rbx, 1
      0xF9,                    // stc
      0x48, 0x8B, 0x0F,        // mov rcx, [rdi]      ; the instruction uses RCX, flags live
      0x48, 0x83, 0xD1, 0x00,  // adc rcx, 0
      0xF9,                    // stc
      0x48, 0x8B, 0x17,        // mov rdx, [rdi]      ; flags live at the block end: CF must survive
      0xF4,                    // hlt
  });
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(g.state.gpr[kRax], 42u);  // flag-free check, CF kept for ADC
  EXPECT_EQ(g.state.gpr[kRbx], 42u);  // flag-clobbering check
  EXPECT_EQ(g.state.gpr[kRcx], 42u);  // flag-free check around an instruction using RCX
  EXPECT_EQ(g.state.gpr[kRdx], 41u);
  EXPECT_NE(g.state.rflags & rflags::kCf, 0u);  // live at the block end: kept
}

TEST(BtCpu, PageFaultKeepsDeadScratchRegisterAndFlags) {
  LongModeGuest g;
  g.Load({
      0xBF, 0x00, 0x00, 0x20, 0x00,  // mov rdi, 0x200000
      0x48, 0x8B, 0x07,              // mov rax, [rdi]            ; fills the soft TLB for the page
      0xBB, 0x34, 0x12, 0x00, 0x00,  // mov rbx, 0x1234
      0x41, 0xB9, 0x78, 0x56, 0x00, 0x00,  // mov r9, 0x5678
      0xF9,                                // stc
      0x48, 0x8B, 0x1C, 0x25, 0x00, 0x00, 0x00,
      0x40,  // mov rbx, [0x40000000]     ; #PF on the slow path: rbx is dead (scratch), flags
             // are dead
      0x45, 0x31, 0xC9,  // xor r9d, r9d
      0xF4,              // hlt
  });
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kException);
  EXPECT_EQ(e.exception.vector, kPf);
  EXPECT_EQ(g.state.rip, LongModeGuest::kCode + 0x14);
  EXPECT_EQ(g.state.gpr[kRbx], 0x1234u);  // the destination was used as scratch
  EXPECT_EQ(g.state.gpr[kR9], 0x5678u);
  EXPECT_NE(g.state.rflags & rflags::kCf, 0u);  // clobbered by the check, restored
}

TEST(BtCpu, HostFaultOnTlbHitRestoresScratchRegistersAndFlags) {
  LongModeGuest g;
  g.Load({
      0xBF, 0x00, 0x00, 0x20, 0x00,  // mov rdi, 0x200000
      0x48, 0x8B, 0x17,              // mov rdx, [rdi]            ; fills the soft TLB for the page
      0xB8, 0x11, 0x11, 0x00, 0x00,  // mov rax, 0x1111
      0x41, 0xB9, 0x78, 0x56, 0x00, 0x00,  // mov r9, 0x5678
      0xF9,                                // stc
      0x0F, 0x28, 0x47, 0x08,  // movaps xmm0, [rdi + 8]    ; #GP on the TLB-hit path (misaligned):
                               // rax, r9 dead, flags dead
      0x41, 0xB9, 0x01, 0x00, 0x00, 0x00,  // mov r9d, 1
      0x31, 0xC0,                          // xor eax, eax
      0xF4,                                // hlt
  });
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kException);
  EXPECT_EQ(e.exception.vector, kGp);
  EXPECT_EQ(g.state.rip, LongModeGuest::kCode + 0x14);
  EXPECT_EQ(g.state.gpr[kRax], 0x1111u);
  EXPECT_EQ(g.state.gpr[kR9], 0x5678u);
  EXPECT_NE(g.state.rflags & rflags::kCf, 0u);
}

class CountingMmio : public MmioHandler {
 public:
  uint64_t MmioRead(uint64_t gpa, unsigned width) override {
    ++reads;
    last_read_gpa = gpa;
    last_read_width = width;
    return 0x1000 + reads;
  }
  void MmioWrite(uint64_t gpa, unsigned width, uint64_t value) override {
    ++writes;
    last_write_gpa = gpa;
    last_write_width = width;
    last_write_value = value;
  }
  int reads = 0, writes = 0;
  uint64_t last_read_gpa = 0, last_write_gpa = 0, last_write_value = 0;
  unsigned last_read_width = 0, last_write_width = 0;
};

TEST(BtCpu, PageCrossingAndMmioAccessesTakeTheSlowPath) {
  LongModeGuest g;
  CountingMmio mmio;
  g.mem->SetMmioHandler(&mmio);
  g.mem->WriteU64(0x200FFC, 0x1122334455667788ull);
  g.Load({
      0xBF, 0xFC, 0x0F, 0x20, 0x00,  // mov rdi, 0x200FFC
      0x48, 0x8B, 0x07,  // mov rax, [rdi]            ; crosses a 4 KiB page boundary (flag-free
                         // check)
      0xBE, 0x00, 0x00, 0x00, 0x08,  // mov rsi, 0x8000000        ; beyond RAM: MMIO
      0x8B, 0x1E,        // mov ebx, [rsi]            ; flags dead: flag-clobbering check
      0x83, 0xC3, 0x01,  // add ebx, 1
      0x89, 0x5E, 0x04,  // mov [rsi + 4], ebx
      0x48, 0x03, 0x07,  // add rax, [rdi]            ; page-crossing again, flags dead
      0x8B, 0x0E,        // mov ecx, [rsi]            ; flags live at the end: flag-free check
      0xF4,              // hlt
  });
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(g.state.gpr[kRax], 2 * 0x1122334455667788ull);
  EXPECT_EQ(mmio.reads, 2);  // never cached in the soft TLB
  EXPECT_EQ(mmio.writes, 1);
  EXPECT_EQ(mmio.last_write_gpa, 0x8000004u);
  EXPECT_EQ(mmio.last_write_value, 0x1002u);
  EXPECT_EQ(g.state.gpr[kRbx], 0x1002u);
  EXPECT_EQ(g.state.gpr[kRcx], 0x1002u);
  // Again, now that everything is translated and the RAM pages are in the soft TLB.
  g.state.rip = LongModeGuest::kCode;
  e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(mmio.reads, 4);
  EXPECT_EQ(mmio.writes, 2);
  EXPECT_EQ(g.state.gpr[kRax], 2 * 0x1122334455667788ull);
}

// A chained loop running on another thread stops within a bounded time after RequestExit.
void ExpectRequestExitStops(const std::vector<uint8_t>& code) {
  LongModeGuest g;
  g.Load(code);
  g.mem->WriteU64(LongModeGuest::kData, 1);
  EXPECT_EQ(RunThenRequestExit(g).reason, ExitReason::kRequest);
  EXPECT_NE(g.state.gpr[kRax] + g.state.gpr[kRcx], 0u);  // it did run
}

TEST(BtCpu, RequestExitStopsSelfLoop) {
  ExpectRequestExitStops({
      0x48, 0xFF, 0xC0,  // L: inc rax
      0xEB, 0xFB,        // jmp L
  });
}

TEST(BtCpu, RequestExitStopsLoopWithFlagClobberingAccess) {
  ExpectRequestExitStops({
      0xBF, 0x00, 0x00, 0x20, 0x00,  // mov rdi, 0x200000
      0x48, 0x03, 0x07,              // L: add rax, [rdi]
      0xEB, 0xFB,                    // jmp L
  });
}

TEST(BtCpu, RequestExitStopsForwardAndBackwardChainedLoop) {
  ExpectRequestExitStops({
      0x48, 0xFF, 0xC0,  // L: inc rax
      0xEB, 0x00,        // jmp M
      0x48, 0xFF, 0xC3,  // M: inc rbx
      0xEB, 0xF6,        // jmp L
  });
}

TEST(BtCpu, RequestExitStopsCountedLoop) {
  ExpectRequestExitStops({
      0xB9, 0xFF, 0xFF, 0xFF, 0x7F,  // mov ecx, 0x7fffffff
      0x48, 0xFF, 0xC9,              // L: dec rcx
      0x75, 0xFB,                    // jnz L
      0xF4,                          // hlt
  });
}

// ---- CLI/STI/PUSHF/LEAVE inline (TransMode::sys_inline: not v86, CPL <= IOPL) ----

constexpr uint64_t kPushedFlagsZfPfCf = rflags::kZf | rflags::kPf | rflags::kCf;

// xor eax, eax (ZF PF); stc (CF); cli; pushfq; pop rax; sti; pushfq; pop rbx; hlt
const std::vector<uint8_t> kCliPushfStiPushf = {
    0x31, 0xC0,  // xor eax, eax
    0xF9,        // stc
    0xFA,        // cli
    0x9C,        // pushfq
    0x58,        // pop rax
    0xFB,        // sti
    0x9C,        // pushfq
    0x5B,        // pop rbx
    0xF4,        // hlt
};

TEST(BtCpu, CliStiPushfRunInlineAtCpl0) {
  LongModeGuest g;
  g.state.rflags = rflags::kFixed1 | rflags::kIf | rflags::kAc | rflags::kId | rflags::kRf;
  g.Load(kCliPushfStiPushf);
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(g.state.rip, LongModeGuest::kCode + 9) << "left translated code before HLT";
  // The pushed images: arithmetic flags from the host, IF as set by CLI/STI, AC and ID kept,
  // RF cleared in the image.
  const uint64_t sys = rflags::kFixed1 | rflags::kAc | rflags::kId;
  EXPECT_EQ(g.state.gpr[kRax], sys | kPushedFlagsZfPfCf);
  EXPECT_EQ(g.state.gpr[kRbx], sys | rflags::kIf | kPushedFlagsZfPfCf);
  EXPECT_TRUE(g.state.rflags & rflags::kIf);
  EXPECT_EQ(g.state.gpr[kRsp], LongModeGuest::kStackTop);
  EXPECT_FALSE(g.state.interrupt_shadow);
}

TEST(BtCpu, CliLeavesIfClearInCpuState) {
  LongModeGuest g;
  g.state.rflags = rflags::kFixed1 | rflags::kIf;
  g.Load({0xFA, 0xF4});  // cli; hlt
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(g.state.rip, LongModeGuest::kCode + 1);
  EXPECT_FALSE(g.state.rflags & rflags::kIf);
}

TEST(BtCpu, CliStiPushfInlineAtCpl3WithIopl3KeepIoplAndNt) {
  LongModeGuest g;
  g.state.seg[kCs].attr |= 3u << 5;  // DPL 3: CPL 3
  g.state.seg[kCs].selector = 0x1B;
  g.state.seg[kSs].attr |= 3u << 5;
  g.state.seg[kSs].selector = 0x23;
  g.state.rflags = rflags::kFixed1 | (3ull << rflags::kIoplShift) | rflags::kNt;
  g.Load(kCliPushfStiPushf);
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(g.state.rip, LongModeGuest::kCode + 9);
  const uint64_t sys = rflags::kFixed1 | (3ull << rflags::kIoplShift) | rflags::kNt;
  EXPECT_EQ(g.state.gpr[kRax], sys | kPushedFlagsZfPfCf);
  EXPECT_EQ(g.state.gpr[kRbx], sys | rflags::kIf | kPushedFlagsZfPfCf);
  EXPECT_EQ(g.state.rflags & (rflags::kIoplMask | rflags::kNt | rflags::kIf),
            (3ull << rflags::kIoplShift) | rflags::kNt | rflags::kIf);
}

TEST(BtCpu, CliAtCpl3AboveIoplGoesToTheEmulator) {
  for (const uint8_t insn : {uint8_t{0xFA}, uint8_t{0xFB}, uint8_t{0x9C}}) {  // cli, sti, pushfq
    LongModeGuest g;
    g.state.seg[kCs].attr |= 3u << 5;
    g.state.seg[kCs].selector = 0x1B;
    g.state.rflags = rflags::kFixed1 | rflags::kIf | (2ull << rflags::kIoplShift);
    g.Load({0x90, insn, 0xF4});  // nop; insn; hlt
    Exit e = g.RunToEmulate();
    ASSERT_EQ(e.reason, ExitReason::kEmulate);
    EXPECT_EQ(g.state.rip, LongModeGuest::kCode + 1) << "insn " << int{insn};
    EXPECT_TRUE(g.state.rflags & rflags::kIf);
  }
}

TEST(BtCpu, StiWithPendingInterruptLeavesWithShadow) {
  LongModeGuest g;
  g.state.rflags = rflags::kFixed1;
  g.Load({0x90, 0xFB, 0x48, 0xFF, 0xC0, 0xF4});  // nop; sti; inc rax; hlt
  g.cpu->SetInterruptPending(true);
  Exit e = g.cpu->Run();
  ASSERT_EQ(e.reason, ExitReason::kRequest);
  EXPECT_EQ(g.state.rip, LongModeGuest::kCode + 2) << "must stop right after STI";
  EXPECT_TRUE(g.state.rflags & rflags::kIf);
  EXPECT_TRUE(g.state.interrupt_shadow);
  EXPECT_EQ(g.state.gpr[kRax], 0u);
}

TEST(BtCpu, StiWithoutPendingInterruptRunsOn) {
  LongModeGuest g;
  g.state.rflags = rflags::kFixed1;
  g.Load({0x90, 0xFB, 0x48, 0xFF, 0xC0, 0xF4});  // nop; sti; inc rax; hlt
  g.cpu->SetInterruptPending(false);
  Exit e = g.cpu->Run();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(g.state.rip, LongModeGuest::kCode + 5);
  EXPECT_TRUE(g.state.rflags & rflags::kIf);
  EXPECT_FALSE(g.state.interrupt_shadow);
  EXPECT_EQ(g.state.gpr[kRax], 1u);
}

TEST(BtCpu, StiEndingABlockGoesToTheEmulator) {
  // STI as the last byte of a page ends its block: it must not run inline, or an interrupt
  // could be taken at the next block's entry, inside the STI shadow.
  LongModeGuest g;
  g.state.rflags = rflags::kFixed1;
  const uint64_t sti_at = LongModeGuest::kCode + 0xFFF;
  g.mem->Write(sti_at, std::vector<uint8_t>{0xFB, 0xF4}.data(), 2);
  g.state.rip = sti_at - 1;
  g.mem->Write(sti_at - 1, std::vector<uint8_t>{0x90}.data(), 1);
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(g.state.rip, sti_at);
  EXPECT_FALSE(g.state.rflags & rflags::kIf);
}

TEST(BtCpu, PushfInlineWith16And32BitOperands) {
  LongModeGuest g;
  g.state.rflags = rflags::kFixed1 | rflags::kIf | rflags::kAc;
  // xor eax, eax; stc; pushf (16-bit); pop cx; hlt
  g.Load({0x31, 0xC0, 0xF9, 0x66, 0x9C, 0x66, 0x59, 0xF4});
  g.state.gpr[kRcx] = 0xFFFFFFFFFFFF0000ull;
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(g.state.rip, LongModeGuest::kCode + 7);
  EXPECT_EQ(g.state.gpr[kRcx],
            0xFFFFFFFFFFFF0000ull | rflags::kFixed1 | rflags::kIf | kPushedFlagsZfPfCf);
  EXPECT_EQ(g.state.gpr[kRsp], LongModeGuest::kStackTop);
}

TEST(BtCpu, PushfPageFaultIsPrecise) {
  LongModeGuest g;
  g.state.rflags = rflags::kFixed1 | rflags::kIf;
  g.state.gpr[kRsp] = 0x40000008;  // the push goes to 0x40000000, beyond the identity map
  g.Load({0x31, 0xC0, 0xF9, 0xFA, 0x9C, 0xF4});  // xor eax, eax; stc; cli; pushfq; hlt
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kException);
  EXPECT_EQ(e.exception.vector, kPf);
  EXPECT_EQ(e.exception.cr2, 0x40000000u);
  EXPECT_EQ(g.state.rip, LongModeGuest::kCode + 4);
  EXPECT_EQ(g.state.gpr[kRsp], 0x40000008u);
  EXPECT_FALSE(g.state.rflags & rflags::kIf);
  EXPECT_EQ(g.state.rflags & rflags::kHostLive, kPushedFlagsZfPfCf);
}

TEST(BtCpu, LeaveInline) {
  LongModeGuest g;
  g.state.gpr[kRbp] = 0x1234;
  g.Load({
      0x55,                                            // push rbp
      0x48, 0x89, 0xE5,                                // mov rbp, rsp
      0x48, 0x83, 0xEC, 0x20,                          // sub rsp, 32
      0x48, 0xC7, 0x45, 0xF8, 0x07, 0x00, 0x00, 0x00,  // mov qword [rbp-8], 7
      0xC9,                                            // leave
      0xF4,                                            // hlt
  });
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(g.state.rip, LongModeGuest::kCode + 17);
  EXPECT_EQ(g.state.gpr[kRsp], LongModeGuest::kStackTop);
  EXPECT_EQ(g.state.gpr[kRbp], 0x1234u);
  EXPECT_EQ(g.mem->ReadU64(LongModeGuest::kStackTop - 16), 7u);
}

TEST(BtCpu, LeavePageFaultIsPrecise) {
  LongModeGuest g;
  g.state.gpr[kRbp] = 0x40000010;
  g.Load({0x31, 0xC0, 0xC9, 0xF4});  // xor eax, eax; leave; hlt
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kException);
  EXPECT_EQ(e.exception.vector, kPf);
  EXPECT_EQ(e.exception.cr2, 0x40000010u);
  EXPECT_EQ(g.state.rip, LongModeGuest::kCode + 2);
  EXPECT_EQ(g.state.gpr[kRbp], 0x40000010u);
  EXPECT_EQ(g.state.gpr[kRsp], LongModeGuest::kStackTop);
}

// SMAP: kernel code with RFLAGS.AC set may touch user pages, without it not. Blocks are
// translated per view, and an indirect branch must not reach a block translated for the other
// AC setting through the jump cache.
TEST(BtCpu, IndirectBranchDoesNotCrossSmapAcViews) {
  LongModeGuest g;
  g.state.cr4 |= cr4::kSmap;  // every page of this guest is a user page
  const uint64_t target = LongModeGuest::kCode + 0x100;
  g.Load({0xFF, 0xE3});  // jmp rbx
  // target: mov rax, [kData]; hlt
  const std::vector<uint8_t> t = {0x48, 0x8B, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00, 0xF4};
  g.mem->Write(target, t.data(), t.size());
  g.mem->WriteU64(LongModeGuest::kData, 0x1234);
  g.state.gpr[kRbx] = target;

  g.state.rflags |= rflags::kAc;  // as after STAC: the load is allowed
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(g.state.rip, target + 8);
  EXPECT_EQ(g.state.gpr[kRax], 0x1234u);

  g.state.rflags &= ~rflags::kAc;  // as after CLAC: the same load is a SMAP violation
  g.state.rip = LongModeGuest::kCode;
  g.state.gpr[kRax] = 0;
  e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kException);
  EXPECT_EQ(e.exception.vector, kPf);
  EXPECT_EQ(e.exception.cr2, LongModeGuest::kData);
  EXPECT_EQ(e.exception.error_code, 1u);  // present, read, supervisor
  EXPECT_EQ(g.state.rip, target);
  EXPECT_EQ(g.state.gpr[kRax], 0u);
}

// PUSH m64 runs inline: [reg+disp], [rsp+disp] (with the old RSP), GS-relative, RIP-relative.
// SWAPGS in 64-bit code at CPL 0 runs inline: GS-relative accesses after it see the other
// base, and both bases are back in CpuState when Run returns.
TEST(BtCpu, SwapgsRunsInlineAtCpl0) {
  LongModeGuest g;
  g.state.seg[kGs].base = LongModeGuest::kData;
  g.state.msr.kernel_gs_base = LongModeGuest::kData + 0x100;
  g.mem->WriteU64(LongModeGuest::kData + 8, 0x1111);
  g.mem->WriteU64(LongModeGuest::kData + 0x108, 0x2222);
  g.Load({
      0x65, 0x48, 0x8B, 0x04, 0x25, 8, 0, 0, 0,  // mov rax, gs:[8]
      0x0F, 0x01, 0xF8,                          // swapgs
      0x65, 0x48, 0x8B, 0x1C, 0x25, 8, 0, 0, 0,  // mov rbx, gs:[8]
      0x0F, 0x01, 0xF8,                          // swapgs
      0x0F, 0x01, 0xF8,                          // swapgs
      0x65, 0x48, 0x8B, 0x0C, 0x25, 8, 0, 0, 0,  // mov rcx, gs:[8]
      0xF4,                                      // hlt
  });
  Exit e = g.cpu->Run();  // one run: an emulated SWAPGS would have returned before the HLT
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(g.state.rip, LongModeGuest::kCode + 36);
  EXPECT_EQ(g.state.gpr[kRax], 0x1111u);
  EXPECT_EQ(g.state.gpr[kRbx], 0x2222u);
  EXPECT_EQ(g.state.gpr[kRcx], 0x2222u);
  EXPECT_EQ(g.state.seg[kGs].base, LongModeGuest::kData + 0x100);
  EXPECT_EQ(g.state.msr.kernel_gs_base, LongModeGuest::kData);
}

// BtOptions::perf_map_path: one "host size guest:<rip>" line per translated block.
TEST(BtCpu, PerfMapNamesBlocksByGuestRip) {
  const std::string path =
      ::testing::TempDir() + "rove-perf-map-" + std::to_string(getpid()) + ".map";
  std::remove(path.c_str());
  {
    BtOptions options;
    options.perf_map_path = path;
    LongModeGuest g(options);
    g.Load({0x48, 0xFF, 0xC0, 0xF4});  // inc rax; hlt
    ASSERT_EQ(g.RunToEmulate().reason, ExitReason::kEmulate);
  }
  std::ifstream in(path);
  std::string host, size, name;
  in >> host >> size >> name;
  std::remove(path.c_str());
  EXPECT_EQ(name, "guest:100000");
  EXPECT_GT(std::stoull(host, nullptr, 16), 0u);
  EXPECT_GT(std::stoull(size, nullptr, 16), 0u);
}

TEST(BtCpu, PushMemoryInline) {
  LongModeGuest g;
  constexpr uint64_t kData = LongModeGuest::kData;
  constexpr uint64_t kTop = LongModeGuest::kStackTop;
  g.state.gpr[kRdi] = kData;
  g.state.seg[kGs].base = kData + 0x100;
  g.mem->WriteU64(kData, 0x4444);
  g.mem->WriteU64(kData + 8, 0x1111);
  g.mem->WriteU64(kData + 0x110, 0x3333);
  g.mem->WriteU64(kTop, 0x2222);
  const uint32_t rel = static_cast<uint32_t>(kData - (LongModeGuest::kCode + 21));
  std::vector<uint8_t> code = {
      0xFF, 0x77, 0x08,                                // push qword [rdi+8]
      0xFF, 0x74, 0x24, 0x08,                          // push qword [rsp+8]
      0x65, 0xFF, 0x34, 0x25, 0x10, 0x00, 0x00, 0x00,  // push qword gs:[0x10]
      0xFF, 0x35,                                      // push qword [rip+rel]
  };
  for (int b = 0; b < 4; ++b) code.push_back(static_cast<uint8_t>(rel >> (8 * b)));
  code.push_back(0xF4);  // hlt
  g.Load(code);
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(g.state.rip, LongModeGuest::kCode + 21) << "a push left translated code";
  EXPECT_EQ(g.state.gpr[kRsp], kTop - 32);
  EXPECT_EQ(g.mem->ReadU64(kTop - 8), 0x1111u);
  EXPECT_EQ(g.mem->ReadU64(kTop - 16), 0x2222u);
  EXPECT_EQ(g.mem->ReadU64(kTop - 24), 0x3333u);
  EXPECT_EQ(g.mem->ReadU64(kTop - 32), 0x4444u);
}

// A fault of the source read or of the stack write leaves RSP, the flags and memory as before
// the PUSH, with the read or write error code; with and without flags dead after the PUSH.
TEST(BtCpu, PushMemoryFaultsArePrecise) {
  for (const bool flags_dead : {false, true}) {
    for (const bool stack_fault : {false, true}) {
      SCOPED_TRACE(testing::Message() << "flags_dead " << flags_dead << " stack " << stack_fault);
      LongModeGuest g;
      const uint64_t rsp = stack_fault ? 0x40000008 : LongModeGuest::kStackTop;
      g.state.gpr[kRsp] = rsp;
      g.state.gpr[kRdi] = stack_fault ? LongModeGuest::kData : 0x40000000;
      g.mem->WriteU64(LongModeGuest::kStackTop - 8, 0x5555);
      std::vector<uint8_t> code = {0x31, 0xC0, 0xF9, 0xFF, 0x37};  // xor eax, eax; stc; push [rdi]
      if (flags_dead) code.insert(code.end(), {0x31, 0xDB});       // xor ebx, ebx
      code.push_back(0xF4);                                        // hlt
      g.Load(code);
      Exit e = g.RunToEmulate();
      ASSERT_EQ(e.reason, ExitReason::kException);
      EXPECT_EQ(e.exception.vector, kPf);
      EXPECT_EQ(e.exception.cr2, 0x40000000u);
      EXPECT_EQ(e.exception.error_code, stack_fault ? 2u : 0u);
      EXPECT_EQ(g.state.rip, LongModeGuest::kCode + 3);
      EXPECT_EQ(g.state.gpr[kRsp], rsp);
      EXPECT_EQ(g.state.rflags & rflags::kHostLive, kPushedFlagsZfPfCf);
      EXPECT_EQ(g.mem->ReadU64(LongModeGuest::kStackTop - 8), 0x5555u);
    }
  }
}

// A translation of 16/32-bit code depends on the CS limit (a branch that may leave it, an
// instruction reaching past it, go to the emulator), so a block translated under one limit
// must not run under another: here a real-mode jump that was inside a 64 KiB limit leaves a
// smaller one (unreal-mode style cached limit) and must fault, i.e. exit to the emulator at the
// jump, not land at its target.
TEST(BtCpu, BlocksDoNotOutliveACsLimitChange) {
  auto mem = GuestMemory::Create(1 << 20);
  CpuState state;
  ResetCpuState(state);
  state.seg[kCs].base = 0;
  state.seg[kCs].selector = 0;
  state.rip = 0x1000;
  const uint8_t code[] = {0xE9, 0xFD, 0x00};  // jmp near 0x1100 (from 0x1003: +0xFD)
  mem->Write(0x1000, code, sizeof code);
  const uint8_t hlt = 0xF4;
  mem->Write(0x1100, &hlt, 1);
  BtCpu cpu(*mem, state);
  Exit e = cpu.Run();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  ASSERT_EQ(state.rip, 0x1100u);
  state.rip = 0x1000;
  state.seg[kCs].limit = 0x10FF;
  e = cpu.Run();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
  EXPECT_EQ(state.rip, 0x1000u) << "the jump past the CS limit ran from a stale translation";
}

}  // namespace
}  // namespace rove
