// String instructions and port I/O.
#include "emulator_test_env.h"
#include "rove/devices/device_manager.h"
#include "rove/engine/vmware_backdoor.h"

namespace rove::test {
namespace {

using StringIoTest = EmulatorTest;

void Fill(GuestMemory& m, uint64_t gpa, size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  m.Write(gpa, v.data(), n);
}

bool Same(GuestMemory& m, uint64_t a, uint64_t b, size_t n) {
  std::vector<uint8_t> x(n), y(n);
  m.Read(a, x.data(), n);
  m.Read(b, y.data(), n);
  return x == y;
}

TEST_F(StringIoTest, RepMovsbAcrossPagesForward) {
  SetupLong64();
  Fill(*mem, 0x80F00, 0x2345, 3);
  s.gpr[kRsi] = 0x80F00;
  s.gpr[kRdi] = 0x90F80;
  s.gpr[kRcx] = 0x2345;
  ASSERT_TRUE(Run({0xF3, 0xA4}).ok());
  EXPECT_EQ(s.rip, kCode + 2);
  EXPECT_EQ(s.gpr[kRcx], 0u);
  EXPECT_EQ(s.gpr[kRsi], 0x80F00u + 0x2345);
  EXPECT_EQ(s.gpr[kRdi], 0x90F80u + 0x2345);
  EXPECT_TRUE(Same(*mem, 0x80F00, 0x90F80, 0x2345));
}

TEST_F(StringIoTest, RepMovsbAcrossPagesBackward) {
  SetupLong64();
  Fill(*mem, 0x80000, 0x3000, 9);
  s.rflags |= rflags::kDf;
  s.gpr[kRsi] = 0x80000 + 0x2FFF;
  s.gpr[kRdi] = 0xA0010 + 0x2FFF;
  s.gpr[kRcx] = 0x3000;
  ASSERT_TRUE(Run({0xF3, 0xA4}).ok());
  EXPECT_EQ(s.gpr[kRcx], 0u);
  EXPECT_EQ(s.gpr[kRsi], 0x80000u - 1);
  EXPECT_EQ(s.gpr[kRdi], 0xA0010u - 1);
  EXPECT_TRUE(Same(*mem, 0x80000, 0xA0010, 0x3000));
}

TEST_F(StringIoTest, OverlappingForwardMovsReplicatesLikeHardware) {
  SetupLong64();
  Put(0x80000, {0xAB, 0x00, 0x00, 0x00, 0x00});
  s.gpr[kRsi] = 0x80000;
  s.gpr[kRdi] = 0x80001;
  s.gpr[kRcx] = 4;
  ASSERT_TRUE(Run({0xF3, 0xA4}).ok());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(mem->host_base()[0x80000 + i], 0xAB) << i;
}

// Overlapping REP MOVS in every direction and element size, against an element-by-element
// reference: memmove-like copies (away from the overlap) and replicating ones (into it, at
// distances below, equal to and above the element size).
TEST_F(StringIoTest, OverlappingMovsMatchesElementOrder) {
  SetupLong64();
  const uint64_t base = 0x88000;
  struct Case {
    unsigned size;
    bool down;
    int64_t distance;  // destination - source, in bytes
  };
  const Case cases[] = {{1, false, -5}, {1, false, 3},  {1, true, 3},   {1, true, -7},
                        {8, false, 12}, {8, false, 8},  {8, false, 4},  {8, true, -12},
                        {4, true, -2},  {2, false, 64}, {4, false, -16}};
  const uint8_t opcode[] = {0, 0xA4, 0xA5, 0, 0xA5, 0, 0, 0, 0xA5};
  for (const Case& c : cases) {
    const uint64_t count = 300;
    Fill(*mem, base, 0x1000, static_cast<uint8_t>(c.size * 17 + c.distance));
    std::vector<uint8_t> ref(0x1000);
    mem->Read(base, ref.data(), ref.size());
    // Element by element, as the SDM describes it.
    uint64_t si = c.down ? 0xE00 : 0x300, di = si + c.distance;
    const uint64_t si0 = si, di0 = di;
    for (uint64_t i = 0; i < count; ++i) {
      uint8_t tmp[8];
      std::memcpy(tmp, &ref[si], c.size);
      std::memcpy(&ref[di], tmp, c.size);
      si += c.down ? -uint64_t{c.size} : c.size;
      di += c.down ? -uint64_t{c.size} : c.size;
    }
    s.rip = kCode;
    s.rflags = rflags::kFixed1 | (c.down ? rflags::kDf : 0);
    s.gpr[kRsi] = base + si0;
    s.gpr[kRdi] = base + di0;
    s.gpr[kRcx] = count;
    const uint64_t bulk_before = emu.stats().string_bytes;
    if (c.size == 2)
      ASSERT_TRUE(Run({0x66, 0xF3, 0xA5}).ok());
    else if (c.size == 8)
      ASSERT_TRUE(Run({0xF3, 0x48, 0xA5}).ok());
    else
      ASSERT_TRUE(Run({0xF3, opcode[c.size]}).ok());
    std::vector<uint8_t> got(0x1000);
    mem->Read(base, got.data(), got.size());
    EXPECT_EQ(got, ref) << "size " << c.size << (c.down ? " down" : " up") << " distance "
                        << c.distance;
    EXPECT_EQ(s.gpr[kRcx], 0u);
    EXPECT_EQ(s.gpr[kRsi], base + si);
    // Whole-block copies except when replicating at a distance below the element size.
    const bool into = c.down ? c.distance < 0 : c.distance > 0;
    const uint64_t distance = static_cast<uint64_t>(c.distance < 0 ? -c.distance : c.distance);
    if (!into || distance >= c.size) {
      EXPECT_GT(emu.stats().string_bytes, bulk_before) << "size " << c.size;
    }
  }
}

TEST_F(StringIoTest, RepStosqFillsAndAdvances) {
  SetupLong64();
  s.gpr[kRax] = 0x1122334455667788ull;
  s.gpr[kRdi] = 0x80008;
  s.gpr[kRcx] = 1000;
  ASSERT_TRUE(Run({0xF3, 0x48, 0xAB}).ok());
  EXPECT_EQ(s.gpr[kRdi], 0x80008u + 8000);
  EXPECT_EQ(Get64(0x80008), 0x1122334455667788ull);
  EXPECT_EQ(Get64(0x80008 + 8 * 999), 0x1122334455667788ull);
  EXPECT_EQ(Get64(0x80008 + 8 * 1000), 0u);
}

TEST_F(StringIoTest, LongRepIsChunkedAndResumes) {
  SetupLong64();
  emu.set_string_chunk_bytes(4096);
  s.gpr[kRax] = 0x5A;
  s.gpr[kRdi] = 0x80000;
  s.gpr[kRcx] = 10000;
  ASSERT_TRUE(Run({0xF3, 0xAA}).ok());
  EXPECT_EQ(s.rip, kCode);  // not finished: still at the instruction
  EXPECT_EQ(s.gpr[kRcx], 10000u - 4096);
  int calls = 1;
  while (s.rip == kCode && calls < 10) {
    ASSERT_TRUE(emu.EmulateInstruction().ok());
    ++calls;
  }
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(s.rip, kCode + 2);
  EXPECT_EQ(s.gpr[kRcx], 0u);
  EXPECT_EQ(mem->host_base()[0x80000 + 9999], 0x5A);
  EXPECT_EQ(mem->host_base()[0x80000 + 10000], 0);
}

TEST_F(StringIoTest, PageFaultMidCopyKeepsProgress) {
  SetupLong64();
  // Unmap the 2 MiB page at 0x600000 to make the destination fault part way.
  Put64(kPml4 + 0x2000 + 3 * 8, 0);
  s.gpr[kRsi] = 0x80000;
  s.gpr[kRdi] = 0x600000 - 0x100;
  s.gpr[kRcx] = 0x300;
  ASSERT_TRUE(Run({0xF3, 0xA4}).ok());
  EXPECT_EQ(s.rip, HandlerFor(kPf));
  EXPECT_EQ(s.cr2, 0x600000u);
  EXPECT_EQ(Get64(s.gpr[kRsp]), 0x2u);       // write to a not-present page
  EXPECT_EQ(Get64(s.gpr[kRsp] + 8), kCode);  // RIP of the REP MOVSB
  EXPECT_EQ(s.gpr[kRcx], 0x200u);            // 0x100 bytes done
  EXPECT_EQ(s.gpr[kRdi], 0x600000u);
  EXPECT_EQ(s.gpr[kRsi], 0x80100u);
}

TEST_F(StringIoTest, RepeCmpsbStopsAtFirstDifference) {
  SetupLong64();
  Put(0x80000, {1, 2, 3, 4, 5});
  Put(0x90000, {1, 2, 3, 9, 5});
  s.gpr[kRsi] = 0x80000;
  s.gpr[kRdi] = 0x90000;
  s.gpr[kRcx] = 5;
  ASSERT_TRUE(Run({0xF3, 0xA6}).ok());
  EXPECT_EQ(s.rip, kCode + 2);
  EXPECT_EQ(s.gpr[kRcx], 1u);
  EXPECT_EQ(s.gpr[kRsi], 0x80004u);
  EXPECT_EQ(s.rflags & rflags::kZf, 0u);
  EXPECT_NE(s.rflags & rflags::kCf, 0u);  // 4 < 9
}

TEST_F(StringIoTest, RepneScasbFindsByte) {
  SetupLong64();
  Put(0x80000, {'a', 'b', 'c', 0, 'd'});
  s.gpr[kRax] = 0;
  s.gpr[kRdi] = 0x80000;
  s.gpr[kRcx] = ~0ull;
  ASSERT_TRUE(Run({0xF2, 0xAE}).ok());
  EXPECT_EQ(s.gpr[kRdi], 0x80004u);
  EXPECT_EQ(~s.gpr[kRcx] - 1, 3u);  // strlen idiom
  EXPECT_NE(s.rflags & rflags::kZf, 0u);
}

TEST_F(StringIoTest, LodsAndSegmentOverrideInProtectedMode) {
  SetupProtected32();
  Put64(kGdt + 0x30, EncodeSegmentDescriptor(0x10000, 0xFFFF, 0x4093));  // base 0x10000
  s.gdtr.limit = 0x37;
  s.seg[kFs] = SegFromGdt(0x30);
  mem->WriteU32(0x10000 + 0x20, 0xCAFEBABE);
  s.gpr[kRsi] = 0x20;
  ASSERT_TRUE(Run({0x64, 0xAD}).ok());  // LODSD FS:[ESI]
  EXPECT_EQ(s.gpr[kRax], 0xCAFEBABEu);
  EXPECT_EQ(s.gpr[kRsi], 0x24u);
  // Beyond the FS limit: #GP(0).
  s.gpr[kRsi] = 0xFFFE;
  ASSERT_TRUE(Run({0x64, 0xAD}).ok());
  EXPECT_EQ(s.rip, HandlerFor(kGp));
}

TEST_F(StringIoTest, RealModeAddressWrapsAt64K) {
  SetupReal();
  s.seg[kEs] = RealModeSegment(0x1000, false, s.seg[kEs]);
  s.gpr[kRax] = 0x77;
  s.gpr[kRdi] = 0xFFFF;
  s.gpr[kRcx] = 2;
  ASSERT_TRUE(Run({0xF3, 0xAA}).ok());
  EXPECT_EQ(mem->host_base()[0x10000 + 0xFFFF], 0x77);
  EXPECT_EQ(mem->host_base()[0x10000], 0x77);
  EXPECT_EQ(s.gpr[kRdi] & 0xFFFF, 1u);
}

TEST_F(StringIoTest, OutAndInReachThePorts) {
  SetupLong64();
  s.gpr[kRax] = 0x41;
  ASSERT_TRUE(Run({0xE6, 0xE9}).ok());  // OUT 0xE9, AL
  ASSERT_EQ(io.outs.size(), 1u);
  EXPECT_EQ(io.outs[0].port, 0xE9);
  EXPECT_EQ(io.outs[0].width, 1u);
  EXPECT_EQ(io.outs[0].value, 0x41u);
  s.gpr[kRdx] = 0x3F8;
  s.gpr[kRax] = 0xFFFFFFFF12345678ull;
  ASSERT_TRUE(Run({0xEF}).ok());  // OUT DX, EAX
  EXPECT_EQ(io.outs[1].value, 0x12345678u);
  EXPECT_EQ(io.outs[1].width, 4u);
  io.next_in = 0xAB;
  ASSERT_TRUE(Run({0xEC}).ok());  // IN AL, DX
  EXPECT_EQ(s.gpr[kRax], 0xFFFFFFFF123456ABull);
  io.next_in = 0xBEEF;
  ASSERT_TRUE(Run({0xED}).ok());  // IN EAX, DX zero-extends
  EXPECT_EQ(s.gpr[kRax], 0xBEEFu);
}

TEST_F(StringIoTest, UserIoNeedsBitmapPermission) {
  SetupLong64();
  EnterUser64();
  s.gpr[kRdx] = 0x3F8;
  ASSERT_TRUE(Run({0xEE}).ok());  // OUT DX, AL: all ports denied
  EXPECT_EQ(s.rip, HandlerFor(kGp));
  EXPECT_TRUE(io.outs.empty());
  // Allow 0x3F8 only.
  SetupLong64();
  EnterUser64();
  mem->host_base()[kTss + 0x68 + 0x3F8 / 8] = 0xFE;
  s.gpr[kRdx] = 0x3F8;
  ASSERT_TRUE(Run({0xEE}).ok());
  EXPECT_EQ(s.rip, kCode + 1);
  EXPECT_EQ(io.outs.size(), 1u);
  ASSERT_TRUE(Run({0xEF}).ok());  // 4 bytes: 0x3F9..0x3FB still denied
  EXPECT_EQ(s.rip, HandlerFor(kGp));
}

TEST_F(StringIoTest, RepOutsbAndInsw) {
  SetupLong64();
  Put(0x80000, {'h', 'i', '!'});
  s.gpr[kRsi] = 0x80000;
  s.gpr[kRcx] = 3;
  s.gpr[kRdx] = 0xE9;
  ASSERT_TRUE(Run({0xF3, 0x6E}).ok());
  ASSERT_EQ(io.outs.size(), 3u);
  EXPECT_EQ(io.outs[2].value, static_cast<uint32_t>('!'));
  io.next_in = 0x100;
  s.gpr[kRdi] = 0x90000;
  s.gpr[kRcx] = 2;
  ASSERT_TRUE(Run({0xF3, 0x66, 0x6D}).ok());  // REP INSW
  EXPECT_EQ(Get16(0x90000), 0x100);
  EXPECT_EQ(Get16(0x90002), 0x101);
}

TEST_F(StringIoTest, InsToUnmappedPageFaultsBeforeReadingThePort) {
  SetupLong64();
  Put64(kPml4 + 0x2000 + 3 * 8, 0);  // 0x600000 unmapped
  s.gpr[kRdi] = 0x600000;
  s.gpr[kRdx] = 0x60;
  ASSERT_TRUE(Run({0x6C}).ok());  // INSB
  EXPECT_EQ(s.rip, HandlerFor(kPf));
  EXPECT_TRUE(io.ins.empty());
}

TEST_F(StringIoTest, VmwareBackdoorAnswersAtAnyPrivilege) {
  SetupLong64();
  EnterUser64();  // no I/O permission at all: the backdoor still answers, as VMware's does
  s.gpr[kRax] = vmware::kMagic;
  s.gpr[kRcx] = vmware::kCmdGetHz;
  s.gpr[kRdx] = vmware::kPort;
  s.gpr[kRbx] = 0xFFFFFFFF;
  ASSERT_TRUE(Run({0xED}).ok());  // IN EAX, DX
  EXPECT_EQ(s.rip, kCode + 1);
  EXPECT_TRUE(io.outs.empty());
  EXPECT_EQ(s.gpr[kRax] | (s.gpr[kRbx] << 32), model.tsc_hz());
  EXPECT_EQ(s.gpr[kRcx], model.apic_bus_hz());
  // The devices' LAPIC timer runs at the frequency the guest is told.
  EXPECT_EQ(model.apic_bus_hz(), PcConfig{}.apic_bus_hz);

  SetupLong64();
  s.gpr[kRax] = vmware::kMagic;
  s.gpr[kRcx] = vmware::kCmdGetVersion;
  s.gpr[kRdx] = vmware::kPort;
  ASSERT_TRUE(Run({0xED}).ok());
  EXPECT_EQ(s.gpr[kRbx], vmware::kMagic);
  EXPECT_EQ(s.gpr[kRax], vmware::kVersion);

  s.gpr[kRax] = vmware::kMagic;
  s.gpr[kRcx] = 91;  // steal clock: not provided
  s.gpr[kRdx] = vmware::kPort;
  ASSERT_TRUE(Run({0xED}).ok());
  EXPECT_EQ(s.gpr[kRax], vmware::kNotSupported);

  // Without the magic value it is an ordinary port read.
  io.next_in = 0x1234;
  s.gpr[kRax] = 0;
  s.gpr[kRdx] = vmware::kPort;
  ASSERT_TRUE(Run({0xED}).ok());
  EXPECT_EQ(s.gpr[kRax], 0x1234u);
}

// The whole-block path checks the segment limit over its whole run: when the run reaches past
// the limit, the elements before it must still be done and the #GP come at the first element
// beyond it (RCX/RSI/RDI counting the completed ones), as the element path does.
TEST_F(StringIoTest, RepMovsAndStosPastTheSegmentLimitFaultAtTheElement) {
  for (const bool movs : {false, true}) {
    SetupProtected32();
    Put64(kGdt + 0x30, EncodeSegmentDescriptor(0x80000, 0x10FF, 0x4093));  // ES: 0x1100 bytes
    s.gdtr.limit = 0x37;
    s.seg[kEs] = SegFromGdt(0x30);
    Fill(*mem, 0x90000, 0x200, 5);
    std::vector<uint8_t> zero(0x2000, 0);
    mem->Write(0x80000, zero.data(), zero.size());
    s.gpr[kRax] = 0x5A;
    s.gpr[kRsi] = 0x90000;
    s.gpr[kRdi] = 0x1000;
    s.gpr[kRcx] = 0x200;
    ASSERT_TRUE(Run({0xF3, static_cast<uint8_t>(movs ? 0xA4 : 0xAA)}).ok());
    EXPECT_EQ(s.rip, HandlerFor(kGp)) << "movs " << movs;
    EXPECT_EQ(s.gpr[kRcx], 0x100u) << "movs " << movs;
    EXPECT_EQ(s.gpr[kRdi], 0x1100u) << "movs " << movs;
    if (movs) {
      EXPECT_EQ(s.gpr[kRsi], 0x90100u);
      EXPECT_TRUE(Same(*mem, 0x90000, 0x81000, 0x100));
    } else {
      EXPECT_EQ(mem->host_base()[0x810FF], 0x5A);
    }
    EXPECT_EQ(mem->host_base()[0x81100], 0) << "movs " << movs;
  }
}

}  // namespace
}  // namespace rove::test
