// The CPU the guest sees through CPUID: the host's features that rove can run (SSE through
// AVX-512 run natively; XSAVE layout comes from the host), minus what rove does not emulate
// (VMX/SVM, PKU, TSX, PT, SGX, AMX, perf counters, MCA...), plus what rove emulates whatever the
// host has (UMIP, RDPID, RDTSCP, the hypervisor bit and the "rove" hypervisor leaves).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <utility>

#include "rove/translator/cpu_state.h"

namespace rove {

struct CpuidResult {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
  bool operator==(const CpuidResult&) const = default;
};

// Where the model's raw material comes from: the host by default, a fake in tests.
struct HostCpuInfo {
  std::function<CpuidResult(uint32_t leaf, uint32_t subleaf)> cpuid;
  uint64_t xcr0 = 0;  // the host's enabled XCR0 (what the guest may use natively)

  static HostCpuInfo Host();
};

struct CpuModelOptions {
  // Guest TSC frequency in Hz (reported in CPUID 0x15/0x16 and used by the guest clock).
  // 0 = derive from the host's CPUID 0x15/0x16, falling back to 2 GHz. Rounded to 1 MHz.
  uint64_t tsc_hz = 0;
  bool avx512 = true;          // expose AVX-512 (when the host has it)
  bool monitor_mwait = false;  // expose MONITOR/MWAIT (MWAIT then halts until an interrupt)
  bool x2apic = false;         // expose x2APIC (needs the interrupt controller's support)
  bool la57 = false;           // expose 5-level paging (when the host has it)
  uint32_t apic_id = 0;        // initial APIC ID (vCPU index)
  // vCPUs of the machine, described as cores of one package (so Linux sees them as siblings
  // and reuses the boot CPU's delay calibration instead of timing each AP).
  uint32_t cpu_count = 1;
  // Hypervisor CPUID leaves: VMware's ("VMwareVMware", 0x40000010 = TSC and APIC-bus kHz), so
  // guests use the VMware backdoor (vmware_backdoor.h) and trust the TSC; or rove's own.
  bool vmware_interface = true;
  // The local APIC timer's input clock (devices' PcConfig::apic_bus_hz), reported to the guest.
  uint64_t apic_bus_hz = 1'000'000'000;
};

// XSAVE state components.
namespace xfeature {
inline constexpr uint64_t kX87 = 1ull << 0;
inline constexpr uint64_t kSse = 1ull << 1;
inline constexpr uint64_t kAvx = 1ull << 2;
inline constexpr uint64_t kBndregs = 1ull << 3;
inline constexpr uint64_t kBndcsr = 1ull << 4;
inline constexpr uint64_t kOpmask = 1ull << 5;
inline constexpr uint64_t kZmmHi256 = 1ull << 6;
inline constexpr uint64_t kHi16Zmm = 1ull << 7;
inline constexpr uint64_t kPkru = 1ull << 9;
inline constexpr uint64_t kAvx512 = kOpmask | kZmmHi256 | kHi16Zmm;
}  // namespace xfeature

class CpuModel {
 public:
  explicit CpuModel(const CpuModelOptions& options = {},
                    const HostCpuInfo& host = HostCpuInfo::Host());

  // CPUID as the guest sees it; the dynamic bits (OSXSAVE, APIC enable, XSAVE sizes of the
  // current XCR0) come from `state`.
  CpuidResult Query(uint32_t leaf, uint32_t subleaf, const CpuState& state) const;
  // Replaces one leaf (tests, user overrides). subleaf is ignored for leaves without subleaves.
  void Override(uint32_t leaf, uint32_t subleaf, const CpuidResult& value);

