// Architectural state of one x86-64 vCPU, as the guest sees it.
//
// This is the state the C++ side (exception delivery, system-instruction emulation, snapshots)
// reads and writes. While translated code runs, the general-purpose registers, the arithmetic
// flags and the vector registers live in the host registers; they are written back here on
// every exit from translated code.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rove {

enum Gpr : uint8_t {
  kRax = 0,
  kRcx,
  kRdx,
  kRbx,
  kRsp,
  kRbp,
  kRsi,
  kRdi,
  kR8,
  kR9,
  kR10,
  kR11,
  kR12,
  kR13,
  kR14,
  kR15,
  kGprCount
};

// Hardware order, as in the ModRM sreg field.
enum SegReg : uint8_t { kEs = 0, kCs, kSs, kDs, kFs, kGs, kSegCount };

namespace rflags {
inline constexpr uint64_t kCf = 1ull << 0;
inline constexpr uint64_t kFixed1 = 1ull << 1;
inline constexpr uint64_t kPf = 1ull << 2;
inline constexpr uint64_t kAf = 1ull << 4;
inline constexpr uint64_t kZf = 1ull << 6;
inline constexpr uint64_t kSf = 1ull << 7;
inline constexpr uint64_t kTf = 1ull << 8;
inline constexpr uint64_t kIf = 1ull << 9;
inline constexpr uint64_t kDf = 1ull << 10;
inline constexpr uint64_t kOf = 1ull << 11;
inline constexpr uint64_t kIoplMask = 3ull << 12;
inline constexpr int kIoplShift = 12;
inline constexpr uint64_t kNt = 1ull << 14;
inline constexpr uint64_t kRf = 1ull << 16;
inline constexpr uint64_t kVm = 1ull << 17;
inline constexpr uint64_t kAc = 1ull << 18;
inline constexpr uint64_t kVif = 1ull << 19;
inline constexpr uint64_t kVip = 1ull << 20;
inline constexpr uint64_t kId = 1ull << 21;
// Flags that translated code keeps in the host RFLAGS register.
inline constexpr uint64_t kArith = kCf | kPf | kAf | kZf | kSf | kOf;
inline constexpr uint64_t kHostLive = kArith | kDf;
// Every bit software can ever see set.
inline constexpr uint64_t kDefined =
    kArith | kFixed1 | kTf | kIf | kDf | kIoplMask | kNt | kRf | kVm | kAc | kVif | kVip | kId;
}  // namespace rflags

namespace cr0 {
inline constexpr uint64_t kPe = 1ull << 0;
inline constexpr uint64_t kMp = 1ull << 1;
inline constexpr uint64_t kEm = 1ull << 2;
inline constexpr uint64_t kTs = 1ull << 3;
inline constexpr uint64_t kEt = 1ull << 4;
inline constexpr uint64_t kNe = 1ull << 5;
inline constexpr uint64_t kWp = 1ull << 16;
inline constexpr uint64_t kAm = 1ull << 18;
inline constexpr uint64_t kNw = 1ull << 29;
inline constexpr uint64_t kCd = 1ull << 30;
inline constexpr uint64_t kPg = 1ull << 31;
}  // namespace cr0

namespace cr4 {
inline constexpr uint64_t kVme = 1ull << 0;
inline constexpr uint64_t kPvi = 1ull << 1;
inline constexpr uint64_t kTsd = 1ull << 2;
inline constexpr uint64_t kDe = 1ull << 3;
inline constexpr uint64_t kPse = 1ull << 4;
inline constexpr uint64_t kPae = 1ull << 5;
inline constexpr uint64_t kMce = 1ull << 6;
inline constexpr uint64_t kPge = 1ull << 7;
inline constexpr uint64_t kPce = 1ull << 8;
inline constexpr uint64_t kOsfxsr = 1ull << 9;
inline constexpr uint64_t kOsxmmexcpt = 1ull << 10;
inline constexpr uint64_t kUmip = 1ull << 11;
inline constexpr uint64_t kLa57 = 1ull << 12;
inline constexpr uint64_t kVmxe = 1ull << 13;
inline constexpr uint64_t kFsgsbase = 1ull << 16;
inline constexpr uint64_t kPcide = 1ull << 17;
inline constexpr uint64_t kOsxsave = 1ull << 18;
inline constexpr uint64_t kSmep = 1ull << 20;
inline constexpr uint64_t kSmap = 1ull << 21;
inline constexpr uint64_t kPke = 1ull << 22;
}  // namespace cr4

namespace efer {
inline constexpr uint64_t kSce = 1ull << 0;
inline constexpr uint64_t kLme = 1ull << 8;
inline constexpr uint64_t kLma = 1ull << 10;
inline constexpr uint64_t kNxe = 1ull << 11;
inline constexpr uint64_t kFfxsr = 1ull << 14;
}  // namespace efer

// Exception vectors.
enum Vector : uint8_t {
  kDe = 0,
  kDb = 1,
  kNmi = 2,
  kBp = 3,
  kOf = 4,
  kBr = 5,
  kUd = 6,
  kNm = 7,
  kDf = 8,
  kTs = 10,
  kNp = 11,
  kSsFault = 12,
  kGp = 13,
  kPf = 14,
  kMf = 16,
  kAc = 17,
  kMc = 18,
  kXm = 19,
  kVe = 20,
  kCp = 21
};

