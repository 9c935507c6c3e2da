// Segment loads (LDS/LSS, PUSH/POP Sreg), NMI blocking, compacted XSAVE, MONITOR/MWAIT,
// virtual-8086 rules, 16-bit gates, alignment checks and stack canonicality.
#include "emulator_test_env.h"

namespace rove::test {
namespace {

using SegmentsMiscTest = EmulatorTest;

TEST_F(SegmentsMiscTest, LssLoadsStackAndOffset) {
  SetupProtected32();
  mem->WriteU32(0x8000, 0x123450);
  Put(0x8004, {static_cast<uint8_t>(kPData0), 0});
  s.gpr[kRbx] = 0x8000;
  ASSERT_TRUE(Run({0x0F, 0xB2, 0x23}).ok());  // LSS ESP, [EBX]
  EXPECT_EQ(s.gpr[kRsp], 0x123450u);
  EXPECT_EQ(s.seg[kSs].selector, kPData0);
  EXPECT_FALSE(s.interrupt_shadow);  // only MOV SS / POP SS create the shadow
}

TEST_F(SegmentsMiscTest, LdsWithCodeSelectorIsGpAndLeavesRegister) {
  SetupProtected32();
  Put64(kGdt + 0x30, EncodeSegmentDescriptor(0, 0xFFFFF, 0xC099));  // execute-only code
  s.gdtr.limit = 0x37;
  mem->WriteU32(0x8000, 0x1111);
  Put(0x8004, {0x30, 0});
  s.gpr[kRbx] = 0x8000;
  s.gpr[kRax] = 0x9999;
  ASSERT_TRUE(Run({0xC5, 0x03}).ok());  // LDS EAX, [EBX]
  EXPECT_EQ(s.rip, HandlerFor(kGp));
  EXPECT_EQ(Get32(s.gpr[kRsp]), 0x30u);
  EXPECT_EQ(s.gpr[kRax], 0x9999u);
}

TEST_F(SegmentsMiscTest, PushPopSegmentRegisters) {
  SetupProtected32();
  uint64_t sp = s.gpr[kRsp];
  ASSERT_TRUE(Run({0x1E}).ok());  // PUSH DS
  EXPECT_EQ(s.gpr[kRsp], sp - 4);
  EXPECT_EQ(Get16(sp - 4), kPData0);
  ASSERT_TRUE(Run({0x07}).ok());  // POP ES
  EXPECT_EQ(s.seg[kEs].selector, kPData0);
  EXPECT_EQ(s.gpr[kRsp], sp);
  ASSERT_TRUE(Run({0x0F, 0xA0}).ok());  // PUSH FS
  ASSERT_TRUE(Run({0x17}).ok());        // POP SS
  EXPECT_TRUE(s.interrupt_shadow);
}

TEST_F(SegmentsMiscTest, NullSelectorIntoSsIn64BitModeOnlyAtKernelLevel) {
  SetupLong64();
  s.gpr[kRax] = 0;
  ASSERT_TRUE(Run({0x8E, 0xD0}).ok());  // MOV SS, AX (null) at CPL 0: allowed
  EXPECT_EQ(s.seg[kSs].selector, 0);
  EXPECT_EQ(s.rip, kCode + 2);
  SetupProtected32();
  s.gpr[kRax] = 0;
  ASSERT_TRUE(Run({0x8E, 0xD0}).ok());  // outside 64-bit mode: #GP(0)
  EXPECT_EQ(s.rip, HandlerFor(kGp));
}

TEST_F(SegmentsMiscTest, NmiIsBlockedUntilIret) {
  SetupLong64();
  EXPECT_TRUE(emu.CanTakeNmi());
  ASSERT_TRUE(emu.DeliverInterrupt(kNmi, InterruptKind::kNmi).ok());
  EXPECT_EQ(s.rip, HandlerFor(kNmi));
  EXPECT_FALSE(emu.CanTakeNmi());
  ASSERT_TRUE(Run({0x48, 0xCF}).ok());  // IRETQ
  EXPECT_EQ(s.rip, kCode);
  EXPECT_TRUE(emu.CanTakeNmi());
}

TEST_F(SegmentsMiscTest, XsavecXrstorCompactedRoundTrip) {
  SetupLong64();
  s.cr4 |= cr4::kOsxsave;
  s.xcr0 = 0xE7;
  uint64_t bv = 0x7;  // AVX-512 components in their initial state
  std::memcpy(s.xsave + 512, &bv, 8);
  for (int i = 0; i < 16; ++i) s.xsave[576 + 16 * 3 + i] = static_cast<uint8_t>(0x30 + i);
  s.gpr[kRax] = 0xFFFFFFFF;
  s.gpr[kRdx] = 0;
  s.gpr[kRbx] = 0x80000;
  ASSERT_TRUE(Run({0x0F, 0xC7, 0x23}).ok());                  // XSAVEC [RBX]
  EXPECT_EQ(Get64(0x80000 + 512), 0x7u);                      // XSTATE_BV = in use
  EXPECT_EQ(Get64(0x80000 + 520), 0xE7u | (1ull << 63));      // XCOMP_BV
  EXPECT_EQ(mem->host_base()[0x80000 + 576 + 16 * 3], 0x30);  // AVX right after the header
  std::memset(s.xsave + 576, 0, 256);
  bv = 0x3;
  std::memcpy(s.xsave + 512, &bv, 8);
  ASSERT_TRUE(Run({0x0F, 0xAE, 0x2B}).ok());  // XRSTOR [RBX] (compacted form)
  EXPECT_EQ(s.xsave[576 + 16 * 3], 0x30);
  std::memcpy(&bv, s.xsave + 512, 8);
  EXPECT_NE(bv & xfeature::kAvx, 0u);
}

TEST_F(SegmentsMiscTest, XrstorsNeedsCompactedFormAndCpl0) {
  SetupLong64();
  s.cr4 |= cr4::kOsxsave;
  s.xcr0 = 0x7;
  s.gpr[kRax] = 0xFFFFFFFF;
  s.gpr[kRbx] = 0x80000;                      // zeroed area: standard form
  ASSERT_TRUE(Run({0x0F, 0xC7, 0x1B}).ok());  // XRSTORS [RBX]
  EXPECT_EQ(s.rip, HandlerFor(kGp));
}

TEST_F(SegmentsMiscTest, MonitorMwaitOnlyWhenExposed) {
  SetupLong64();
  ASSERT_TRUE(Run({0x0F, 0x01, 0xC8}).ok());  // MONITOR: hidden by default
  EXPECT_EQ(s.rip, HandlerFor(kUd));

  CpuModelOptions o;
  o.monitor_mwait = true;
  CpuModel m2(o, FakeHost());
  SystemEmulator emu2(s, *mem, lin, io, tc, m2, clock);
  SetupLong64();
  s.gpr[kRax] = 0x80000;
  s.gpr[kRcx] = 0;
  mem->Write(kCode, std::vector<uint8_t>{0x0F, 0x01, 0xC8, 0x0F, 0x01, 0xC9}.data(), 6);
  ASSERT_TRUE(emu2.EmulateInstruction().ok());    // MONITOR
  EmulationResult r = emu2.EmulateInstruction();  // MWAIT
  EXPECT_EQ(r.outcome, EmulationOutcome::kHalt);
  EXPECT_EQ(s.rip, kCode + 6);
}

TEST_F(SegmentsMiscTest, V86SensitiveInstructionsNeedIopl3) {
  SetupProtected32();
  s.rflags |= rflags::kVm;  // IOPL 0
  for (SegReg r : {kCs, kSs, kDs, kEs, kFs, kGs}) s.seg[r] = RealModeSegment(0, true, s.seg[r]);
  s.rip = 0x7C00;
  s.gpr[kRsp] = 0x7000;
  ASSERT_TRUE(Run({0xFA}).ok());  // CLI in v8086 with IOPL 0: #GP to the protected-mode IDT
  EXPECT_EQ(s.rip, HandlerFor(kGp));
  EXPECT_EQ(s.cpl(), 0);
  EXPECT_FALSE(s.v86_mode());
  uint64_t sp = kKernelStack - 40;  // error, EIP, CS, EFLAGS, ESP, SS, ES, DS, FS, GS
  EXPECT_EQ(s.gpr[kRsp], sp);
  EXPECT_EQ(Get32(sp + 4), 0x7C00u);
  EXPECT_NE(Get32(sp + 12) & rflags::kVm, 0u);
  EXPECT_EQ(Get32(sp + 16), 0x7000u);
  EXPECT_FALSE(SegIsUsable(s.seg[kDs]));
  // IRET back to v8086 mode from CPL 0.
  s.gpr[kRsp] = sp + 4;  // the handler drops the error code
  s.rip = kCode;
  ASSERT_TRUE(Run({0xCF}).ok());
  EXPECT_TRUE(s.v86_mode());
  EXPECT_EQ(s.rip, 0x7C00u);
  EXPECT_EQ(s.gpr[kRsp], 0x7000u);
  EXPECT_EQ(s.seg[kCs].base, 0u);
  EXPECT_EQ(s.cpl(), 3);
}

TEST_F(SegmentsMiscTest, SixteenBitInterruptGatePushesWords) {
  SetupProtected32();
  SetGate32(0x50, sys_type::kIntGate16, 0);
  // The handler offset in a 16-bit gate is 16 bits: put the handler below 64 KiB.
  Put64(kIdt + 0x50 * 8, EncodeGate(kPCode0, 0x1234, sys_type::kIntGate16, 0));
  ASSERT_TRUE(emu.DeliverInterrupt(0x50, InterruptKind::kExternal).ok());
  EXPECT_EQ(s.rip, 0x1234u);
  EXPECT_EQ(s.gpr[kRsp], 0x1F0000u - 6);
  EXPECT_EQ(Get16(0x1F0000 - 6), static_cast<uint16_t>(kCode));
  EXPECT_EQ(Get16(0x1F0000 - 4), kPCode0);
}

TEST_F(SegmentsMiscTest, AlignmentCheckAtUserLevel) {
  SetupLong64();
  EnterUser64();
  s.cr0 |= cr0::kAm;
  s.rflags |= rflags::kAc;
  s.gpr[kRsp] = kUserStack - 2;   // misaligned stack
  ASSERT_TRUE(Run({0x9C}).ok());  // PUSHFQ
  EXPECT_EQ(s.rip, HandlerFor(kAc));
  EXPECT_EQ(Get64(s.gpr[kRsp]), 0u);
}

TEST_F(SegmentsMiscTest, NonCanonicalStackIsSsFault) {
  SetupLong64();
  s.gpr[kRsp] = 0x0000800000000008ull;
  SetGate64(kSsFault, sys_type::kIntGate, 0, 1);  // deliver on the IST stack
  ASSERT_TRUE(Run({0x9C}).ok());
  EXPECT_EQ(s.rip, HandlerFor(kSsFault));
  EXPECT_EQ(Get64(s.gpr[kRsp]), 0u);
}

TEST_F(SegmentsMiscTest, DumpStateNamesTheMode) {
  SetupLong64();
  std::string d = emu.DumpState();
  EXPECT_NE(d.find("mode=64-bit"), std::string::npos) << d;
  EXPECT_NE(d.find("cr3=0000000000010000"), std::string::npos) << d;
}

TEST_F(SegmentsMiscTest, NtIretIsReportedUnsupported) {
  SetupProtected32();
  s.rflags |= rflags::kNt;
  EmulationResult r = Run({0xCF});
  EXPECT_EQ(r.outcome, EmulationOutcome::kShutdown);
  EXPECT_NE(r.message.find("nested task"), std::string::npos) << r.message;
}

}  // namespace
}  // namespace rove::test

