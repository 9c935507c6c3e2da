// The CPU model (CPUID) and the guest clock.
#include "emulator_test_env.h"

namespace rove::test {
namespace {

TEST(CpuModelTest, HidesUnsupportedFeaturesAndAddsEmulatedOnes) {
  CpuModel m(CpuModelOptions{}, FakeHost());
  CpuState s;
  CpuidResult l1 = m.Query(1, 0, s);
  EXPECT_NE(l1.ecx & (1u << 31), 0u);  // hypervisor
  EXPECT_EQ(l1.ecx & (1u << 5), 0u);   // VMX hidden
  EXPECT_EQ(l1.ecx & (1u << 21), 0u);  // x2APIC hidden by default
  EXPECT_EQ(l1.ecx & (1u << 3), 0u);   // no MONITOR unless asked
  EXPECT_NE(l1.ecx & (1u << 28), 0u);  // AVX
  EXPECT_NE(l1.ecx & (1u << 17), 0u);  // PCID
  CpuidResult l7 = m.Query(7, 0, s);
  EXPECT_EQ(l7.ecx & (1u << 3), 0u);   // PKU hidden
  EXPECT_EQ(l7.ebx & (1u << 11), 0u);  // RTM hidden
  EXPECT_EQ(l7.ecx & (1u << 16), 0u);  // LA57 off by default
  EXPECT_NE(l7.ecx & (1u << 2), 0u);   // UMIP (emulated)
  EXPECT_NE(l7.ebx & (1u << 16), 0u);  // AVX512F
  EXPECT_TRUE(m.has_fsgsbase());
  EXPECT_TRUE(m.has_invpcid());
  EXPECT_FALSE(m.has_pku());
  EXPECT_EQ(m.supported_xcr0(), 0xE7u);  // PKRU dropped
  EXPECT_EQ(m.tsc_hz(), 2500000000u);    // from leaf 0x15
}

TEST(CpuModelTest, OptionsTurnFeaturesOnAndOff) {
  CpuModelOptions o;
  o.avx512 = false;
  o.monitor_mwait = true;
  o.x2apic = true;
  o.tsc_hz = 3000000000;
  o.apic_id = 5;
  CpuModel m(o, FakeHost());
  CpuState s;
  EXPECT_EQ(m.supported_xcr0(), 0x7u);
  EXPECT_EQ(m.Query(7, 0, s).ebx & (1u << 16), 0u);
  EXPECT_NE(m.Query(1, 0, s).ecx & (1u << 3), 0u);
  EXPECT_NE(m.Query(1, 0, s).ecx & (1u << 21), 0u);
  EXPECT_EQ(m.Query(1, 0, s).ebx >> 24, 5u);
  CpuidResult l15 = m.Query(0x15, 0, s);
  EXPECT_EQ(uint64_t{l15.ecx} * l15.ebx / l15.eax, 3000000000u);
  EXPECT_EQ(m.Query(0x16, 0, s).eax, 3000u);
}

TEST(CpuModelTest, DynamicBitsFollowTheState) {
  CpuModel m(CpuModelOptions{}, FakeHost());
  CpuState s;
  s.xcr0 = 0x7;
  EXPECT_EQ(m.Query(0xD, 0, s).ebx, 576u + 256);
  s.xcr0 = 0xE7;
  EXPECT_EQ(m.Query(0xD, 0, s).ebx, 2688u);
  EXPECT_EQ(m.Query(0xD, 0, s).ecx, 2688u);
  EXPECT_EQ(m.Query(0xD, 0, s).eax, 0xE7u);
  EXPECT_EQ(m.Query(0xD, 1, s).ebx, 576u + 256 + 64 + 512 + 1024);  // compacted
  s.msr.apic_base &= ~(1ull << 11);
  EXPECT_EQ(m.Query(1, 0, s).edx & (1u << 9), 0u);  // APIC disabled
  s.cr4 |= cr4::kOsxsave;
  EXPECT_NE(m.Query(1, 0, s).ecx & (1u << 27), 0u);
}

TEST(CpuModelTest, HypervisorAndExtendedLeaves) {
  CpuModel m(CpuModelOptions{}, FakeHost());
  CpuState s;
  CpuidResult hv = m.Query(0x40000000, 0, s);
  EXPECT_EQ(hv.eax, 0x40000010u);
  char sig[13] = {};
  std::memcpy(sig, &hv.ebx, 4);
  std::memcpy(sig + 4, &hv.ecx, 4);
  std::memcpy(sig + 8, &hv.edx, 4);
  EXPECT_STREQ(sig, "VMwareVMware");
  CpuidResult timing = m.Query(0x40000010, 0, s);
  EXPECT_EQ(uint64_t{timing.eax} * 1000, m.tsc_hz());
  EXPECT_EQ(uint64_t{timing.ebx} * 1000, m.apic_bus_hz());
  EXPECT_EQ(timing.ecx, 0u);  // no VMCALL/VMMCALL hypercalls: the I/O-port backdoor
  EXPECT_EQ(m.Query(0x40000011, 0, s).eax, 0u);
  CpuModelOptions own;
  own.vmware_interface = false;
  CpuModel r(own, FakeHost());
  hv = r.Query(0x40000000, 0, s);
  EXPECT_EQ(hv.eax, 0x40000001u);
  std::memcpy(sig, &hv.ebx, 4);
  std::memcpy(sig + 4, &hv.ecx, 4);
  std::memcpy(sig + 8, &hv.edx, 4);
  EXPECT_STREQ(sig, "roveroverove");
  EXPECT_EQ(r.Query(0x40000010, 0, s).eax, 0u);
  CpuidResult e1 = m.Query(0x80000001, 0, s);
  EXPECT_NE(e1.edx & (1u << 29), 0u);  // LM
  EXPECT_NE(e1.edx & (1u << 27), 0u);  // RDTSCP
  EXPECT_NE(e1.edx & (1u << 20), 0u);  // NX
  EXPECT_EQ(m.Query(0x80000008, 0, s).eax & 0xFF, kMaxPhysAddrBits);
  EXPECT_NE(m.Query(0x80000007, 0, s).edx & (1u << 8), 0u);  // invariant TSC
  EXPECT_EQ(m.Query(0xB, 0, s).ebx, 1u);
}

TEST(CpuModelTest, OverrideReplacesALeaf) {
  CpuModel m(CpuModelOptions{}, FakeHost());
  CpuState s;
  m.Override(0x80000002, 0, {1, 2, 3, 4});
  EXPECT_EQ(m.Query(0x80000002, 0, s), (CpuidResult{1, 2, 3, 4}));
}

TEST(CpuModelTest, HostModelIsSane) {
  CpuModel m;
  CpuState s;
  EXPECT_NE(m.Query(1, 0, s).ecx & (1u << 31), 0u);
  EXPECT_TRUE(m.supported_xcr0() & xfeature::kX87);
  EXPECT_GE(m.tsc_hz(), 1000000u);
  EXPECT_LE(m.XsaveStandardSize(m.supported_xcr0()), kXsaveAreaSize);
}

TEST(GuestClockTest, ScalesTimeAndAppliesOffset) {
  ManualClock c(2000000000);  // 2 GHz
  CpuState s;
  EXPECT_EQ(c.ReadTsc(s), 0u);
  c.now_ns += 1000;
  EXPECT_EQ(c.ReadTsc(s), 2000u);
  c.WriteTsc(s, 1000000);
  EXPECT_EQ(c.ReadTsc(s), 1000000u);
  c.now_ns += 500;
  EXPECT_EQ(c.ReadTsc(s), 1001000u);
  EXPECT_EQ(c.NsUntilTsc(s, 1003000), 1000u);
  EXPECT_EQ(c.NsUntilTsc(s, 5), 0u);
}

TEST(GuestClockTest, RealClockAdvances) {
  GuestClock c(1000000000);
  CpuState s;
  uint64_t a = c.ReadTsc(s);
  uint64_t b = a;
  for (int i = 0; i < 1000000 && b == a; ++i) b = c.ReadTsc(s);
  EXPECT_GT(b, a);
}

}  // namespace
}  // namespace rove::test