// Segment descriptor attributes in the VMX "access rights" layout:
// bits 0-3 type, 4 S, 5-6 DPL, 7 P, 12 AVL, 13 L, 14 D/B, 15 G, 16 unusable.
namespace seg_attr {
inline constexpr uint32_t kTypeMask = 0xF;
inline constexpr uint32_t kTypeAccessed = 1u << 0;
inline constexpr uint32_t kTypeWritable = 1u << 1;    // data
inline constexpr uint32_t kTypeReadable = 1u << 1;    // code
inline constexpr uint32_t kTypeExpandDown = 1u << 2;  // data
inline constexpr uint32_t kTypeConforming = 1u << 2;  // code
inline constexpr uint32_t kTypeCode = 1u << 3;
inline constexpr uint32_t kS = 1u << 4;
inline constexpr int kDplShift = 5;
inline constexpr uint32_t kDplMask = 3u << 5;
inline constexpr uint32_t kP = 1u << 7;
inline constexpr uint32_t kAvl = 1u << 12;
inline constexpr uint32_t kL = 1u << 13;
inline constexpr uint32_t kDb = 1u << 14;
inline constexpr uint32_t kG = 1u << 15;
inline constexpr uint32_t kUnusable = 1u << 16;
}  // namespace seg_attr

// A segment register with its hidden descriptor cache. `limit` is the byte-granular limit
// (already scaled by G).
struct SegmentCache {
  uint64_t base = 0;
  uint32_t limit = 0xFFFF;
  uint32_t attr = seg_attr::kP | seg_attr::kS | 0x3;  // present, data, read/write, accessed
  uint16_t selector = 0;
  uint16_t pad_[3] = {};

  uint8_t dpl() const { return (attr >> seg_attr::kDplShift) & 3; }
};

struct DescriptorTable {
  uint64_t base = 0;
  uint32_t limit = 0xFFFF;
  uint32_t pad_ = 0;
};

// Model-specific registers a Linux kernel uses; the rest are handled by the MSR model.
struct MsrState {
  uint64_t star = 0, lstar = 0, cstar = 0, sfmask = 0;
  uint64_t kernel_gs_base = 0;
  uint64_t sysenter_cs = 0, sysenter_esp = 0, sysenter_eip = 0;
  uint64_t tsc_offset = 0;  // guest TSC = host-time-derived TSC + tsc_offset
  uint64_t tsc_aux = 0;
  uint64_t apic_base = 0xFEE00000ull | (1ull << 11) | (1ull << 8);  // enabled, BSP
  uint64_t pat = 0x0007040600070406ull;
  uint64_t misc_enable = 1;  // fast strings
  uint64_t spec_ctrl = 0;
  uint64_t mtrr_def_type = 0;
  uint64_t mtrr_fixed[11] = {};
  uint64_t mtrr_var[16] = {};  // base/mask pairs for 8 variable ranges
  uint64_t tsc_deadline = 0;
  uint64_t feature_control = 0;
  uint64_t xss = 0;
};

// Size of the guest's extended state save area; large enough for x87, SSE, AVX, AVX-512,
// PKRU in the standard (non-compacted) format.
inline constexpr size_t kXsaveAreaSize = 4096;

struct alignas(64) CpuState {
  uint64_t gpr[kGprCount] = {};
  uint64_t rip = 0xFFF0;
  uint64_t rflags = rflags::kFixed1;

  SegmentCache seg[kSegCount];
  SegmentCache ldtr;
  SegmentCache tr;
  DescriptorTable gdtr;
  DescriptorTable idtr;

  uint64_t cr0 = cr0::kEt | cr0::kNw | cr0::kCd;
  uint64_t cr2 = 0;
  uint64_t cr3 = 0;
  uint64_t cr4 = 0;
  uint64_t cr8 = 0;
  uint64_t dr[8] = {0, 0, 0, 0, 0, 0, 0xFFFF0FF0, 0x400};
  uint64_t efer = 0;
  uint64_t xcr0 = 1;  // x87 only at reset
  MsrState msr;

  // Blocks maskable interrupts for one instruction after STI / MOV SS / POP SS.
  bool interrupt_shadow = false;
  bool halted = false;
  uint8_t pad_[6] = {};

  // x87/SSE/AVX/AVX-512 state in XSAVE standard format; valid outside translated code.
  alignas(64) uint8_t xsave[kXsaveAreaSize] = {};

  int cpl() const { return seg[kCs].dpl(); }
  bool long_mode_active() const { return (efer & efer::kLma) != 0; }
  bool protected_mode() const { return (cr0 & cr0::kPe) != 0; }
  bool v86_mode() const { return (rflags & rflags::kVm) != 0; }
  // 64-bit code segment in long mode.
  bool code64() const { return long_mode_active() && (seg[kCs].attr & seg_attr::kL); }
  // Default operand/address size of the code segment in bits: 16, 32 or 64.
  int code_bits() const {
    if (code64()) return 64;
    if (!protected_mode() || v86_mode()) return 16;
    return (seg[kCs].attr & seg_attr::kDb) ? 32 : 16;
  }
  // Stack pointer width in bits.
  int stack_bits() const {
    if (code64()) return 64;
    if (!protected_mode() || v86_mode()) return 16;
    return (seg[kSs].attr & seg_attr::kDb) ? 32 : 16;
  }
};

// Puts the state into the architectural power-on/INIT state (real mode at F000:FFF0).
void ResetCpuState(CpuState& state);

}  // namespace rove