namespace rove::test {
namespace {

TEST_F(SegmentsMiscTest, EnterWithNestingLevelCopiesFramePointers) {
  SetupProtected32();
  s.gpr[kRbp] = 0x1F1000;
  mem->WriteU32(0x1F0FFC, 0xDEAD);
  s.gpr[kRsp] = 0x1F0000;
  ASSERT_TRUE(Run({0xC8, 0x10, 0x00, 0x02}).ok());  // ENTER 16, 2
  EXPECT_EQ(Get32(0x1EFFFC), 0x1F1000u);            // old EBP
  EXPECT_EQ(Get32(0x1EFFF8), 0xDEADu);              // outer frame pointer copied
  EXPECT_EQ(Get32(0x1EFFF4), 0x1EFFFCu);            // this frame
  EXPECT_EQ(s.gpr[kRbp], 0x1EFFFCu);
  EXPECT_EQ(s.gpr[kRsp], 0x1EFFF4u - 16);
}

TEST(CpuModelVendorTest, AmdVendorIsRecognised) {
  HostCpuInfo h = FakeHost();
  auto base = h.cpuid;
  h.cpuid = [base](uint32_t leaf, uint32_t sub) {
    if (leaf == 0) return CpuidResult{0x10, 0x68747541, 0x444D4163, 0x69746E65};  // AuthenticAMD
    return base(leaf, sub);
  };
  EXPECT_TRUE(CpuModel(CpuModelOptions{}, h).amd());
  EXPECT_FALSE(CpuModel(CpuModelOptions{}, FakeHost()).amd());
}

}  // namespace
}  // namespace rove::test

namespace rove::test {
namespace {

TEST_F(SegmentsMiscTest, RewrittenCodeIsDecodedAgain) {
  SetupLong64();
  s.gpr[kRax] = 0;
  ASSERT_TRUE(Run({0x0F, 0xA2}).ok());  // CPUID (now in the decode cache)
  EXPECT_EQ(s.rip, kCode + 2);
  s.rip = kCode;
  clock.now_ns += 77;
  ASSERT_TRUE(Run({0x0F, 0x31}).ok());  // same address, new bytes: RDTSC
  EXPECT_EQ(s.gpr[kRax], 77u);
  // Same bytes, other mode: 0x48 0xCF is IRETQ in 64-bit mode but DEC EAX; IRETD in 32-bit
  // code. DEC is not an instruction the emulator runs, so it reports #UD.
  SetupLong64();
  ASSERT_TRUE(Run({0x48, 0xCF}).ok());  // IRETQ with a zero frame: #GP
  EXPECT_EQ(s.rip, HandlerFor(kGp));
  SetupProtected32();
  ASSERT_TRUE(Run({0x48, 0xCF}).ok());
  EXPECT_EQ(s.rip, HandlerFor(kUd));
}

}  // namespace
}  // namespace rove::test
