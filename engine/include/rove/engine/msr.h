// Model-specific register numbers the emulator implements (RDMSR/WRMSR). Any other MSR
// raises #GP(0).
#pragma once

#include <cstdint>

namespace rove::msr {

inline constexpr uint32_t kTsc = 0x10;
inline constexpr uint32_t kPlatformId = 0x17;
inline constexpr uint32_t kApicBase = 0x1B;
inline constexpr uint32_t kFeatureControl = 0x3A;
inline constexpr uint32_t kTscAdjust = 0x3B;
inline constexpr uint32_t kSpecCtrl = 0x48;
inline constexpr uint32_t kPredCmd = 0x49;
inline constexpr uint32_t kBiosSignId = 0x8B;
inline constexpr uint32_t kMtrrCap = 0xFE;
inline constexpr uint32_t kArchCapabilities = 0x10A;
inline constexpr uint32_t kSysenterCs = 0x174;
inline constexpr uint32_t kSysenterEsp = 0x175;
inline constexpr uint32_t kSysenterEip = 0x176;
inline constexpr uint32_t kMcgCap = 0x179;
inline constexpr uint32_t kMcgStatus = 0x17A;
inline constexpr uint32_t kMiscEnable = 0x1A0;
inline constexpr uint32_t kMtrrPhysBase0 = 0x200;  // base/mask pairs up to 0x20F
inline constexpr uint32_t kMtrrFix64K00000 = 0x250;
inline constexpr uint32_t kMtrrFix16K80000 = 0x258;
inline constexpr uint32_t kMtrrFix16KA0000 = 0x259;
inline constexpr uint32_t kMtrrFix4KC0000 = 0x268;  // ... 0x26F
inline constexpr uint32_t kPat = 0x277;
inline constexpr uint32_t kMtrrDefType = 0x2FF;
inline constexpr uint32_t kTscDeadline = 0x6E0;
inline constexpr uint32_t kXss = 0xDA0;
inline constexpr uint32_t kEfer = 0xC0000080;
inline constexpr uint32_t kStar = 0xC0000081;
inline constexpr uint32_t kLstar = 0xC0000082;
inline constexpr uint32_t kCstar = 0xC0000083;
inline constexpr uint32_t kSfmask = 0xC0000084;
inline constexpr uint32_t kFsBase = 0xC0000100;
inline constexpr uint32_t kGsBase = 0xC0000101;
inline constexpr uint32_t kKernelGsBase = 0xC0000102;
inline constexpr uint32_t kTscAux = 0xC0000103;

// IA32_MTRRCAP as reported: 8 variable ranges, fixed ranges, write-combining.
inline constexpr uint64_t kMtrrCapValue = 8 | (1u << 8) | (1u << 10);
// IA32_ARCH_CAPABILITIES as reported: not affected by the speculative-execution bugs the guest
// kernel would otherwise mitigate (RDCL_NO, IBRS_ALL, SKIP_L1DFL_VMENTRY, SSB_NO, MDS_NO,
// PSCHANGE_MC_NO, TAA_NO, SBDR_SSDP_NO, FBSDP_NO, PSDP_NO, BHI_NO, PBRSB_NO, GDS_NO, RFDS_NO,
// ITS_NO). Under binary translation the guest's page tables are not the hardware's and its
// privilege levels are enforced in software, so guest-side mitigations (PTI, VERW buffer
// clearing, retpolines) protect nothing and would only cost emulation exits.
inline constexpr uint64_t kArchCapabilitiesValue =
    (1ull << 0) | (1ull << 1) | (1ull << 3) | (1ull << 4) | (1ull << 5) | (1ull << 6) |
    (1ull << 8) | (1ull << 13) | (1ull << 14) | (1ull << 15) | (1ull << 20) | (1ull << 24) |
    (1ull << 26) | (1ull << 27) | (1ull << 62);

}  // namespace rove::msr
