// Privileged and sensitive instructions: CPL/IOPL/UMIP checks, control registers and mode
// transitions, MSRs, SYSCALL/SYSRET, XCR0, flags, interrupt shadow, TSC, FS/GS base, TLB
// maintenance, XSAVE.
#include "emulator_test_env.h"
#include "rove/engine/msr.h"

namespace rove::test {
namespace {

using SystemTest = EmulatorTest;

// Expects the last emulated instruction to have raised #GP with `err` at `rip`.
#define EXPECT_GP_AT(rip_, err_)                       \
  do {                                                 \
    EXPECT_EQ(s.rip, HandlerFor(kGp));                 \
    EXPECT_EQ(Get64(s.gpr[kRsp]), uint64_t{err_});     \
    EXPECT_EQ(Get64(s.gpr[kRsp] + 8), uint64_t{rip_}); \
  } while (0)

#define EXPECT_UD_AT(rip_)                         \
  do {                                             \
    EXPECT_EQ(s.rip, HandlerFor(kUd));             \
    EXPECT_EQ(Get64(s.gpr[kRsp]), uint64_t{rip_}); \
  } while (0)

TEST_F(SystemTest, UserCliWithIopl0IsGp) {
  SetupLong64();
  EnterUser64();
  ASSERT_TRUE(Run({0xFA}).ok());
  EXPECT_GP_AT(kCode, 0);
  EXPECT_EQ(s.cpl(), 0);
}

TEST_F(SystemTest, UserCliWithIopl3ClearsIf) {
  SetupLong64();
  EnterUser64();
  s.rflags |= rflags::kIoplMask;
  ASSERT_TRUE(Run({0xFA}).ok());
  EXPECT_EQ(s.rip, kCode + 1);
  EXPECT_EQ(s.rflags & rflags::kIf, 0u);
}

TEST_F(SystemTest, UserHltIsGp) {
  SetupLong64();
  EnterUser64();
  ASSERT_TRUE(Run({0xF4}).ok());
  EXPECT_GP_AT(kCode, 0);
}

TEST_F(SystemTest, KernelHltHalts) {
  SetupLong64();
  EmulationResult r = Run({0xF4});
  EXPECT_EQ(r.outcome, EmulationOutcome::kHalt);
  EXPECT_TRUE(s.halted);
  EXPECT_EQ(s.rip, kCode + 1);
}

TEST_F(SystemTest, UserMovCr3IsGp) {
  SetupLong64();
  EnterUser64();
  ASSERT_TRUE(Run({0x0F, 0x22, 0xD8}).ok());
  EXPECT_GP_AT(kCode, 0);
  EXPECT_EQ(s.cr3, kPml4);
}

TEST_F(SystemTest, UserLgdtIsGp) {
  SetupLong64();
  EnterUser64();
  s.gpr[kRax] = 0x8000;
  ASSERT_TRUE(Run({0x0F, 0x01, 0x10}).ok());
  EXPECT_GP_AT(kCode, 0);
  EXPECT_EQ(s.gdtr.base, kGdt);
}

TEST_F(SystemTest, LgdtLoadsBaseAndLimit) {
  SetupLong64();
  s.gpr[kRax] = 0x8000;
  uint8_t desc[10] = {0xFF, 0x0F, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  mem->Write(0x8000, desc, sizeof(desc));
  ASSERT_TRUE(Run({0x0F, 0x01, 0x10}).ok());
  EXPECT_EQ(s.gdtr.base, 0x9000u);
  EXPECT_EQ(s.gdtr.limit, 0xFFFu);
}

TEST_F(SystemTest, UmipBlocksSgdtAtUserLevel) {
  SetupLong64();
  EnterUser64();
  s.cr4 |= cr4::kUmip;
  s.gpr[kRax] = 0x8000;
  ASSERT_TRUE(Run({0x0F, 0x01, 0x00}).ok());
  EXPECT_GP_AT(kCode, 0);
}

TEST_F(SystemTest, SgdtWithoutUmipStoresTheTable) {
  SetupLong64();
  EnterUser64();
  s.gpr[kRax] = 0x8000;
  ASSERT_TRUE(Run({0x0F, 0x01, 0x00}).ok());
  EXPECT_EQ(s.rip, kCode + 3);
  EXPECT_EQ(Get16(0x8000), 0x7F);
  EXPECT_EQ(Get64(0x8002), kGdt);
}

TEST_F(SystemTest, UmipBlocksSmswStrSldtAtUserLevel) {
  SetupLong64();
  EnterUser64();
  s.cr4 |= cr4::kUmip;
  ASSERT_TRUE(Run({0x0F, 0x01, 0xE0}).ok());  // SMSW EAX
  EXPECT_GP_AT(kCode, 0);
}

TEST_F(SystemTest, MovCr3FlushesNonGlobalEntries) {
  SetupLong64();
  s.gpr[kRax] = kPml4 | 0x8;  // PWT
  ASSERT_TRUE(Run({0x0F, 0x22, 0xD8}).ok());
  EXPECT_EQ(s.cr3, kPml4 | 0x8);
  EXPECT_EQ(tc.flush_tlb, 1);
  EXPECT_EQ(tc.flush_tlb_global, 0);
  s.cr4 |= cr4::kPcide;
  s.gpr[kRax] = (1ull << 63) | kPml4 | 5;
  ASSERT_TRUE(Run({0x0F, 0x22, 0xD8}).ok());
  EXPECT_EQ(s.cr3, kPml4 | 5);  // bit 63 is not stored
  // The soft TLB is not PCID-tagged, so even the no-flush form drops non-global entries.
  EXPECT_EQ(tc.flush_tlb, 2);
  EXPECT_EQ(tc.flush_tlb_global, 0);
}

TEST_F(SystemTest, MovCr0EnablingPagingWithLmeActivatesLongMode) {
  SetupProtected32();
  // Page tables exist from the long-mode layout; build them here.
  Put64(kPml4, (kPml4 + 0x1000) | 7);
  Put64(kPml4 + 0x1000, (kPml4 + 0x2000) | 7);
  for (uint64_t i = 0; i < 16; ++i) Put64(kPml4 + 0x2000 + i * 8, (i << 21) | 0x87);
  s.cr3 = kPml4;
  s.cr4 = cr4::kPae;
  s.efer = efer::kLme;
  s.gpr[kRax] = s.cr0 | cr0::kPg;
  ASSERT_TRUE(Run({0x0F, 0x22, 0xC0}).ok());
  EXPECT_NE(s.cr0 & cr0::kPg, 0u);
  EXPECT_TRUE(s.long_mode_active());
  EXPECT_FALSE(s.code64());  // still compatibility mode until a far jump
  EXPECT_EQ(tc.flush_tlb_global, 1);
  EXPECT_GE(tc.flush_translations, 1);
  EXPECT_EQ(s.rip, kCode + 3);
}

TEST_F(SystemTest, EnablingLongModeWithoutPaeIsGp) {
  SetupProtected32();
  s.efer = efer::kLme;
  s.gpr[kRax] = s.cr0 | cr0::kPg;
  ASSERT_TRUE(Run({0x0F, 0x22, 0xC0}).ok());
  EXPECT_EQ(s.rip, HandlerFor(kGp));
  EXPECT_FALSE(s.long_mode_active());
}

TEST_F(SystemTest, Cr0PgWithoutPeIsGp) {
  SetupReal();
  s.gpr[kRax] = cr0::kPg | cr0::kEt;
  mem->WriteU32(kGp * 4, 0x00009000);
  ASSERT_TRUE(Run({0x66, 0x0F, 0x22, 0xC0}).ok());
  EXPECT_EQ(s.rip, 0x9000u);  // real-mode #GP handler
  EXPECT_EQ(s.cr0 & cr0::kPg, 0u);
}

TEST_F(SystemTest, ClearingPagingIn64BitModeIsGp) {
  SetupLong64();
  s.gpr[kRax] = s.cr0 & ~cr0::kPg;
  ASSERT_TRUE(Run({0x0F, 0x22, 0xC0}).ok());
  EXPECT_GP_AT(kCode, 0);
}

TEST_F(SystemTest, Cr4ReservedAndUnsupportedBitsAreGp) {
  SetupLong64();
  s.gpr[kRax] = s.cr4 | cr4::kPke;  // PKU is hidden by the model
  ASSERT_TRUE(Run({0x0F, 0x22, 0xE0}).ok());
  EXPECT_GP_AT(kCode, 0);
  SetupLong64();
  s.gpr[kRax] = s.cr4 & ~cr4::kPae;  // cannot leave PAE in long mode
  ASSERT_TRUE(Run({0x0F, 0x22, 0xE0}).ok());
  EXPECT_GP_AT(kCode, 0);
}

TEST_F(SystemTest, Cr4PgeChangeFlushesGlobalEntries) {
  SetupLong64();
  s.gpr[kRax] = s.cr4 | cr4::kPge;
  ASSERT_TRUE(Run({0x0F, 0x22, 0xE0}).ok());
  EXPECT_NE(s.cr4 & cr4::kPge, 0u);
  EXPECT_EQ(tc.flush_tlb_global, 1);
}

TEST_F(SystemTest, Cr8OnlyTakesFourBits) {
  SetupLong64();
  s.gpr[kRax] = 0xF;
  ASSERT_TRUE(Run({0x44, 0x0F, 0x22, 0xC0}).ok());  // MOV CR8, RAX
  EXPECT_EQ(s.cr8, 0xFu);
  s.gpr[kRax] = 0x10;
  ASSERT_TRUE(Run({0x44, 0x0F, 0x22, 0xC0}).ok());
  EXPECT_GP_AT(kCode + 4, 0);
}

TEST_F(SystemTest, MovDr4AliasesDr6UnlessCr4De) {
  SetupLong64();
  s.dr[6] = 0xFFFF4FF0;
  ASSERT_TRUE(Run({0x0F, 0x21, 0xE0}).ok());  // MOV RAX, DR4
  EXPECT_EQ(s.gpr[kRax], 0xFFFF4FF0u);
  s.cr4 |= cr4::kDe;
  ASSERT_TRUE(Run({0x0F, 0x21, 0xE0}).ok());
  EXPECT_UD_AT(kCode + 3);
}

TEST_F(SystemTest, RdmsrUnknownIsGp) {
  SetupLong64();
  s.gpr[kRcx] = 0x12345;
  ASSERT_TRUE(Run({0x0F, 0x32}).ok());
  EXPECT_GP_AT(kCode, 0);
}

TEST_F(SystemTest, MsrRoundTripsAndChecks) {
  SetupLong64();
  auto wrmsr = [&](uint32_t index, uint64_t v) {
    s.rip = kCode;
    s.gpr[kRcx] = index;
    s.gpr[kRax] = v & 0xFFFFFFFF;
    s.gpr[kRdx] = v >> 32;
    return Run({0x0F, 0x30});
  };
  auto rdmsr = [&](uint32_t index) {
    s.rip = kCode;
    s.gpr[kRcx] = index;
    EXPECT_TRUE(Run({0x0F, 0x32}).ok());
    return (s.gpr[kRdx] << 32) | s.gpr[kRax];
  };
  ASSERT_TRUE(wrmsr(msr::kLstar, 0xFFFFFFFF81000000ull).ok());
  EXPECT_EQ(s.msr.lstar, 0xFFFFFFFF81000000ull);
  EXPECT_EQ(rdmsr(msr::kLstar), 0xFFFFFFFF81000000ull);
  ASSERT_TRUE(wrmsr(msr::kGsBase, 0x7000).ok());
  EXPECT_EQ(s.seg[kGs].base, 0x7000u);
  EXPECT_EQ(rdmsr(msr::kMtrrCap), msr::kMtrrCapValue);
  ASSERT_TRUE(wrmsr(msr::kPat, 0x0007010600070106ull).ok());
  EXPECT_EQ(s.msr.pat, 0x0007010600070106ull);
  // Non-canonical LSTAR, invalid PAT type, reserved EFER bit: #GP.
  uint64_t sp = s.gpr[kRsp];
  ASSERT_TRUE(wrmsr(msr::kLstar, 0x0000800000000000ull).ok());
  EXPECT_EQ(s.rip, HandlerFor(kGp));
  s.gpr[kRsp] = sp;
  ASSERT_TRUE(wrmsr(msr::kPat, 0x02).ok());
  EXPECT_EQ(s.rip, HandlerFor(kGp));
  s.gpr[kRsp] = sp;
  ASSERT_TRUE(wrmsr(msr::kEfer, s.efer | (1ull << 20)).ok());
  EXPECT_EQ(s.rip, HandlerFor(kGp));
  s.gpr[kRsp] = sp;
  // EFER.LMA is read-only; LME cannot change while paging is on.
  ASSERT_TRUE(wrmsr(msr::kEfer, efer::kLme | efer::kSce).ok());
  EXPECT_EQ(s.rip, kCode + 2);
  EXPECT_TRUE(s.long_mode_active());
  EXPECT_EQ(tc.flush_tlb_global, 1);  // NXE changed
  ASSERT_TRUE(wrmsr(msr::kEfer, efer::kSce).ok());
  EXPECT_EQ(s.rip, HandlerFor(kGp));
}

TEST_F(SystemTest, TscMsrAndRdtscFollowTheClock) {
  SetupLong64();
  clock.now_ns += 500;  // 1 GHz clock: 500 ticks
  ASSERT_TRUE(Run({0x0F, 0x31}).ok());
  EXPECT_EQ((s.gpr[kRdx] << 32) | s.gpr[kRax], 500u);
  s.rip = kCode;
  s.gpr[kRcx] = msr::kTsc;
  s.gpr[kRax] = 100000;
  s.gpr[kRdx] = 0;
  ASSERT_TRUE(Run({0x0F, 0x30}).ok());
  clock.now_ns += 10;
  s.rip = kCode;
  ASSERT_TRUE(Run({0x0F, 0x31}).ok());
  EXPECT_EQ(s.gpr[kRax], 100010u);
}

TEST_F(SystemTest, RdtscAtUserWithTsdIsGp) {
  SetupLong64();
  EnterUser64();
  s.cr4 |= cr4::kTsd;
  ASSERT_TRUE(Run({0x0F, 0x31}).ok());
  EXPECT_GP_AT(kCode, 0);
}

TEST_F(SystemTest, RdtscpAndRdpidReturnTscAux) {
  SetupLong64();
  s.msr.tsc_aux = 7;
  ASSERT_TRUE(Run({0x0F, 0x01, 0xF9}).ok());  // RDTSCP
  EXPECT_EQ(s.gpr[kRcx], 7u);
  ASSERT_TRUE(Run({0xF3, 0x0F, 0xC7, 0xF8}).ok());  // RDPID RAX
  EXPECT_EQ(s.gpr[kRax], 7u);
}

TEST_F(SystemTest, SyscallSysretRoundTrip) {
  SetupLong64();
  EnterUser64();
  s.rflags |= rflags::kDf;
  uint64_t user_flags = s.rflags;
  ASSERT_TRUE(Run({0x0F, 0x05}).ok());
  EXPECT_EQ(s.rip, 0x600000u);
  EXPECT_EQ(s.gpr[kRcx], kCode + 2);
  EXPECT_EQ(s.gpr[kR11], user_flags);
  EXPECT_EQ(s.seg[kCs].selector, kKCode64);
  EXPECT_EQ(s.seg[kSs].selector, kKData);
  EXPECT_TRUE(s.code64());
  EXPECT_EQ(s.cpl(), 0);
  EXPECT_EQ(s.rflags & (rflags::kIf | rflags::kDf), 0u);  // SFMASK
  EXPECT_EQ(s.gpr[kRsp], kUserStack);                     // RSP unchanged
  ASSERT_TRUE(Run({0x48, 0x0F, 0x07}).ok());              // SYSRETQ
  EXPECT_EQ(s.rip, kCode + 2);
  EXPECT_EQ(s.seg[kCs].selector, kUCode64);
  EXPECT_EQ(s.seg[kSs].selector, kUData);
  EXPECT_EQ(s.cpl(), 3);
  EXPECT_TRUE(s.code64());
  EXPECT_EQ(s.rflags, user_flags);
}

TEST_F(SystemTest, SysretToCompatibilityMode) {
  SetupLong64();
  s.gpr[kRcx] = 0x12345678;
  s.gpr[kR11] = rflags::kFixed1 | rflags::kIf;
  ASSERT_TRUE(Run({0x0F, 0x07}).ok());
  EXPECT_EQ(s.seg[kCs].selector, kUCode32);
  EXPECT_FALSE(s.code64());
  EXPECT_EQ(s.code_bits(), 32);
  EXPECT_EQ(s.rip, 0x12345678u);
}

TEST_F(SystemTest, SyscallWithoutSceIsUd) {
  SetupLong64();
  s.efer &= ~efer::kSce;
  ASSERT_TRUE(Run({0x0F, 0x05}).ok());
  EXPECT_UD_AT(kCode);
}

TEST_F(SystemTest, SysretAtUserIsGpAndNonCanonicalRcxIsGp) {
  SetupLong64();
  s.gpr[kRcx] = 0x0000800000000000ull;
  ASSERT_TRUE(Run({0x48, 0x0F, 0x07}).ok());
  EXPECT_GP_AT(kCode, 0);
}

TEST_F(SystemTest, SysenterSysexit) {
  SetupProtected32();
  s.msr.sysenter_cs = kPCode0;
  s.msr.sysenter_esp = 0x1E0000;
  s.msr.sysenter_eip = 0x700000;
  EnterUser32();
  s.rflags |= rflags::kIf;
  ASSERT_TRUE(Run({0x0F, 0x34}).ok());
  EXPECT_EQ(s.rip, 0x700000u);
  EXPECT_EQ(s.gpr[kRsp], 0x1E0000u);
  EXPECT_EQ(s.cpl(), 0);
  EXPECT_EQ(s.rflags & rflags::kIf, 0u);
  s.gpr[kRcx] = 0x1234;
  s.gpr[kRdx] = 0x5678;
  ASSERT_TRUE(Run({0x0F, 0x35}).ok());
  EXPECT_EQ(s.rip, 0x1234u);
  EXPECT_EQ(s.gpr[kRsp], 0x5678u);
  EXPECT_EQ(s.cpl(), 3);
  EXPECT_EQ(s.seg[kCs].selector, kPCode3);  // SYSENTER_CS + 16
  EXPECT_EQ(s.seg[kSs].selector, kPData3);  // SYSENTER_CS + 24
}

TEST_F(SystemTest, SwapgsAndFsGsBase) {
  SetupLong64();
  s.seg[kGs].base = 0x1111;
  s.msr.kernel_gs_base = 0x2222;
  ASSERT_TRUE(Run({0x0F, 0x01, 0xF8}).ok());
  EXPECT_EQ(s.seg[kGs].base, 0x2222u);
  EXPECT_EQ(s.msr.kernel_gs_base, 0x1111u);
  // WRFSBASE needs CR4.FSGSBASE.
  s.gpr[kRax] = 0x7777;
  ASSERT_TRUE(Run({0xF3, 0x48, 0x0F, 0xAE, 0xD0}).ok());
  EXPECT_UD_AT(kCode + 3);
  SetupLong64();
  s.cr4 |= cr4::kFsgsbase;
  s.gpr[kRax] = 0x7777;
  ASSERT_TRUE(Run({0xF3, 0x48, 0x0F, 0xAE, 0xD0}).ok());
  EXPECT_EQ(s.seg[kFs].base, 0x7777u);
  s.gpr[kRax] = 0x0000800000000000ull;
  ASSERT_TRUE(Run({0xF3, 0x48, 0x0F, 0xAE, 0xD0}).ok());
  EXPECT_GP_AT(kCode + 5, 0);
}

TEST_F(SystemTest, SwapgsAtUserIsGp) {
  SetupLong64();
  EnterUser64();
  ASSERT_TRUE(Run({0x0F, 0x01, 0xF8}).ok());
  EXPECT_GP_AT(kCode, 0);
}

TEST_F(SystemTest, XsetbvChecksValueAndFlushesTranslations) {
  SetupLong64();
  s.cr4 |= cr4::kOsxsave;
  s.gpr[kRcx] = 0;
  s.gpr[kRdx] = 0;
  s.gpr[kRax] = xfeature::kX87 | xfeature::kAvx;  // AVX without SSE
  ASSERT_TRUE(Run({0x0F, 0x01, 0xD1}).ok());
  EXPECT_GP_AT(kCode, 0);
  SetupLong64();
  s.cr4 |= cr4::kOsxsave;
  s.gpr[kRcx] = 0;
  s.gpr[kRax] = 0x207;  // PKRU is not supported
  ASSERT_TRUE(Run({0x0F, 0x01, 0xD1}).ok());
  EXPECT_GP_AT(kCode, 0);
  SetupLong64();
  s.cr4 |= cr4::kOsxsave;
  s.gpr[kRcx] = 0;
  s.gpr[kRax] = 0x27;  // partial AVX-512
  ASSERT_TRUE(Run({0x0F, 0x01, 0xD1}).ok());
  EXPECT_GP_AT(kCode, 0);
  SetupLong64();
  s.cr4 |= cr4::kOsxsave;
  s.gpr[kRcx] = 0;
  s.gpr[kRax] = 0xE7;
  ASSERT_TRUE(Run({0x0F, 0x01, 0xD1}).ok());
  EXPECT_EQ(s.xcr0, 0xE7u);
  EXPECT_EQ(tc.flush_translations, 1);
  ASSERT_TRUE(Run({0x0F, 0x01, 0xD0}).ok());  // XGETBV
  EXPECT_EQ(s.gpr[kRax], 0xE7u);
}

TEST_F(SystemTest, XsetbvWithoutOsxsaveIsUd) {
  SetupLong64();
  ASSERT_TRUE(Run({0x0F, 0x01, 0xD1}).ok());
  EXPECT_UD_AT(kCode);
}

TEST_F(SystemTest, PopfAtUserKeepsIoplAndIf) {
  SetupLong64();
  EnterUser64();
  s.gpr[kRsp] -= 8;
  Put64(s.gpr[kRsp], rflags::kFixed1 | rflags::kIoplMask | rflags::kCf | rflags::kAc);
  ASSERT_TRUE(Run({0x9D}).ok());
  EXPECT_NE(s.rflags & rflags::kIf, 0u);        // unchanged (was set)
  EXPECT_EQ(s.rflags & rflags::kIoplMask, 0u);  // unchanged
  EXPECT_NE(s.rflags & rflags::kCf, 0u);
  EXPECT_NE(s.rflags & rflags::kAc, 0u);
  EXPECT_EQ(s.gpr[kRsp], kUserStack);
}

TEST_F(SystemTest, PushfClearsVmAndRfInImage) {
  SetupLong64();
  s.rflags |= rflags::kRf | rflags::kCf;
  ASSERT_TRUE(Run({0x9C}).ok());
  EXPECT_EQ(Get64(s.gpr[kRsp]), rflags::kFixed1 | rflags::kCf);
}

TEST_F(SystemTest, StiSetsInterruptShadowOnlyWhenIfWasClear) {
  SetupLong64();
  EXPECT_FALSE(emu.CanTakeInterrupt());
  ASSERT_TRUE(Run({0xFB}).ok());
  EXPECT_TRUE(s.interrupt_shadow);
  EXPECT_FALSE(emu.CanTakeInterrupt());
  ASSERT_TRUE(Run({0xFB}).ok());
  EXPECT_FALSE(s.interrupt_shadow);
  EXPECT_TRUE(emu.CanTakeInterrupt());
}

TEST_F(SystemTest, MovSsLoadsWithChecksAndSetsShadow) {
  SetupLong64();
  s.gpr[kRax] = kKData;
  ASSERT_TRUE(Run({0x8E, 0xD0}).ok());
  EXPECT_TRUE(s.interrupt_shadow);
  EXPECT_EQ(s.seg[kSs].selector, kKData);
  s.gpr[kRax] = kUData;  // RPL 3 != CPL 0
  ASSERT_TRUE(Run({0x8E, 0xD0}).ok());
  EXPECT_GP_AT(kCode + 2, kUData & 0xFFFC);
}

TEST_F(SystemTest, MovDsSetsAccessedBitInGdt) {
  SetupProtected32();
  Put64(kGdt + 0x10, EncodeSegmentDescriptor(0, 0xFFFFF, 0xC092));  // accessed clear
  s.gpr[kRax] = kPData0;
  ASSERT_TRUE(Run({0x8E, 0xD8}).ok());
  EXPECT_EQ(s.seg[kDs].selector, kPData0);
  EXPECT_NE(Get64(kGdt + 0x10) & (1ull << 40), 0u);
}

TEST_F(SystemTest, LoadingNotPresentSegmentIsNp) {
  SetupProtected32();
  Put64(kGdt + 0x10, EncodeSegmentDescriptor(0, 0xFFFFF, 0xC013));  // P = 0
  s.gpr[kRax] = kPData0;
  ASSERT_TRUE(Run({0x8E, 0xD8}).ok());
  EXPECT_EQ(s.rip, HandlerFor(kNp));
  EXPECT_EQ(Get32(s.gpr[kRsp]), kPData0);
}

TEST_F(SystemTest, InvlpgFlushesOnePage) {
  SetupLong64();
  s.gpr[kRax] = 0x123456;
  ASSERT_TRUE(Run({0x0F, 0x01, 0x38}).ok());
  ASSERT_EQ(tc.flushed_pages.size(), 1u);
  EXPECT_EQ(tc.flushed_pages[0], 0x123456u);
}

// The emulator keeps recent instruction-fetch translations; INVLPG (like any invalidation it
// performs) drops them, so code fetched after it comes through the new mapping.
TEST_F(SystemTest, InvlpgRefetchesThroughTheNewMapping) {
  SetupLong64();
  const uint64_t alt = 0x1000000;        // 2 MiB page 8, identity-mapped too
  Put(kCode, {0xB8, 1, 0, 0, 0});        // mov eax, 1
  Put(alt + kCode, {0xB8, 2, 0, 0, 0});  // mov eax, 2 (same offset, other page)
  Put(0x300000, {0x0F, 0x01, 0x38});     // invlpg [rax], in another page
  ASSERT_TRUE(emu.EmulateInstruction().ok());
  EXPECT_EQ(s.gpr[kRax], 1u);
  Put64(kPml4 + 0x2000, alt | 0x87);  // kCode's 2 MiB page now maps to `alt`
  s.rip = 0x300000;
  s.gpr[kRax] = kCode;
  ASSERT_TRUE(emu.EmulateInstruction().ok());
  ASSERT_EQ(tc.flushed_pages.size(), 1u);
  s.rip = kCode;
  ASSERT_TRUE(emu.EmulateInstruction().ok());
  EXPECT_EQ(s.gpr[kRax], 2u);
  EXPECT_EQ(s.rip, kCode + 5);
}

TEST_F(SystemTest, InvpcidTypes) {
  SetupLong64();
  s.cr4 |= cr4::kPcide;
  Put64(0x8000, 5);
  Put64(0x8008, 0x4000);
  s.gpr[kRcx] = 0x8000;
  s.gpr[kRax] = 0;  // individual address
  ASSERT_TRUE(Run({0x66, 0x0F, 0x38, 0x82, 0x01}).ok());
  ASSERT_EQ(tc.flushed_pages.size(), 1u);
  EXPECT_EQ(tc.flushed_pages[0], 0x4000u);
  s.gpr[kRax] = 2;  // all including global
  ASSERT_TRUE(Run({0x66, 0x0F, 0x38, 0x82, 0x01}).ok());
  EXPECT_EQ(tc.flush_tlb_global, 1);
  s.gpr[kRax] = 4;  // invalid type
  ASSERT_TRUE(Run({0x66, 0x0F, 0x38, 0x82, 0x01}).ok());
  EXPECT_GP_AT(kCode + 10, 0);
}

TEST_F(SystemTest, LockPrefixOnSystemInstructionIsUd) {
  SetupLong64();
  ASSERT_TRUE(Run({0xF0, 0x0F, 0xA2}).ok());  // LOCK CPUID
  EXPECT_UD_AT(kCode);
}

TEST_F(SystemTest, Ud2IsUd) {
  SetupLong64();
  ASSERT_TRUE(Run({0x0F, 0x0B}).ok());
  EXPECT_UD_AT(kCode);
}

TEST_F(SystemTest, CpuidReportsModel) {
  SetupLong64();
  s.gpr[kRax] = 0x40000000;
  ASSERT_TRUE(Run({0x0F, 0xA2}).ok());
  char sig[13] = {};
  uint32_t regs[3] = {static_cast<uint32_t>(s.gpr[kRbx]), static_cast<uint32_t>(s.gpr[kRcx]),
                      static_cast<uint32_t>(s.gpr[kRdx])};
  std::memcpy(sig, regs, 12);
  EXPECT_STREQ(sig, "VMwareVMware");
  s.gpr[kRax] = 1;
  ASSERT_TRUE(Run({0x0F, 0xA2}).ok());
  EXPECT_NE(s.gpr[kRcx] & (1u << 31), 0u);  // hypervisor
  EXPECT_EQ(s.gpr[kRcx] & (1u << 5), 0u);   // no VMX
  EXPECT_EQ(s.gpr[kRcx] & (1u << 27), 0u);  // OSXSAVE follows CR4
  s.cr4 |= cr4::kOsxsave;
  s.gpr[kRax] = 1;
  ASSERT_TRUE(Run({0x0F, 0xA2}).ok());
  EXPECT_NE(s.gpr[kRcx] & (1u << 27), 0u);
}

TEST_F(SystemTest, XsaveXrstorRoundTrip) {
  SetupLong64();
  s.cr4 |= cr4::kOsxsave;
  s.xcr0 = 0x7;
  // XMM0 = pattern, YMM0 high = pattern.
  for (int i = 0; i < 16; ++i) s.xsave[160 + i] = static_cast<uint8_t>(i + 1);
  for (int i = 0; i < 16; ++i) s.xsave[576 + i] = static_cast<uint8_t>(0x80 + i);
  uint64_t bv = 0x7;
  std::memcpy(s.xsave + 512, &bv, 8);
  s.gpr[kRax] = 0xFFFFFFFF;
  s.gpr[kRdx] = 0xFFFFFFFF;
  s.gpr[kRbx] = 0x80000;
  ASSERT_TRUE(Run({0x0F, 0xAE, 0x23}).ok());  // XSAVE [RBX]
  EXPECT_EQ(s.rip, kCode + 3);
  EXPECT_EQ(Get64(0x80000 + 512), 0x7u);
  EXPECT_EQ(mem->host_base()[0x80000 + 160], 1);
  EXPECT_EQ(mem->host_base()[0x80000 + 576], 0x80);
  // Clobber and restore.
  std::memset(s.xsave + 160, 0, 16);
  std::memset(s.xsave + 576, 0, 16);
  ASSERT_TRUE(Run({0x0F, 0xAE, 0x2B}).ok());  // XRSTOR [RBX]
  EXPECT_EQ(s.xsave[160], 1);
  EXPECT_EQ(s.xsave[576], 0x80);
  // Misaligned area: #GP.
  s.gpr[kRbx] = 0x80008;
  ASSERT_TRUE(Run({0x0F, 0xAE, 0x2B}).ok());
  EXPECT_GP_AT(kCode + 6, 0);
}

TEST_F(SystemTest, XsaveWithTsIsNm) {
  SetupLong64();
  s.cr4 |= cr4::kOsxsave;
  s.cr0 |= cr0::kTs;
  s.gpr[kRbx] = 0x80000;
  ASSERT_TRUE(Run({0x0F, 0xAE, 0x23}).ok());
  EXPECT_EQ(s.rip, HandlerFor(kNm));
}

TEST_F(SystemTest, XrstorRejectsBitsOutsideXcr0) {
  SetupLong64();
  s.cr4 |= cr4::kOsxsave;
  s.xcr0 = 0x3;
  Put64(0x80000 + 512, 0x4);  // AVX state while XCR0 has no AVX
  s.gpr[kRax] = 0xFFFFFFFF;
  s.gpr[kRbx] = 0x80000;
  ASSERT_TRUE(Run({0x0F, 0xAE, 0x2B}).ok());
  EXPECT_GP_AT(kCode, 0);
}

TEST_F(SystemTest, FxsaveFxrstor) {
  SetupLong64();
  for (int i = 0; i < 16; ++i) s.xsave[160 + 16 * 15 + i] = static_cast<uint8_t>(0x40 + i);
  uint64_t bv = 0x3;
  std::memcpy(s.xsave + 512, &bv, 8);
  s.gpr[kRbx] = 0x80000;
  ASSERT_TRUE(Run({0x48, 0x0F, 0xAE, 0x03}).ok());  // FXSAVE64 [RBX]
  EXPECT_EQ(mem->host_base()[0x80000 + 160 + 16 * 15], 0x40);
  uint32_t mxcsr = 0xFFFFFFFF;  // reserved bits set: FXRSTOR #GP
  mem->Write(0x80000 + 24, &mxcsr, 4);
  ASSERT_TRUE(Run({0x48, 0x0F, 0xAE, 0x0B}).ok());
  EXPECT_GP_AT(kCode + 4, 0);
}

TEST_F(SystemTest, LtrMarksTssBusyAndStrReadsIt) {
  SetupLong64();
  s.tr = NullSegment(0);
  s.gpr[kRax] = kTssSel;
  ASSERT_TRUE(Run({0x0F, 0x00, 0xD8}).ok());  // LTR AX
  EXPECT_EQ(s.tr.selector, kTssSel);
  EXPECT_EQ(s.tr.attr & 0xF, sys_type::kTssBusy);
  EXPECT_EQ((Get64(kGdt + kTssSel) >> 40) & 0xF, sys_type::kTssBusy);
  ASSERT_TRUE(Run({0x0F, 0x00, 0xC9}).ok());  // STR ECX
  EXPECT_EQ(s.gpr[kRcx], kTssSel);
  // Loading a busy TSS again: #GP(selector).
  ASSERT_TRUE(Run({0x0F, 0x00, 0xD8}).ok());
  EXPECT_GP_AT(kCode + 6, kTssSel);
}

TEST_F(SystemTest, LarLslVerrVerw) {
  SetupProtected32();
  s.gpr[kRcx] = kPCode3;
  ASSERT_TRUE(Run({0x0F, 0x02, 0xC1}).ok());  // LAR EAX, ECX
  EXPECT_NE(s.rflags & rflags::kZf, 0u);
  EXPECT_EQ(s.gpr[kRax], 0x00CFFB00u);
  ASSERT_TRUE(Run({0x0F, 0x03, 0xC1}).ok());  // LSL EAX, ECX
  EXPECT_EQ(s.gpr[kRax], 0xFFFFFFFFu);
  s.gpr[kRcx] = 0x100;  // beyond the GDT limit
  ASSERT_TRUE(Run({0x0F, 0x03, 0xC1}).ok());
  EXPECT_EQ(s.rflags & rflags::kZf, 0u);
  EnterUser32();
  s.gpr[kRcx] = kPData0;                      // DPL 0 data from CPL 3
  ASSERT_TRUE(Run({0x0F, 0x00, 0xE1}).ok());  // VERR CX
  EXPECT_EQ(s.rflags & rflags::kZf, 0u);
  s.gpr[kRcx] = kPData3;
  ASSERT_TRUE(Run({0x0F, 0x00, 0xE9}).ok());  // VERW CX
  EXPECT_NE(s.rflags & rflags::kZf, 0u);
}

TEST_F(SystemTest, FarJumpToCompatibilityAndBack) {
  SetupLong64();
  // JMP FAR [RAX] with m16:32 = kKCode32:0x2000
  Put64(0x8000, 0x2000 | (uint64_t{kKCode32} << 32));
  s.gpr[kRax] = 0x8000;
  ASSERT_TRUE(Run({0xFF, 0x28}).ok());
  EXPECT_EQ(s.seg[kCs].selector, kKCode32);
  EXPECT_EQ(s.rip, 0x2000u);
  EXPECT_FALSE(s.code64());
  // JMP FAR ptr16:32 back to 64-bit code.
  ASSERT_TRUE(Run({0xEA, 0x00, 0x30, 0x00, 0x00, static_cast<uint8_t>(kKCode64), 0x00}).ok());
  EXPECT_TRUE(s.code64());
  EXPECT_EQ(s.rip, 0x3000u);
}

TEST_F(SystemTest, FarCallThroughCallGate64ToInnerPrivilege) {
  SetupLong64();
  uint64_t hi = 0;
  uint64_t lo = EncodeGate(kKCode64, 0x650000, sys_type::kCallGate, 3, 0, &hi);
  Put64(kGdt + 0x50, lo);
  Put64(kGdt + 0x58, hi);
  s.gdtr.limit = 0x5F;
  EnterUser64();
  Put64(0x8000, 0 | (uint64_t{0x53} << 32));  // gate selector with RPL 3
  s.gpr[kRax] = 0x8000;
  ASSERT_TRUE(Run({0xFF, 0x18}).ok());  // CALL FAR [RAX] (m16:32)
  EXPECT_EQ(s.rip, 0x650000u);
  EXPECT_EQ(s.cpl(), 0);
  EXPECT_EQ(s.gpr[kRsp], kKernelStack - 32);
  EXPECT_EQ(Get64(kKernelStack - 32), kCode + 2);  // return RIP
  EXPECT_EQ(Get64(kKernelStack - 24), kUCode64);
  EXPECT_EQ(Get64(kKernelStack - 16), kUserStack);
  EXPECT_EQ(Get64(kKernelStack - 8), kUData);
  // RETF (REX.W) back to CPL 3.
  ASSERT_TRUE(Run({0x48, 0xCB}).ok());
  EXPECT_EQ(s.cpl(), 3);
  EXPECT_EQ(s.rip, kCode + 2);
  EXPECT_EQ(s.gpr[kRsp], kUserStack);
  EXPECT_EQ(s.seg[kSs].selector, kUData);
}

TEST_F(SystemTest, Protected32CallGateCopiesParameters) {
  SetupProtected32();
  Put64(kGdt + 0x30, EncodeGate(kPCode0, 0x660000, sys_type::kCallGate, 3, 2));
  s.gdtr.limit = 0x37;
  EnterUser32();
  s.gpr[kRsp] = kUserStack - 8;
  mem->WriteU32(kUserStack - 8, 0x11111111);
  mem->WriteU32(kUserStack - 4, 0x22222222);
  ASSERT_TRUE(Run({0x9A, 0x00, 0x00, 0x00, 0x00, 0x33, 0x00}).ok());  // CALL 0x33:0
  EXPECT_EQ(s.rip, 0x660000u);
  EXPECT_EQ(s.cpl(), 0);
  uint64_t sp = kKernelStack - 24;
  EXPECT_EQ(s.gpr[kRsp], sp);
  EXPECT_EQ(Get32(sp), kCode + 7);
  EXPECT_EQ(Get32(sp + 4), kPCode3);
  EXPECT_EQ(Get32(sp + 8), 0x11111111u);
  EXPECT_EQ(Get32(sp + 12), 0x22222222u);
  EXPECT_EQ(Get32(sp + 16), kUserStack - 8);
  EXPECT_EQ(Get32(sp + 20), kPData3);
  // RETF 8 pops the parameters on both stacks.
  ASSERT_TRUE(Run({0xCA, 0x08, 0x00}).ok());
  EXPECT_EQ(s.cpl(), 3);
  EXPECT_EQ(s.gpr[kRsp], kUserStack);
}

TEST_F(SystemTest, RealModeSegmentLoadsAndFarJump) {
  SetupReal();
  s.gpr[kRax] = 0x1234;
  ASSERT_TRUE(Run({0x8E, 0xD8}).ok());  // MOV DS, AX
  EXPECT_EQ(s.seg[kDs].base, 0x12340u);
  ASSERT_TRUE(Run({0xEA, 0x00, 0x01, 0x00, 0x20}).ok());  // JMP 2000:0100
  EXPECT_EQ(s.seg[kCs].base, 0x20000u);
  EXPECT_EQ(s.rip, 0x100u);
}

TEST_F(SystemTest, BcdAdjustments) {
  SetupProtected32();
  s.gpr[kRax] = 0x0F;             // 0x09 + 0x06 binary
  ASSERT_TRUE(Run({0x27}).ok());  // DAA
  EXPECT_EQ(s.gpr[kRax] & 0xFF, 0x15u);
  s.gpr[kRax] = 0x3B;
  ASSERT_TRUE(Run({0xD4, 0x0A}).ok());  // AAM
  EXPECT_EQ(s.gpr[kRax] & 0xFFFF, 0x0509u);
  ASSERT_TRUE(Run({0xD5, 0x0A}).ok());  // AAD
  EXPECT_EQ(s.gpr[kRax] & 0xFFFF, 0x003Bu);
  ASSERT_TRUE(Run({0xD4, 0x00}).ok());  // AAM 0: #DE
  EXPECT_EQ(s.rip, HandlerFor(kDe));
}

TEST_F(SystemTest, PushaPopaEnterLeave) {
  SetupProtected32();
  for (int i = 0; i < 8; ++i) s.gpr[i] = 0x1000 + i;
  s.gpr[kRsp] = 0x1F0000;
  ASSERT_TRUE(Run({0x60}).ok());  // PUSHAD
  EXPECT_EQ(s.gpr[kRsp], 0x1F0000u - 32);
  EXPECT_EQ(Get32(0x1F0000 - 4), 0x1000u);     // EAX first
  EXPECT_EQ(Get32(0x1F0000 - 20), 0x1F0000u);  // original ESP
  for (int i = 0; i < 8; ++i)
    if (i != kRsp) s.gpr[i] = 0;
  ASSERT_TRUE(Run({0x61}).ok());  // POPAD
  EXPECT_EQ(s.gpr[kRax], 0x1000u);
  EXPECT_EQ(s.gpr[kRdi], 0x1007u);
  EXPECT_EQ(s.gpr[kRsp], 0x1F0000u);
  s.gpr[kRbp] = 0x1F1000;
  ASSERT_TRUE(Run({0xC8, 0x10, 0x00, 0x00}).ok());  // ENTER 16, 0
  EXPECT_EQ(s.gpr[kRbp], 0x1F0000u - 4);
  EXPECT_EQ(s.gpr[kRsp], 0x1F0000u - 4 - 16);
  ASSERT_TRUE(Run({0xC9}).ok());  // LEAVE
  EXPECT_EQ(s.gpr[kRbp], 0x1F1000u);
  EXPECT_EQ(s.gpr[kRsp], 0x1F0000u);
}

TEST_F(SystemTest, BoundOutOfRangeIsBr) {
  SetupProtected32();
  mem->WriteU32(0x8000, 10);
  mem->WriteU32(0x8004, 20);
  s.gpr[kRbx] = 0x8000;
  s.gpr[kRax] = 15;
  ASSERT_TRUE(Run({0x62, 0x03}).ok());  // BOUND EAX, [EBX]
  EXPECT_EQ(s.rip, kCode + 2);
  s.gpr[kRax] = 21;
  ASSERT_TRUE(Run({0x62, 0x03}).ok());
  EXPECT_EQ(s.rip, HandlerFor(kBr));
}

}  // namespace
}  // namespace rove::test

namespace rove::test {
namespace {

TEST_F(SystemTest, Avx2GatherLoadsActiveElementsAndClearsMask) {
  SetupLong64();
  s.cr4 |= cr4::kOsxsave;
  s.xcr0 = 0x7;
  uint64_t bv = 0x3;  // x87 + SSE in use; AVX upper halves in their initial state
  std::memcpy(s.xsave + 512, &bv, 8);
  uint32_t index[4] = {3, 0, 2, 1};
  std::memcpy(s.xsave + 160 + 16 * 1, index, 16);  // XMM1
  uint32_t mask[4] = {0x80000000u, 0x80000000u, 0, 0x80000000u};
  std::memcpy(s.xsave + 160 + 16 * 2, mask, 16);  // XMM2
  uint32_t old[4] = {0xAAAAAAAA, 0xAAAAAAAA, 0xAAAAAAAA, 0xAAAAAAAA};
  std::memcpy(s.xsave + 160, old, 16);  // XMM0
  for (uint32_t i = 0; i < 4; ++i) mem->WriteU32(0x80000 + 4 * i, 10 + i);
  s.gpr[kRax] = 0x80000;
  ASSERT_TRUE(Run({0xC4, 0xE2, 0x69, 0x90, 0x04, 0x88}).ok());  // VPGATHERDD xmm0,[rax+xmm1*4],xmm2
  EXPECT_EQ(s.rip, kCode + 6);
  uint32_t got[4], m[4];
  std::memcpy(got, s.xsave + 160, 16);
  std::memcpy(m, s.xsave + 160 + 32, 16);
  EXPECT_EQ(got[0], 13u);
  EXPECT_EQ(got[1], 10u);
  EXPECT_EQ(got[2], 0xAAAAAAAAu);  // inactive element keeps its value
  EXPECT_EQ(got[3], 11u);
  for (uint32_t v : m) EXPECT_EQ(v, 0u);
  // Same register as destination and mask: #UD.
  ASSERT_TRUE(Run({0xC4, 0xE2, 0x79, 0x90, 0x04, 0x88}).ok());  // mask = xmm0
  EXPECT_EQ(s.rip, HandlerFor(kUd));
}

TEST_F(SystemTest, GatherFaultKeepsCompletedElements) {
  SetupLong64();
  s.cr4 |= cr4::kOsxsave;
  s.xcr0 = 0x7;
  uint64_t bv = 0x3;
  std::memcpy(s.xsave + 512, &bv, 8);
  Put64(kPml4 + 0x2000 + 3 * 8, 0);  // 0x600000.. unmapped
  uint32_t index[4] = {0, 0x600000 / 4, 1, 2};
  std::memcpy(s.xsave + 160 + 16 * 1, index, 16);
  uint32_t mask[4] = {0x80000000u, 0x80000000u, 0x80000000u, 0x80000000u};
  std::memcpy(s.xsave + 160 + 16 * 2, mask, 16);
  mem->WriteU32(0, 0x55);
  s.gpr[kRax] = 0;
  ASSERT_TRUE(Run({0xC4, 0xE2, 0x69, 0x90, 0x04, 0x88}).ok());
  EXPECT_EQ(s.rip, HandlerFor(kPf));
  EXPECT_EQ(s.cr2, 0x600000u);
  uint32_t got[4], m[4];
  std::memcpy(got, s.xsave + 160, 16);
  std::memcpy(m, s.xsave + 160 + 32, 16);
  EXPECT_EQ(got[0], 0x55u);
  EXPECT_EQ(m[0], 0u);           // element 0 done
  EXPECT_EQ(m[1], 0x80000000u);  // faulting element still pending
}

}  // namespace
}  // namespace rove::test

namespace rove::test {
namespace {

HostCpuInfo FakeAmdHost() {
  HostCpuInfo h = FakeHost();
  auto base = h.cpuid;
  h.cpuid = [base](uint32_t leaf, uint32_t sub) {
    if (leaf == 0) return CpuidResult{0x10, 0x68747541, 0x444D4163, 0x69746E65};  // AuthenticAMD
    return base(leaf, sub);
  };
  return h;
}

TEST_F(SystemTest, CompatSyscallIsUdOnIntelAndEntersCstarOnAmd) {
  SetupLong64();
  s.seg[kCs] = SegFromGdt(kUCode32);
  s.seg[kSs] = SegFromGdt(kUData);
  s.msr.cstar = 0x680000;
  ASSERT_TRUE(Run({0x0F, 0x05}).ok());
  EXPECT_EQ(s.rip, HandlerFor(kUd));

  CpuModel amd(CpuModelOptions{}, FakeAmdHost());
  SystemEmulator emu_amd(s, *mem, lin, io, tc, amd, clock);
  SetupLong64();
  s.seg[kCs] = SegFromGdt(kUCode32);
  s.seg[kSs] = SegFromGdt(kUData);
  s.msr.cstar = 0x680000;
  Put(kCode, {0x0F, 0x05});
  ASSERT_TRUE(emu_amd.EmulateInstruction().ok());
  EXPECT_EQ(s.rip, 0x680000u);
  EXPECT_TRUE(s.code64());
  EXPECT_EQ(s.gpr[kRcx], kCode + 2);
  // SYSENTER is legacy-mode only on AMD.
  Put(0x680000, {0x0F, 0x34});
  s.msr.sysenter_cs = kKCode64;
  ASSERT_TRUE(emu_amd.EmulateInstruction().ok());
  EXPECT_EQ(s.rip, HandlerFor(kUd));
}

}  // namespace
}  // namespace rove::test
