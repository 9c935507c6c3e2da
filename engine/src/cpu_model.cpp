#include "rove/engine/cpu_model.h"

#include <cpuid.h>

#include <algorithm>
#include <cstring>

#include "rove/mmu/page_walker.h"

namespace rove {
namespace {

constexpr uint32_t Bit(int b) {
  return 1u << b;
}

uint64_t HostXgetbv0() {
  uint32_t c = 0, d = 0, a = 0, b = 0;
  __cpuid_count(1, 0, a, b, c, d);
  if (!(c & Bit(27))) return xfeature::kX87 | xfeature::kSse;  // no OSXSAVE
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t{hi} << 32) | lo;
}

// Leaf 1 ECX: what the guest may see from the host.
constexpr uint32_t kLeaf1EcxAllowed =
    Bit(0) /*SSE3*/ | Bit(1) /*PCLMULQDQ*/ | Bit(9) /*SSSE3*/ | Bit(12) /*FMA*/ | Bit(13) /*CX16*/ |
    Bit(17) /*PCID*/ | Bit(19) /*SSE4.1*/ | Bit(20) /*SSE4.2*/ | Bit(22) /*MOVBE*/ |
    Bit(23) /*POPCNT*/ | Bit(24) /*TSC-deadline*/ | Bit(25) /*AES*/ | Bit(26) /*XSAVE*/ |
    Bit(28) /*AVX*/ | Bit(29) /*F16C*/ | Bit(30) /*RDRAND*/;
// Leaf 1 EDX: no VME (no v8086 extensions), no MCE/MCA, PSN, DS, ACPI, TM, PBE, HTT.
constexpr uint32_t kLeaf1EdxAllowed =
    Bit(0) /*FPU*/ | Bit(2) /*DE*/ | Bit(3) /*PSE*/ | Bit(4) /*TSC*/ | Bit(5) /*MSR*/ |
    Bit(6) /*PAE*/ | Bit(8) /*CX8*/ | Bit(9) /*APIC*/ | Bit(11) /*SEP*/ | Bit(12) /*MTRR*/ |
    Bit(13) /*PGE*/ | Bit(15) /*CMOV*/ | Bit(16) /*PAT*/ | Bit(17) /*PSE36*/ | Bit(19) /*CLFSH*/ |
    Bit(23) /*MMX*/ | Bit(24) /*FXSR*/ | Bit(25) /*SSE*/ | Bit(26) /*SSE2*/ | Bit(27) /*SS*/;
// Leaf 7.0 EBX: no TSC_ADJUST, SGX, HLE, RTM, PQM, MPX, PQE, PT.
constexpr uint32_t kLeaf7EbxAllowed =
    Bit(0) /*FSGSBASE*/ | Bit(3) /*BMI1*/ | Bit(5) /*AVX2*/ | Bit(6) /*FDP_EXCPTN_ONLY*/ |
    Bit(7) /*SMEP*/ | Bit(8) /*BMI2*/ | Bit(9) /*ERMS*/ | Bit(10) /*INVPCID*/ |
    Bit(13) /*FPU CS/DS deprecated*/ | Bit(18) /*RDSEED*/ | Bit(19) /*ADX*/ | Bit(20) /*SMAP*/ |
    Bit(23) /*CLFLUSHOPT*/ | Bit(24) /*CLWB*/ | Bit(29) /*SHA*/;
constexpr uint32_t kLeaf7EbxAvx512 = Bit(16) /*F*/ | Bit(17) /*DQ*/ | Bit(21) /*IFMA*/ |
                                     Bit(26) /*PF*/ | Bit(27) /*ER*/ | Bit(28) /*CD*/ |
                                     Bit(30) /*BW*/ | Bit(31) /*VL*/;
// Leaf 7.0 ECX: no PKU/OSPKE, WAITPKG, CET, TME, KL, ENQCMD, SGX-LC, PKS.
constexpr uint32_t kLeaf7EcxAllowed = Bit(8) /*GFNI*/ | Bit(9) /*VAES*/ | Bit(10) /*VPCLMULQDQ*/ |
                                      Bit(25) /*CLDEMOTE*/ | Bit(27) /*MOVDIRI*/ |
                                      Bit(28) /*MOVDIR64B*/;
constexpr uint32_t kLeaf7EcxAvx512 = Bit(1) /*VBMI*/ | Bit(6) /*VBMI2*/ | Bit(11) /*VNNI*/ |
                                     Bit(12) /*BITALG*/ | Bit(14) /*VPOPCNTDQ*/;
constexpr uint32_t kLeaf7EdxAllowed = Bit(4) /*FSRM*/ | Bit(14) /*SERIALIZE*/ |
                                      Bit(26) /*IBRS/IBPB*/ | Bit(27) /*STIBP*/ | Bit(31) /*SSBD*/;
constexpr uint32_t kLeaf7EdxAvx512 =
    Bit(2) /*4VNNIW*/ | Bit(3) /*4FMAPS*/ | Bit(8) /*VP2INTERSECT*/ | Bit(23) /*FP16*/;
constexpr uint32_t kLeaf71EaxAllowed = Bit(4) /*AVX-VNNI*/;
constexpr uint32_t kLeaf71EaxAvx512 = Bit(5) /*AVX512_BF16*/;
constexpr uint32_t kExt1EcxAllowed = Bit(0) /*LAHF*/ | Bit(5) /*LZCNT*/ | Bit(6) /*SSE4A*/ |
                                     Bit(7) /*MisAlignSse*/ |
                                     Bit(8) /*PREFETCHW*/;  // no XOP/FMA4/TBM
constexpr uint32_t kExt1EdxAllowed = Bit(11) /*SYSCALL*/ | Bit(20) /*NX*/ | Bit(22) /*MMXEXT*/ |
                                     Bit(26) /*1G pages*/ | Bit(29) /*LM*/;
constexpr uint32_t kExt8EbxAllowed = Bit(9) /*WBNOINVD*/ | Bit(12) /*IBPB*/ | Bit(14) /*IBRS*/ |
                                     Bit(15) /*STIBP*/ | Bit(24) /*SSBD*/;

// XSAVE components the translator runs natively and the emulator saves/restores.
constexpr uint64_t kEmulatedXcr0 =
    xfeature::kX87 | xfeature::kSse | xfeature::kAvx | xfeature::kAvx512;

}  // namespace

