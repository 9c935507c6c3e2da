// Tests of the harness itself, without the engine: the native runner reproduces the initial
// state exactly, computes what the instructions compute, reports faults at the right
// instruction, and the flag analysis finds the undefined flags.
#include <gtest/gtest.h>

#include <cstring>

#include "harness.h"

namespace rove::difftest {
namespace {

using Bytes = std::vector<uint8_t>;

Outcome Native(const Bytes& code, DiffInput* input_out = nullptr, uint64_t seed = 1) {
  DiffInput in = MakeDefaultInput("native", code, seed);
  Outcome o = RunNative(in);
  EXPECT_EQ(o.failure, "");
  if (input_out) *input_out = in;
  return o;
}

TEST(NativeRunner, EmptySequenceKeepsEveryRegister) {
  DiffInput in;
  const Outcome o = Native({}, &in);
  ASSERT_FALSE(o.exception);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(o.state.gpr[i], in.init.gpr[i]) << "gpr " << i;
  EXPECT_EQ(o.state.rflags & rflags::kHostLive, 0u);
  for (int i = 0; i < testing::VectorRegCount(); ++i) {
    uint8_t a[64], b[64];
    testing::ReadZmm(in.init.xsave, i, a);
    testing::ReadZmm(o.state.xsave, i, b);
    EXPECT_EQ(std::memcmp(a, b, 64), 0) << "zmm" << i;
  }
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(testing::ReadOpmask(in.init.xsave, i), testing::ReadOpmask(o.state.xsave, i));
  }
  EXPECT_EQ(testing::ReadMxcsr(o.state.xsave), 0x1F80u);
  EXPECT_EQ(o.data, in.data);
  // An identical outcome compares equal to itself.
  EXPECT_EQ(CompareOutcomes(in, AnalyzeSequence(in.code), o, o), "");
}

TEST(NativeRunner, InitialFlagsAreLoaded) {
  DiffInput in = MakeDefaultInput("flags", {}, 3);
  in.init.rflags = rflags::kFixed1 | rflags::kCf | rflags::kZf | rflags::kOf | rflags::kDf;
  const Outcome o = RunNative(in);
  ASSERT_EQ(o.failure, "");
  EXPECT_EQ(o.state.rflags & rflags::kHostLive,
            rflags::kCf | rflags::kZf | rflags::kOf | rflags::kDf);
}

TEST(NativeRunner, ComputesAndStores) {
  // add rax, rbx ; mov [rsp-8], rax ; push rax ; pop rcx
  DiffInput in;
  const Outcome o = Native({0x48, 0x01, 0xD8, 0x48, 0x89, 0x44, 0x24, 0xF8, 0x50, 0x59}, &in);
  ASSERT_FALSE(o.exception);
  const uint64_t sum = in.init.gpr[kRax] + in.init.gpr[kRbx];
  EXPECT_EQ(o.state.gpr[kRax], sum);
  EXPECT_EQ(o.state.gpr[kRcx], sum);
  EXPECT_EQ(o.state.gpr[kRsp], kStackTop);
  uint64_t stored;
  std::memcpy(&stored, o.data.data() + (kStackTop - 8 - kDataVa), 8);
  EXPECT_EQ(stored, sum);
  EXPECT_EQ(o.state.rip, kCodeVa + 10);
}

TEST(NativeRunner, AvxRegisters) {
  // vpaddd zmm0, zmm1, zmm2
  DiffInput in;
  const Outcome o = Native({0x62, 0xF1, 0x75, 0x48, 0xFE, 0xC2}, &in);
  if (!testing::HostXsaveLayout().has_avx512) GTEST_SKIP() << "host without AVX-512";
  uint8_t z1[64], z2[64], z0[64];
  testing::ReadZmm(in.init.xsave, 1, z1);
  testing::ReadZmm(in.init.xsave, 2, z2);
  testing::ReadZmm(o.state.xsave, 0, z0);
  for (int lane = 0; lane < 16; ++lane) {
    uint32_t a, b, r;
    std::memcpy(&a, z1 + 4 * lane, 4);
    std::memcpy(&b, z2 + 4 * lane, 4);
    std::memcpy(&r, z0 + 4 * lane, 4);
    EXPECT_EQ(r, a + b) << "lane " << lane;
  }
}

TEST(NativeRunner, DivideErrorIsReportedAtItsInstruction) {
  // xor eax, eax ; inc ecx ; div eax
  DiffInput in;
  const Outcome o = Native({0x31, 0xC0, 0xFF, 0xC1, 0xF7, 0xF0}, &in);
  ASSERT_TRUE(o.exception);
  EXPECT_EQ(o.vector, kVecDe);
  EXPECT_EQ(o.state.rip, kCodeVa + 4);
  EXPECT_EQ(o.state.gpr[kRax], 0u);
  EXPECT_EQ(o.state.gpr[kRcx], static_cast<uint32_t>(in.init.gpr[kRcx] + 1));
  EXPECT_EQ(InstructionIndexAt(AnalyzeSequence(in.code), o.state.rip - kCodeVa), 2);
}

TEST(NativeRunner, PageFaultAndGeneralProtection) {
  // mov rax, [0]
  Outcome o = Native({0x48, 0x8B, 0x04, 0x25, 0x00, 0x00, 0x00, 0x00});
  ASSERT_TRUE(o.exception);
  EXPECT_EQ(o.vector, kVecPf);
  // mov rax, 0x8000000000000000 ; mov rbx, [rax]  (non-canonical)
  o = Native({0x48, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x48, 0x8B, 0x18});
  ASSERT_TRUE(o.exception);
  EXPECT_EQ(o.vector, kVecGp);
  EXPECT_EQ(o.state.rip, kCodeVa + 10);
  // ud2
  o = Native({0x0F, 0x0B});
  ASSERT_TRUE(o.exception);
  EXPECT_EQ(o.vector, kVecUd);
}

TEST(NativeRunner, FaultKeepsVectorState) {
  // vpaddd zmm0, zmm1, zmm2 ; ud2
  DiffInput in;
  const Outcome o = Native({0x62, 0xF1, 0x75, 0x48, 0xFE, 0xC2, 0x0F, 0x0B}, &in);
  if (!testing::HostXsaveLayout().has_avx512) GTEST_SKIP() << "host without AVX-512";
  ASSERT_TRUE(o.exception);
  uint8_t z1[64], z2[64], z0[64];
  testing::ReadZmm(in.init.xsave, 1, z1);
  testing::ReadZmm(in.init.xsave, 2, z2);
  testing::ReadZmm(o.state.xsave, 0, z0);
  uint32_t a, b, r;
  std::memcpy(&a, z1 + 60, 4);
  std::memcpy(&b, z2 + 60, 4);
  std::memcpy(&r, z0 + 60, 4);
  EXPECT_EQ(r, a + b);
  for (int i = 1; i < 8; ++i) {
    EXPECT_EQ(testing::ReadOpmask(in.init.xsave, i), testing::ReadOpmask(o.state.xsave, i));
  }
}

TEST(NativeRunner, CompatibilityModeCode) {
  // inc eax (40) ; dec ecx (49): one-byte forms that are REX prefixes in 64-bit mode;
  // push eax ; pop edx ; ud2
  DiffInput in = MakeDefaultInput("compat", {0x40, 0x49, 0x50, 0x5A, 0x0F, 0x0B}, 5);
  in.compat32 = true;
  const Outcome o = RunNative(in);
  ASSERT_EQ(o.failure, "");
  ASSERT_TRUE(o.exception);
  EXPECT_EQ(o.vector, kVecUd);
  EXPECT_EQ(o.state.rip, kCodeVa + 4);
  EXPECT_EQ(static_cast<uint32_t>(o.state.gpr[kRax]), static_cast<uint32_t>(in.init.gpr[kRax] + 1));
  EXPECT_EQ(static_cast<uint32_t>(o.state.gpr[kRcx]), static_cast<uint32_t>(in.init.gpr[kRcx] - 1));
  EXPECT_EQ(static_cast<uint32_t>(o.state.gpr[kRdx]), static_cast<uint32_t>(in.init.gpr[kRax] + 1));
  // Completing normally too.
  DiffInput done = MakeDefaultInput("compat2", {0x40, 0x40}, 5);
  done.compat32 = true;
  const Outcome d = RunNative(done);
  ASSERT_EQ(d.failure, "");
  EXPECT_FALSE(d.exception);
  EXPECT_EQ(static_cast<uint32_t>(d.state.gpr[kRax]),
            static_cast<uint32_t>(done.init.gpr[kRax] + 2));
  EXPECT_EQ(d.state.gpr[kR9], done.init.gpr[kR9]);  // not reachable from 32-bit code: kept
}

TEST(NativeRunner, DetectsDifferences) {
  DiffInput in;
  const Outcome a = Native({0x48, 0x01, 0xD8}, &in);
  Outcome b = a;
  b.state.gpr[kR9] ^= 1;
  b.state.rflags ^= rflags::kCf;
  b.data[100] ^= 0xFF;
  uint8_t z[64];
  testing::ReadZmm(b.state.xsave, 5, z);
  z[7] ^= 1;
  testing::WriteZmm(b.state.xsave, 5, z);
  const std::string report = CompareOutcomes(in, AnalyzeSequence(in.code), a, b);
  EXPECT_NE(report.find("r9"), std::string::npos) << report;
  EXPECT_NE(report.find("rflags"), std::string::npos) << report;
  EXPECT_NE(report.find("mem[0x10000060]"), std::string::npos) << report;
  EXPECT_NE(report.find("zmm5"), std::string::npos) << report;
}

TEST(FlagAnalysis, UndefinedFlagsFollowTheSequence) {
  // mul rbx: SF ZF AF PF undefined.
  SequenceInfo info = AnalyzeSequence({0x48, 0xF7, 0xE3});
  EXPECT_EQ(info.undefined_flags, rflags::kSf | rflags::kZf | rflags::kAf | rflags::kPf);
  // mul rbx ; add rax, rbx: everything defined again.
  info = AnalyzeSequence({0x48, 0xF7, 0xE3, 0x48, 0x01, 0xD8});
  EXPECT_EQ(info.undefined_flags, 0u);
  EXPECT_EQ(info.offsets.size(), 2u);
  EXPECT_EQ(info.undefined_before[1], rflags::kSf | rflags::kZf | rflags::kAf | rflags::kPf);
  // mul rbx ; jz +3 ; add rax, rbx ; (end): the jump skips the add, flags stay undefined.
  info = AnalyzeSequence({0x48, 0xF7, 0xE3, 0x74, 0x03, 0x48, 0x01, 0xD8});
  EXPECT_EQ(info.undefined_flags, rflags::kSf | rflags::kZf | rflags::kAf | rflags::kPf);
  // bsf rax, rbx: everything but ZF undefined.
  info = AnalyzeSequence({0x48, 0x0F, 0xBC, 0xC3});
  EXPECT_EQ(info.undefined_flags, rflags::kArith & ~rflags::kZf);
}

TEST(FlagAnalysis, Disassembles) {
  const std::string text = Disassemble({0x48, 0x01, 0xD8, 0x0F, 0x0B});
  EXPECT_NE(text.find("add rax, rbx"), std::string::npos) << text;
  EXPECT_NE(text.find("ud2"), std::string::npos) << text;
}

}  // namespace
}  // namespace rove::difftest