  uint64_t tsc_hz() const { return tsc_hz_; }
  uint64_t apic_bus_hz() const { return apic_bus_hz_; }
  bool vmware_interface() const { return vmware_interface_; }
  // XCR0 bits XSETBV accepts (always includes x87).
  uint64_t supported_xcr0() const { return supported_xcr0_; }
  // IA32_XSS bits WRMSR accepts (none: no supervisor state is emulated).
  uint64_t supported_xss() const { return 0; }
  // Offset and size of XSAVE component `i` (>= 2) in the standard format.
  uint32_t xsave_offset(int i) const { return xsave_offset_[i]; }
  uint32_t xsave_size(int i) const { return xsave_size_[i]; }
  // Whether component i is 64-byte aligned in the compacted format.
  bool xsave_align64(int i) const { return xsave_align64_[i]; }
  // Size of the standard-format area for `xcr0` (including the 576-byte legacy+header part).
  uint32_t XsaveStandardSize(uint64_t mask) const;
  // Size of the compacted-format area for `mask`.
  uint32_t XsaveCompactedSize(uint64_t mask) const;
  uint32_t max_phys_addr_bits() const { return max_phys_bits_; }
  // The vendor (the host's): AMD and Intel differ in SYSCALL/SYSENTER availability by mode.
  bool amd() const { return amd_; }

  // Feature bits the emulator consults.
  bool Has(uint32_t leaf, uint32_t subleaf, int reg /*0=eax..3=edx*/, int bit) const;
  bool has_nx() const { return Has(0x80000001, 0, 3, 20); }
  bool has_syscall() const { return Has(0x80000001, 0, 3, 11); }
  bool has_long_mode() const { return Has(0x80000001, 0, 3, 29); }
  bool has_rdtscp() const { return Has(0x80000001, 0, 3, 27); }
  bool has_pcid() const { return Has(1, 0, 2, 17); }
  bool has_xsave() const { return Has(1, 0, 2, 26); }
  bool has_monitor() const { return Has(1, 0, 2, 3); }
  bool has_pse() const { return Has(1, 0, 3, 3); }
  bool has_pae() const { return Has(1, 0, 3, 6); }
  bool has_pge() const { return Has(1, 0, 3, 13); }
  bool has_de() const { return Has(1, 0, 3, 2); }
  bool has_sep() const { return Has(1, 0, 3, 11); }
  bool has_fxsr() const { return Has(1, 0, 3, 24); }
  bool has_vme() const { return Has(1, 0, 3, 1); }
  bool has_fsgsbase() const { return Has(7, 0, 1, 0); }
  bool has_smep() const { return Has(7, 0, 1, 7); }
  bool has_smap() const { return Has(7, 0, 1, 20); }
  bool has_invpcid() const { return Has(7, 0, 1, 10); }
  bool has_umip() const { return Has(7, 0, 2, 2); }
  bool has_la57() const { return Has(7, 0, 2, 16); }
  bool has_rdpid() const { return Has(7, 0, 2, 22); }
  bool has_pku() const { return Has(7, 0, 2, 3); }
  bool has_xsaveopt() const { return Has(0xD, 1, 0, 0); }
  bool has_xsavec() const { return Has(0xD, 1, 0, 1); }
  bool has_xgetbv1() const { return Has(0xD, 1, 0, 2); }
  bool has_xsaves() const { return Has(0xD, 1, 0, 3); }
  bool has_wbnoinvd() const { return Has(0x80000008, 0, 1, 9); }
  bool has_spec_ctrl() const { return Has(7, 0, 3, 26); }
  bool has_arch_capabilities() const { return Has(7, 0, 3, 29); }
  bool has_tsc_deadline() const { return Has(1, 0, 2, 24); }

  // CR4 bits the guest may set (reserved bits and unsupported features fault).
  uint64_t allowed_cr4() const;

 private:
  const CpuidResult* Find(uint32_t leaf, uint32_t subleaf) const;
  static bool HasSubleaves(uint32_t leaf);

  std::map<std::pair<uint32_t, uint32_t>, CpuidResult> leaves_;
  uint32_t max_basic_ = 0;
  uint32_t max_ext_ = 0;
  uint32_t max_hv_ = 0;
  uint64_t tsc_hz_ = 0;
  uint64_t apic_bus_hz_ = 0;
  bool vmware_interface_ = false;
  uint64_t supported_xcr0_ = xfeature::kX87;
  uint32_t xsave_offset_[64] = {};
  uint32_t xsave_size_[64] = {};
  bool xsave_align64_[64] = {};
  uint32_t max_phys_bits_ = 36;
  uint32_t apic_id_ = 0;
  bool amd_ = false;
};

}  // namespace rove