HostCpuInfo HostCpuInfo::Host() {
  HostCpuInfo h;
  h.cpuid = [](uint32_t leaf, uint32_t subleaf) {
    CpuidResult r;
    __cpuid_count(leaf, subleaf, r.eax, r.ebx, r.ecx, r.edx);
    return r;
  };
  h.xcr0 = HostXgetbv0();
  return h;
}

bool CpuModel::HasSubleaves(uint32_t leaf) {
  return leaf == 4 || leaf == 7 || leaf == 0xB || leaf == 0xD || leaf == 0x1F;
}

CpuModel::CpuModel(const CpuModelOptions& o, const HostCpuInfo& host) : apic_id_(o.apic_id) {
  auto h = [&](uint32_t l, uint32_t s = 0) { return host.cpuid(l, s); };
  CpuidResult l0 = h(0);
  uint32_t host_max = l0.eax;
  CpuidResult e0 = h(0x80000000);
  uint32_t host_ext_max = e0.eax >= 0x80000000 && e0.eax < 0x8000FFFF ? e0.eax : 0x80000000;
  auto hb = [&](uint32_t l, uint32_t s = 0) { return l <= host_max ? h(l, s) : CpuidResult{}; };
  auto he = [&](uint32_t l) { return l <= host_ext_max ? h(l) : CpuidResult{}; };

  // TSC frequency.
  uint64_t hz = o.tsc_hz;
  if (hz == 0) {
    CpuidResult t15 = hb(0x15);
    if (t15.eax && t15.ebx && t15.ecx) hz = uint64_t{t15.ecx} * t15.ebx / t15.eax;
    if (hz == 0) hz = uint64_t{hb(0x16).eax & 0xFFFF} * 1000000;
    if (hz == 0) hz = 2000000000;
  }
  hz = std::max<uint64_t>(1000000, hz / 1000000 * 1000000);
  tsc_hz_ = hz;

  max_basic_ = std::min<uint32_t>(host_max, 0xD);
  max_basic_ = std::max<uint32_t>(max_basic_, 0x16);  // we always provide 0x15/0x16
  leaves_[{0, 0}] = {max_basic_, l0.ebx, l0.ecx, l0.edx};
  char vendor[13] = {};
  std::memcpy(vendor, &l0.ebx, 4);
  std::memcpy(vendor + 4, &l0.edx, 4);
  std::memcpy(vendor + 8, &l0.ecx, 4);
  amd_ = std::strcmp(vendor, "AuthenticAMD") == 0 || std::strcmp(vendor, "HygonGenuine") == 0;

  CpuidResult l1 = hb(1);
  CpuidResult m1;
  m1.eax = l1.eax;
  // Topology: one package of cpu_count single-thread cores; APIC ID = core number.
  const uint32_t cores = std::max<uint32_t>(1, o.cpu_count);
  uint32_t core_shift = 0;
  while ((1u << core_shift) < cores) ++core_shift;
  m1.ebx = (l1.ebx & 0xFFFF) | ((1u << core_shift) << 16) | (o.apic_id << 24);
  m1.ecx = (l1.ecx & kLeaf1EcxAllowed) | Bit(31) /*hypervisor*/;
  if (o.monitor_mwait) m1.ecx |= Bit(3);
  if (o.x2apic) m1.ecx |= l1.ecx & Bit(21);
  m1.edx = l1.edx & kLeaf1EdxAllowed;
  if (cores > 1) m1.edx |= Bit(28);  // HTT: more than one logical processor per package
  // XSAVE needs the emulated layout to fit CpuState::xsave.
  supported_xcr0_ = host.xcr0 & kEmulatedXcr0;
  if (!o.avx512) supported_xcr0_ &= ~xfeature::kAvx512;
  if ((supported_xcr0_ & xfeature::kAvx512) != xfeature::kAvx512)
    supported_xcr0_ &= ~xfeature::kAvx512;
  if (!(supported_xcr0_ & xfeature::kAvx)) supported_xcr0_ &= ~xfeature::kAvx512;
  supported_xcr0_ |= xfeature::kX87;
  if (!(m1.ecx & Bit(26))) supported_xcr0_ = xfeature::kX87 | xfeature::kSse;
  bool avx = (supported_xcr0_ & xfeature::kAvx) != 0;
  bool avx512 = (supported_xcr0_ & xfeature::kAvx512) != 0;
  if (!avx) m1.ecx &= ~(Bit(28) | Bit(12) | Bit(29));
  leaves_[{1, 0}] = m1;

  // Deterministic cache parameters: host's, without multi-core sharing information.
  for (uint32_t s = 0; s < 8; ++s) {
    CpuidResult c = hb(4, s);
    c.eax &= 0x3FFF;
    c.eax |= ((1u << core_shift) - 1) << 26;  // cores per package - 1
    // The last-level cache is shared by the package's cores, the others are per core.
    const uint32_t level = (c.eax >> 5) & 7;
    if (level >= 3) c.eax |= ((1u << core_shift) - 1) << 14;
    leaves_[{4, s}] = c;
    if ((c.eax & 0x1F) == 0) break;
  }
  if (o.monitor_mwait) leaves_[{5, 0}] = {64, 64, 3, 0};
  leaves_[{6, 0}] = {Bit(2) /*ARAT*/, 0, 0, 0};

  CpuidResult l7 = hb(7, 0);
  CpuidResult m7;
  m7.eax = std::min<uint32_t>(l7.eax, 1);
  m7.ebx = l7.ebx & kLeaf7EbxAllowed;
  m7.ecx = (l7.ecx & kLeaf7EcxAllowed) | Bit(2) /*UMIP*/ | Bit(22) /*RDPID*/;
  m7.edx = l7.edx & kLeaf7EdxAllowed;
  // SPEC_CTRL/PRED_CMD and ARCH_CAPABILITIES are emulated MSRs: always present.
  m7.edx |=
      Bit(26) /*IBRS/IBPB*/ | Bit(27) /*STIBP*/ | Bit(29) /*ARCH_CAPABILITIES*/ | Bit(31) /*SSBD*/;
  if (!avx) m7.ebx &= ~Bit(5);
  if (avx512) {
    m7.ebx |= l7.ebx & kLeaf7EbxAvx512;
    m7.ecx |= l7.ecx & kLeaf7EcxAvx512;
    m7.edx |= l7.edx & kLeaf7EdxAvx512;
  }
  if (o.la57) m7.ecx |= l7.ecx & Bit(16);
  leaves_[{7, 0}] = m7;
  if (m7.eax >= 1) {
    CpuidResult l71 = hb(7, 1);
    leaves_[{7, 1}] = {(l71.eax & kLeaf71EaxAllowed) | (avx512 ? l71.eax & kLeaf71EaxAvx512 : 0), 0,
                       0, 0};
    if (!avx) leaves_[{7, 1}].eax &= ~Bit(4);
  }
  // Leaf 0xA: no performance counters. Leaf 0xB: one thread per core, `cores` cores.
  leaves_[{0xB, 0}] = {0, 1, 0x100, o.apic_id};
  leaves_[{0xB, 1}] = {core_shift, cores, 0x201, o.apic_id};

  // XSAVE layout from the host for the components we support.
  xsave_offset_[0] = 0;
  xsave_size_[0] = 160;
  xsave_offset_[1] = 160;
  xsave_size_[1] = 256;
  for (int i = 2; i < 64; ++i) {
    if (!((supported_xcr0_ >> i) & 1)) continue;
    CpuidResult c = hb(0xD, i);
    xsave_size_[i] = c.eax;
    xsave_offset_[i] = c.ebx;
    xsave_align64_[i] = (c.ecx & 2) != 0;
    leaves_[{0xD, static_cast<uint32_t>(i)}] = {c.eax, c.ebx, c.ecx & 2, 0};
    if (c.eax == 0 || c.ebx + c.eax > kXsaveAreaSize) {
      // The host layout does not fit; do not expose the component.
      supported_xcr0_ &= ~(1ull << i);
      leaves_.erase({0xD, static_cast<uint32_t>(i)});
    }
  }
  if ((supported_xcr0_ & xfeature::kAvx512) != xfeature::kAvx512) {
    for (int i = 5; i <= 7; ++i) leaves_.erase({0xD, static_cast<uint32_t>(i)});
    supported_xcr0_ &= ~xfeature::kAvx512;
  }
  // Dynamic parts of 0xD.0 / 0xD.1 are filled in Query.
  CpuidResult d1 = hb(0xD, 1);
  leaves_[{0xD, 0}] = {static_cast<uint32_t>(supported_xcr0_), 0,
                       XsaveStandardSize(supported_xcr0_),
                       static_cast<uint32_t>(supported_xcr0_ >> 32)};
  leaves_[{0xD, 1}] = {d1.eax & 0xF /*XSAVEOPT, XSAVEC, XGETBV1, XSAVES*/, 0, 0, 0};

  // TSC and core crystal: TSC = ecx * ebx / eax.
  leaves_[{0x15, 0}] = {1, static_cast<uint32_t>(tsc_hz_ / 1000000), 1000000, 0};
  uint32_t mhz = static_cast<uint32_t>(tsc_hz_ / 1000000);
  leaves_[{0x16, 0}] = {mhz, mhz, 100, 0};

  // Hypervisor leaves.
  apic_bus_hz_ = o.apic_bus_hz;
  vmware_interface_ = o.vmware_interface;
  CpuidResult hv;
  if (vmware_interface_) {
    max_hv_ = 0x40000010;
    hv.eax = max_hv_;
    std::memcpy(&hv.ebx, "VMwa", 4);
    std::memcpy(&hv.ecx, "reVM", 4);
    std::memcpy(&hv.edx, "ware", 4);
    // Timing leaf: TSC and bus kHz; ECX = 0: hypercalls through the I/O-port backdoor.
    leaves_[{0x40000010, 0}] = {static_cast<uint32_t>(tsc_hz_ / 1000),
                                static_cast<uint32_t>(apic_bus_hz_ / 1000), 0, 0};
  } else {
    max_hv_ = 0x40000001;
    hv.eax = max_hv_;
    std::memcpy(&hv.ebx, "rove", 4);
    std::memcpy(&hv.ecx, "rove", 4);
    std::memcpy(&hv.edx, "rove", 4);
    leaves_[{0x40000001, 0}] = {0, 0, 0, 0};
  }
  leaves_[{0x40000000, 0}] = hv;

  // Extended leaves.
  max_ext_ = std::min<uint32_t>(host_ext_max, 0x80000008);
  max_ext_ = std::max<uint32_t>(max_ext_, 0x80000008);
  leaves_[{0x80000000, 0}] = {max_ext_, e0.ebx, e0.ecx, e0.edx};
  CpuidResult x1 = he(0x80000001);
  leaves_[{0x80000001, 0}] = {x1.eax, 0, x1.ecx & kExt1EcxAllowed,
                              (x1.edx & kExt1EdxAllowed) | Bit(27) /*RDTSCP*/};
  for (uint32_t l = 0x80000002; l <= 0x80000006; ++l) leaves_[{l, 0}] = he(l);
  leaves_[{0x80000007, 0}] = {0, 0, 0, Bit(8) /*invariant TSC*/};
  CpuidResult x8 = he(0x80000008);
  // Guest MAXPHYADDR is the page walker's (reserved-bit checks depend on it).
  max_phys_bits_ = kMaxPhysAddrBits;
  uint32_t linear_bits = (x8.eax >> 8) & 0xFF;
  if (linear_bits == 0) linear_bits = 48;
  // AMD describes the package's cores here (Intel: reserved).
  const uint32_t amd_cores = amd_ ? (core_shift << 12) | (cores - 1) : 0;
  leaves_[{0x80000008, 0}] = {max_phys_bits_ | (linear_bits << 8), x8.ebx & kExt8EbxAllowed,
                              amd_cores, 0};
}

