// Exception and interrupt delivery in real, protected and long mode: handler, frame, error
// code, stack switch (TSS, IST), #DF and triple fault; IRET back.
#include "emulator_test_env.h"

namespace rove::test {
namespace {

using DeliveryTest = EmulatorTest;

TEST_F(DeliveryTest, LongModeGpFromUserSwitchesToRsp0WithFullFrame) {
  SetupLong64();
  EnterUser64();
  uint64_t flags_before = s.rflags;
  EmulationResult r = Run({0x0F, 0x32});  // RDMSR at CPL 3
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(s.rip, HandlerFor(kGp));
  EXPECT_EQ(s.seg[kCs].selector, kKCode64);
  EXPECT_EQ(s.cpl(), 0);
  EXPECT_EQ(s.seg[kSs].selector, 0);  // null SS with RPL 0 after a privilege change
  uint64_t sp = kKernelStack - 48;
  EXPECT_EQ(s.gpr[kRsp], sp);
  EXPECT_EQ(Get64(sp + 0), 0u);                           // error code
  EXPECT_EQ(Get64(sp + 8), kCode);                        // faulting RIP
  EXPECT_EQ(Get64(sp + 16), kUCode64);                    // CS
  EXPECT_EQ(Get64(sp + 24), flags_before | rflags::kRf);  // faults push RF = 1
  EXPECT_EQ(Get64(sp + 32), kUserStack);                  // RSP
  EXPECT_EQ(Get64(sp + 40), kUData);                      // SS
  EXPECT_EQ(s.rflags & rflags::kIf, 0u);                  // interrupt gate
}

TEST_F(DeliveryTest, LongModeIstStackIsUsedAndAligned) {
  SetupLong64();
  SetGate64(kGp, sys_type::kIntGate, 0, 1);
  Put64(kTss + 36, kIstStack + 8);  // misaligned IST: aligned down to 16
  s.gpr[kRsp] = 0x1F0008;
  ASSERT_TRUE(Run({0x0F, 0x32}).ok());  // unknown MSR (RCX = 0) at CPL 0
  EXPECT_EQ(s.rip, HandlerFor(kGp));
  EXPECT_EQ(s.gpr[kRsp], kIstStack - 48);
  EXPECT_EQ(Get64(kIstStack - 16), 0x1F0008u);  // old RSP
  EXPECT_EQ(Get64(kIstStack - 8), kKData);      // old SS
}

TEST_F(DeliveryTest, LongModeSamePrivilegeAlignsCurrentStack) {
  SetupLong64();
  s.gpr[kRsp] = 0x1F0008;
  s.gpr[kRcx] = 0xDEAD;  // no such MSR
  ASSERT_TRUE(Run({0x0F, 0x32}).ok());
  EXPECT_EQ(s.gpr[kRsp], 0x1F0000u - 48);
  EXPECT_EQ(s.seg[kSs].selector, kKData);  // no stack switch
}

TEST_F(DeliveryTest, PageFaultSetsCr2AndPushesErrorCode) {
  SetupLong64();
  GuestException e{kPf, true, 0x6, 0x7000123};
  ASSERT_TRUE(emu.DeliverException(e).ok());
  EXPECT_EQ(s.cr2, 0x7000123u);
  EXPECT_EQ(s.rip, HandlerFor(kPf));
  EXPECT_EQ(Get64(s.gpr[kRsp]), 6u);
}

TEST_F(DeliveryTest, NotPresentGateDuringGpBecomesDoubleFault) {
  SetupLong64();
  Put64(kIdt + kGp * 16, Get64(kIdt + kGp * 16) & ~(1ull << 47));  // #GP gate not present
  ASSERT_TRUE(Run({0x0F, 0x32}).ok());  // #GP -> #NP (contributory twice) -> #DF
  EXPECT_EQ(s.rip, HandlerFor(kDf));
  EXPECT_EQ(Get64(s.gpr[kRsp]), 0u);         // #DF error code is 0
  EXPECT_EQ(Get64(s.gpr[kRsp] + 8), kCode);  // RIP of the instruction that faulted first
}

TEST_F(DeliveryTest, PageFaultOnHandlerStackBecomesDoubleFaultOnIst) {
  SetupLong64();
  EnterUser64();
  Put64(kTss + 4, 0x3000000);  // RSP0 in unmapped memory
  SetGate64(kDf, sys_type::kIntGate, 0, 1);
  ASSERT_TRUE(Run({0x0F, 0x32}).ok());  // #GP -> #PF on the RSP0 stack -> #DF
  EXPECT_EQ(s.rip, HandlerFor(kDf));
  EXPECT_EQ(s.gpr[kRsp], kIstStack - 48);
  EXPECT_EQ(s.cr2, 0x3000000u - 8);
}

TEST_F(DeliveryTest, TripleFaultShutsDownWithReport) {
  SetupLong64();
  Put64(kIdt + kGp * 16, 0);
  Put64(kIdt + kDf * 16, 0);
  EmulationResult r = Run({0x0F, 0x32});
  EXPECT_EQ(r.outcome, EmulationOutcome::kShutdown);
  EXPECT_NE(r.message.find("triple fault"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("rip="), std::string::npos) << r.message;
  EXPECT_EQ(s.rip, kCode);  // state left at the faulting instruction
}

TEST_F(DeliveryTest, IdtLimitViolationReportsIdtErrorCode) {
  SetupLong64();
  s.idtr.limit = 16 * 0x21 - 1;  // vectors 0..0x20
  ASSERT_TRUE(emu.DeliverInterrupt(0x30, InterruptKind::kExternal).ok());
  EXPECT_EQ(s.rip, HandlerFor(kGp));
  EXPECT_EQ(Get64(s.gpr[kRsp]), 0x30u * 8 + 2 + 1);  // IDT bit + EXT
}

TEST_F(DeliveryTest, SoftwareIntChecksGateDpl) {
  SetupLong64();
  EnterUser64();
  ASSERT_TRUE(Run({0xCD, 0x80}).ok());  // gate DPL 0 < CPL 3
  EXPECT_EQ(s.rip, HandlerFor(kGp));
  EXPECT_EQ(Get64(s.gpr[kRsp]), 0x80u * 8 + 2);
  EXPECT_EQ(Get64(s.gpr[kRsp] + 8), kCode);  // the INT itself faulted
}

TEST_F(DeliveryTest, Int80FromUserAndIretqBack) {
  SetupLong64();
  SetGate64(0x80, sys_type::kTrapGate, 3, 0);
  EnterUser64();
  s.gpr[kRsp] = kUserStack - 8;
  uint64_t user_flags = s.rflags;
  ASSERT_TRUE(Run({0xCD, 0x80}).ok());
  EXPECT_EQ(s.rip, HandlerFor(0x80));
  EXPECT_EQ(s.cpl(), 0);
  EXPECT_EQ(Get64(s.gpr[kRsp]), kCode + 2);  // return address after INT
  EXPECT_NE(s.rflags & rflags::kIf, 0u);     // trap gate keeps IF
  // IRETQ at the handler returns to CPL 3.
  ASSERT_TRUE(Run({0x48, 0xCF}).ok());
  EXPECT_EQ(s.rip, kCode + 2);
  EXPECT_EQ(s.seg[kCs].selector, kUCode64);
  EXPECT_EQ(s.seg[kSs].selector, kUData);
  EXPECT_EQ(s.cpl(), 3);
  EXPECT_EQ(s.gpr[kRsp], kUserStack - 8);
  EXPECT_EQ(s.rflags, user_flags);
}

TEST_F(DeliveryTest, IretqToUserNullsDataSegmentsAboveCpl) {
  SetupLong64();
  // Frame for a return to CPL 3.
  uint64_t sp = 0x1F0000 - 40;
  Put64(sp, 0x1234);
  Put64(sp + 8, kUCode64);
  Put64(sp + 16, rflags::kFixed1 | rflags::kIf | rflags::kIoplMask);
  Put64(sp + 24, kUserStack);
  Put64(sp + 32, kUData);
  s.gpr[kRsp] = sp;
  s.seg[kFs] = SegFromGdt(kKData);
  ASSERT_TRUE(Run({0x48, 0xCF}).ok());
  EXPECT_EQ(s.rip, 0x1234u);
  EXPECT_EQ(s.cpl(), 3);
  EXPECT_EQ((s.rflags & rflags::kIoplMask) >> 12, 3u);  // CPL 0 may set IOPL
  EXPECT_FALSE(SegIsUsable(s.seg[kFs]));                // DPL 0 data segment dropped
  EXPECT_FALSE(SegIsUsable(s.seg[kDs]));
}

TEST_F(DeliveryTest, IretqFromUserCannotRaiseIoplOrIf) {
  SetupLong64();
  SetGate64(0x80, sys_type::kTrapGate, 3, 0);
  EnterUser64();
  s.rflags &= ~rflags::kIf;
  uint64_t sp = kUserStack - 40;
  Put64(sp, 0x5000);
  Put64(sp + 8, kUCode64);
  Put64(sp + 16, rflags::kFixed1 | rflags::kIf | rflags::kIoplMask | rflags::kCf);
  Put64(sp + 24, kUserStack);
  Put64(sp + 32, kUData);
  s.gpr[kRsp] = sp;
  ASSERT_TRUE(Run({0x48, 0xCF}).ok());
  EXPECT_EQ(s.rip, 0x5000u);
  EXPECT_EQ(s.rflags & (rflags::kIf | rflags::kIoplMask), 0u);
  EXPECT_NE(s.rflags & rflags::kCf, 0u);
}

TEST_F(DeliveryTest, IretqToKernelCodeFromUserIsGp) {
  SetupLong64();
  EnterUser64();
  uint64_t sp = kUserStack - 40;
  Put64(sp, 0x5000);
  Put64(sp + 8, kKCode64);  // RPL 0 < CPL 3
  Put64(sp + 16, rflags::kFixed1);
  Put64(sp + 24, kUserStack);
  Put64(sp + 32, kKData);
  s.gpr[kRsp] = sp;
  ASSERT_TRUE(Run({0x48, 0xCF}).ok());
  EXPECT_EQ(s.rip, HandlerFor(kGp));
  EXPECT_EQ(Get64(s.gpr[kRsp]), kKCode64);
}

TEST_F(DeliveryTest, ExternalInterruptClearsIfAndHalt) {
  SetupLong64();
  s.rflags |= rflags::kIf;
  s.halted = true;
  ASSERT_TRUE(emu.DeliverInterrupt(0x20, InterruptKind::kExternal).ok());
  EXPECT_EQ(s.rip, HandlerFor(0x20));
  EXPECT_FALSE(s.halted);
  EXPECT_EQ(s.rflags & rflags::kIf, 0u);
  EXPECT_EQ(Get64(s.gpr[kRsp] + 16) & rflags::kRf, 0u);  // interrupts do not push RF
}

TEST_F(DeliveryTest, Int3PushesNextRip) {
  SetupLong64();
  ASSERT_TRUE(Run({0xCC}).ok());
  EXPECT_EQ(s.rip, HandlerFor(kBp));
  EXPECT_EQ(Get64(s.gpr[kRsp]), kCode + 1);
}

TEST_F(DeliveryTest, RealModeIntUsesIvtAndIretReturns) {
  SetupReal();
  mem->WriteU32(0x10 * 4, (0x1234u << 16) | 0x5678);
  s.rflags |= rflags::kIf | rflags::kTf;
  ASSERT_TRUE(Run({0xCD, 0x10}).ok());
  EXPECT_EQ(s.seg[kCs].selector, 0x1234);
  EXPECT_EQ(s.seg[kCs].base, 0x12340u);
  EXPECT_EQ(s.rip, 0x5678u);
  EXPECT_EQ(s.gpr[kRsp], 0x7000u - 6);
  EXPECT_EQ(Get16(0x7000 - 6), 0x7C02);  // IP
  EXPECT_EQ(Get16(0x7000 - 4), 0);       // CS
  EXPECT_EQ(Get16(0x7000 - 2) & (rflags::kIf | rflags::kTf), rflags::kIf | rflags::kTf);
  EXPECT_EQ(s.rflags & (rflags::kIf | rflags::kTf), 0u);
  ASSERT_TRUE(Run({0xCF}).ok());  // IRET
  EXPECT_EQ(s.seg[kCs].selector, 0);
  EXPECT_EQ(s.rip, 0x7C02u);
  EXPECT_EQ(s.gpr[kRsp], 0x7000u);
  EXPECT_NE(s.rflags & rflags::kIf, 0u);
}

TEST_F(DeliveryTest, RealModeExceptionBeyondIvtLimitShutsDown) {
  SetupReal();
  s.idtr.limit = 0;  // every vector beyond the limit: #GP -> #DF -> triple fault
  EmulationResult r = Run({0xCD, 0x21});
  EXPECT_EQ(r.outcome, EmulationOutcome::kShutdown);
}

TEST_F(DeliveryTest, Protected32InterruptFromUserUsesTssStack) {
  SetupProtected32();
  SetGate32(0x80, sys_type::kIntGate, 3);
  EnterUser32();
  s.rflags |= rflags::kIf;
  ASSERT_TRUE(Run({0xCD, 0x80}).ok());
  EXPECT_EQ(s.rip, HandlerFor(0x80));
  EXPECT_EQ(s.seg[kCs].selector, kPCode0);
  EXPECT_EQ(s.seg[kSs].selector, kPData0);
  uint64_t sp = kKernelStack - 20;
  EXPECT_EQ(s.gpr[kRsp], sp);
  EXPECT_EQ(Get32(sp), kCode + 2);
  EXPECT_EQ(Get32(sp + 4), kPCode3);
  EXPECT_EQ(Get32(sp + 12), kUserStack);
  EXPECT_EQ(Get32(sp + 16), kPData3);
  EXPECT_EQ(s.rflags & rflags::kIf, 0u);
  ASSERT_TRUE(Run({0xCF}).ok());  // IRETD
  EXPECT_EQ(s.cpl(), 3);
  EXPECT_EQ(s.rip, kCode + 2);
  EXPECT_EQ(s.gpr[kRsp], kUserStack);
  EXPECT_EQ(s.seg[kSs].selector, kPData3);
  EXPECT_NE(s.rflags & rflags::kIf, 0u);  // IOPL 0 but the old CPL 0 may restore IF
}

TEST_F(DeliveryTest, Protected32ErrorCodeAndSamePrivilegeFrame) {
  SetupProtected32();
  ASSERT_TRUE(emu.DeliverException(GuestException{kGp, true, 0x18, 0}).ok());
  uint64_t sp = 0x1F0000 - 16;
  EXPECT_EQ(s.gpr[kRsp], sp);
  EXPECT_EQ(Get32(sp), 0x18u);
  EXPECT_EQ(Get32(sp + 4), kCode);
  EXPECT_EQ(Get32(sp + 8), kPCode0);
}

TEST_F(DeliveryTest, Protected32BadTssStackSelectorIsTs) {
  SetupProtected32();
  EnterUser32();
  mem->WriteU32(kTss + 8, kPData3);  // SS0 with RPL 3
  // #TS(SS0 | EXT) -> the #TS handler needs the same stack -> #DF -> triple fault.
  EmulationResult r = emu.DeliverInterrupt(0x40, InterruptKind::kExternal);
  EXPECT_EQ(r.outcome, EmulationOutcome::kShutdown);
  EXPECT_NE(r.message.find("#TS(0xa) err=0x21"), std::string::npos) << r.message;
}

TEST_F(DeliveryTest, Protected32TaskGateIsReportedUnsupported) {
  SetupProtected32();
  Put64(kIdt + 0x40 * 8, EncodeGate(kPTss, 0, sys_type::kTaskGate, 0));
  EmulationResult r = emu.DeliverInterrupt(0x40, InterruptKind::kExternal);
  EXPECT_EQ(r.outcome, EmulationOutcome::kShutdown);
  EXPECT_NE(r.message.find("task gate"), std::string::npos) << r.message;
}

TEST_F(DeliveryTest, SingleStepTrapAfterEmulatedInstruction) {
  SetupLong64();
  s.rflags |= rflags::kTf;
  ASSERT_TRUE(Run({0x0F, 0xA2}).ok());  // CPUID, then #DB
  EXPECT_EQ(s.rip, HandlerFor(kDb));
  EXPECT_EQ(Get64(s.gpr[kRsp]), kCode + 2);  // trap: after the instruction
  EXPECT_NE(s.dr[6] & (1u << 14), 0u);       // DR6.BS
}

}  // namespace
}  // namespace rove::test