namespace rove::test {
namespace {

TEST(CpuModelTest, SpeculationControlIsAlwaysAdvertised) {
  HostCpuInfo h = FakeHost();
  auto base = h.cpuid;
  h.cpuid = [base](uint32_t leaf, uint32_t sub) {
    CpuidResult r = base(leaf, sub);
    if (leaf == 7 && sub == 0) r.edx = 0;  // a host that shows none of it
    return r;
  };
  CpuModel m(CpuModelOptions{}, h);
  CpuState s;
  uint32_t edx = m.Query(7, 0, s).edx;
  EXPECT_NE(edx & (1u << 29), 0u);  // ARCH_CAPABILITIES
  EXPECT_NE(edx & (1u << 26), 0u);  // IBRS/IBPB (SPEC_CTRL)
  EXPECT_EQ(edx & (1u << 10), 0u);  // no MD_CLEAR: MDS_NO makes VERW clearing unnecessary
  EXPECT_TRUE(m.has_arch_capabilities());
}

}  // namespace
}  // namespace rove::test

namespace rove::test {
namespace {

TEST(CpuModelTest, VcpusAreCoresOfOnePackage) {
  CpuState s;
  for (uint32_t cpus : {1u, 2u, 3u, 8u}) {
    CpuModelOptions o;
    o.cpu_count = cpus;
    o.apic_id = cpus - 1;
    CpuModel m(o, FakeHost());
    uint32_t shift = 0;
    while ((1u << shift) < cpus) ++shift;
    CpuidResult core = m.Query(0xB, 1, s);
    EXPECT_EQ(core.eax & 0x1F, shift) << cpus;
    EXPECT_EQ(core.ebx & 0xFFFF, cpus);
    EXPECT_EQ((core.ecx >> 8) & 0xFF, 2u);  // level type: core
    EXPECT_EQ(core.edx, cpus - 1);          // x2APIC ID
    CpuidResult smt = m.Query(0xB, 0, s);
    EXPECT_EQ(smt.eax & 0x1F, 0u);  // one thread per core
    EXPECT_EQ(smt.ebx & 0xFFFF, 1u);
    CpuidResult l1 = m.Query(1, 0, s);
    EXPECT_EQ((l1.ebx >> 16) & 0xFF, 1u << shift);  // addressable IDs in the package
    EXPECT_EQ((l1.ebx >> 24), cpus - 1);            // initial APIC ID
    EXPECT_EQ((l1.edx >> 28) & 1, cpus > 1 ? 1u : 0u);
    CpuidResult l4 = m.Query(4, 0, s);
    if (l4.eax & 0x1F) {
      EXPECT_EQ(l4.eax >> 26, (1u << shift) - 1);
    }
  }
}

}  // namespace
}  // namespace rove::test