const CpuidResult* CpuModel::Find(uint32_t leaf, uint32_t subleaf) const {
  auto it = leaves_.find({leaf, HasSubleaves(leaf) ? subleaf : 0});
  return it == leaves_.end() ? nullptr : &it->second;
}

void CpuModel::Override(uint32_t leaf, uint32_t subleaf, const CpuidResult& value) {
  leaves_[{leaf, HasSubleaves(leaf) ? subleaf : 0}] = value;
  if (leaf == 0) max_basic_ = value.eax;
  if (leaf == 0x80000000) max_ext_ = value.eax;
}

bool CpuModel::Has(uint32_t leaf, uint32_t subleaf, int reg, int bit) const {
  const CpuidResult* r = Find(leaf, subleaf);
  if (!r) return false;
  uint32_t v = reg == 0 ? r->eax : reg == 1 ? r->ebx : reg == 2 ? r->ecx : r->edx;
  return (v >> bit) & 1;
}

uint32_t CpuModel::XsaveStandardSize(uint64_t mask) const {
  uint32_t size = 576;
  for (int i = 2; i < 64; ++i)
    if ((mask >> i) & 1) size = std::max(size, xsave_offset_[i] + xsave_size_[i]);
  return size;
}

uint32_t CpuModel::XsaveCompactedSize(uint64_t mask) const {
  uint32_t size = 576;
  for (int i = 2; i < 64; ++i) {
    if (!((mask >> i) & 1)) continue;
    if (xsave_align64_[i]) size = (size + 63) & ~63u;
    size += xsave_size_[i];
  }
  return size;
}

uint64_t CpuModel::allowed_cr4() const {
  uint64_t a = cr4::kTsd | cr4::kPse | cr4::kPae | cr4::kMce | cr4::kPge | cr4::kPce |
               cr4::kOsfxsr | cr4::kOsxmmexcpt | cr4::kUmip;
  if (has_de()) a |= cr4::kDe;
  if (has_vme()) a |= cr4::kVme | cr4::kPvi;
  if (has_la57()) a |= cr4::kLa57;
  if (has_fsgsbase()) a |= cr4::kFsgsbase;
  if (has_pcid()) a |= cr4::kPcide;
  if (has_xsave()) a |= cr4::kOsxsave;
  if (has_smep()) a |= cr4::kSmep;
  if (has_smap()) a |= cr4::kSmap;
  if (has_pku()) a |= cr4::kPke;
  return a;
}

CpuidResult CpuModel::Query(uint32_t leaf, uint32_t subleaf, const CpuState& s) const {
  // Out-of-range leaves return the highest basic leaf's data (Intel behaviour).
  bool ext = leaf >= 0x80000000;
  bool hv = leaf >= 0x40000000 && leaf < 0x50000000;
  if ((!ext && !hv && leaf > max_basic_) || (ext && leaf > max_ext_)) {
    leaf = max_basic_;
  }
  if (hv && leaf > max_hv_) return {};
  const CpuidResult* found = Find(leaf, subleaf);
  CpuidResult r = found ? *found : CpuidResult{};
  if (leaf == 0xB && !found) r.ecx = subleaf & 0xFF;
  if (leaf == 1) {
    if (s.cr4 & cr4::kOsxsave) r.ecx |= Bit(27);
    if (!(s.msr.apic_base & (1ull << 11))) r.edx &= ~Bit(9);
  } else if (leaf == 7 && subleaf == 0) {
    if ((s.cr4 & cr4::kPke) && has_pku()) r.ecx |= Bit(4);
  } else if (leaf == 0xD && subleaf == 0) {
    r.ebx = XsaveStandardSize(s.xcr0);
  } else if (leaf == 0xD && subleaf == 1) {
    if (r.eax & Bit(1) || r.eax & Bit(3)) r.ebx = XsaveCompactedSize(s.xcr0 | s.msr.xss);
  }
  return r;
}

}  // namespace rove
