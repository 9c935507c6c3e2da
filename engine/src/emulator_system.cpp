// Control and debug registers, MSRs, CPUID, time stamp, XCR0 and the XSAVE family, TLB
// maintenance, SYSCALL/SYSRET/SYSENTER/SYSEXIT/SWAPGS and FS/GS base instructions.
#include <cstring>
#include <utility>
#include <vector>

#include "emulator_impl.h"
#include "rove/engine/msr.h"

namespace rove {

// ----------------------------------------------------------------------------------------------
// MOV CRn

void SystemEmulator::Impl::DoMovCr() {
  if (V86()) GP(0);
  bool to_cr = op[0].type == ZYDIS_OPERAND_TYPE_REGISTER && op[0].reg.value >= ZYDIS_REGISTER_CR0 &&
               op[0].reg.value <= ZYDIS_REGISTER_CR15;
  ZydisRegister cr = to_cr ? op[0].reg.value : op[1].reg.value;
  int n = cr - ZYDIS_REGISTER_CR0;
  if (n == 1 || (n >= 5 && n != 8) || (n == 8 && !Mode64())) UD();
  RequireCpl0();
  if (!to_cr) {
    uint64_t cr8 = platform ? platform->ReadCr8() : s.cr8;
    uint64_t v = n == 0 ? s.cr0 : n == 2 ? s.cr2 : n == 3 ? s.cr3 : n == 4 ? s.cr4 : cr8;
    if (!Mode64()) v &= 0xFFFFFFFF;
    SetReg(op[0].reg.value, v);
    return;
  }
  uint64_t v = GetReg(op[1].reg.value);
  switch (n) {
    case 0:
      WriteCr0(v);
      break;
    case 2:
      s.cr2 = v;
      break;
    case 3:
      WriteCr3(v);
      break;
    case 4:
      WriteCr4(v);
      break;
    case 8:
      WriteCr8(v);
      break;
  }
}

void SystemEmulator::Impl::WriteCr0(uint64_t v) {
  if (Mode64() && (v >> 32)) GP(0);
  v &= 0xFFFFFFFF;
  constexpr uint64_t kValid = cr0::kPe | cr0::kMp | cr0::kEm | cr0::kTs | cr0::kEt | cr0::kNe |
                              cr0::kWp | cr0::kAm | cr0::kNw | cr0::kCd | cr0::kPg;
  v = (v & kValid) | cr0::kEt;
  if ((v & cr0::kPg) && !(v & cr0::kPe)) GP(0);
  if ((v & cr0::kNw) && !(v & cr0::kCd)) GP(0);
  uint64_t old = s.cr0;
  bool enabling_pg = (v & cr0::kPg) && !(old & cr0::kPg);
  bool disabling_pg = !(v & cr0::kPg) && (old & cr0::kPg);
  if (enabling_pg && (s.efer & efer::kLme)) {
    if (!(s.cr4 & cr4::kPae)) GP(0);
    if (s.seg[kCs].attr & seg_attr::kL) GP(0);
    uint32_t tr_type = s.tr.attr & seg_attr::kTypeMask;
    if (tr_type == sys_type::kTss16Avail || tr_type == sys_type::kTss16Busy) GP(0);
  }
  if (disabling_pg && Mode64()) GP(0);
  if (disabling_pg && (s.cr4 & cr4::kPcide)) GP(0);
  s.cr0 = v;
  if (enabling_pg && (s.efer & efer::kLme)) s.efer |= efer::kLma;
  if (disabling_pg) s.efer &= ~efer::kLma;
  constexpr uint64_t kPagingBits = cr0::kPg | cr0::kWp | cr0::kCd | cr0::kPe;
  if ((old ^ v) & kPagingBits) tc.FlushTlb(true);
  constexpr uint64_t kTranslationBits =
      cr0::kPe | cr0::kPg | cr0::kTs | cr0::kEm | cr0::kMp | cr0::kNe | cr0::kAm;
  if ((old ^ v) & kTranslationBits) tc.FlushTranslations();
}

void SystemEmulator::Impl::WriteCr3(uint64_t v) {
  bool no_flush = false;
  if (s.cr4 & cr4::kPcide) {
    no_flush = (v >> 63) & 1;
    v &= ~(1ull << 63);
  }
  if (s.long_mode_active()) {
    if (v >> model.max_phys_addr_bits()) GP(0);
  } else {
    v &= 0xFFFFFFFF;
  }
  s.cr3 = v;
  // The soft TLB is not tagged with PCIDs, so the no-flush hint cannot keep other address
  // spaces' entries apart: every CR3 write drops the non-global entries.
  (void)no_flush;
  tc.FlushTlb(false);
}

void SystemEmulator::Impl::WriteCr4(uint64_t v) {
  if (v & ~model.allowed_cr4()) GP(0);
  uint64_t old = s.cr4;
  if (s.long_mode_active()) {
    if (!(v & cr4::kPae)) GP(0);
    if ((v ^ old) & cr4::kLa57) GP(0);
  }
  if ((v & cr4::kPcide) && !(old & cr4::kPcide)) {
    if (!s.long_mode_active() || (s.cr3 & 0xFFF)) GP(0);
  }
  s.cr4 = v;
  constexpr uint64_t kPagingBits = cr4::kPse | cr4::kPae | cr4::kPge | cr4::kPcide | cr4::kSmep |
                                   cr4::kSmap | cr4::kLa57 | cr4::kPke;
  if ((old ^ v) & kPagingBits) tc.FlushTlb(true);
  if ((old ^ v) & ~kPagingBits) tc.FlushTranslations();
}

void SystemEmulator::Impl::WriteCr8(uint64_t v) {
  if (v >> 4) GP(0);
  s.cr8 = v;
  if (platform) platform->WriteCr8(v);
}

// ----------------------------------------------------------------------------------------------
// MOV DRn

void SystemEmulator::Impl::DoMovDr() {
  if (V86()) GP(0);
  bool to_dr = op[0].type == ZYDIS_OPERAND_TYPE_REGISTER && op[0].reg.value >= ZYDIS_REGISTER_DR0 &&
               op[0].reg.value <= ZYDIS_REGISTER_DR15;
  ZydisRegister dr = to_dr ? op[0].reg.value : op[1].reg.value;
  int n = dr - ZYDIS_REGISTER_DR0;
  if (n > 7) UD();
  RequireCpl0();
  if ((n == 4 || n == 5) && (s.cr4 & cr4::kDe)) UD();
  if (n == 4) n = 6;
  if (n == 5) n = 7;
  if (s.dr[7] & (1ull << 13)) {  // GD: general detect
    s.dr[6] |= 1ull << 13;       // BD
    s.dr[7] &= ~(1ull << 13);
    RaiseNoError(kDb);
  }
  if (!to_dr) {
    uint64_t v = s.dr[n];
    if (!Mode64()) v &= 0xFFFFFFFF;
    SetReg(op[0].reg.value, v);
    return;
  }
  uint64_t v = GetReg(op[1].reg.value);
  if (!Mode64()) v &= 0xFFFFFFFF;
  if (n == 6 || n == 7) {
    if (v >> 32) GP(0);
  }
  if (n == 6) v = (v | 0xFFFF0FF0ull) & ~(1ull << 12);
  if (n == 7) v = (v | 0x400) & ~((1ull << 12) | (1ull << 14) | (1ull << 15));
  s.dr[n] = v;
}

// ----------------------------------------------------------------------------------------------
// CPUID, TSC

void SystemEmulator::Impl::DoCpuid() {
  CpuidResult r =
      model.Query(static_cast<uint32_t>(s.gpr[kRax]), static_cast<uint32_t>(s.gpr[kRcx]), s);
  s.gpr[kRax] = r.eax;
  s.gpr[kRbx] = r.ebx;
  s.gpr[kRcx] = r.ecx;
  s.gpr[kRdx] = r.edx;
}

// ----------------------------------------------------------------------------------------------
// MSRs

namespace {
bool ValidMemType(uint8_t t, bool pat) {
  return t == 0 || t == 1 || t == 4 || t == 5 || t == 6 || (pat && t == 7);
}
bool ValidTypeBytes(uint64_t v, bool pat) {
  for (int i = 0; i < 8; ++i)
    if (!ValidMemType(static_cast<uint8_t>(v >> (i * 8)), pat)) return false;
  return true;
}
int FixedMtrrIndex(uint32_t index) {
  if (index == msr::kMtrrFix64K00000) return 0;
  if (index == msr::kMtrrFix16K80000) return 1;
  if (index == msr::kMtrrFix16KA0000) return 2;
  if (index >= msr::kMtrrFix4KC0000 && index <= msr::kMtrrFix4KC0000 + 7)
    return 3 + static_cast<int>(index - msr::kMtrrFix4KC0000);
  return -1;
}
}  // namespace

bool SystemEmulator::Impl::ReadMsr(uint32_t index, uint64_t* value) {
  if (platform) {
    bool gp = false;
    if (auto v = platform->ReadMsr(index, gp)) {
      *value = *v;
      return !gp;
    }
    if (gp) return false;
  }
  MsrState& m = s.msr;
  int fixed = FixedMtrrIndex(index);
  if (fixed >= 0) {
    *value = m.mtrr_fixed[fixed];
    return true;
  }
  if (index >= msr::kMtrrPhysBase0 && index < msr::kMtrrPhysBase0 + 16) {
    *value = m.mtrr_var[index - msr::kMtrrPhysBase0];
    return true;
  }
  switch (index) {
    case msr::kTsc:
      *value = clock.ReadTsc(s);
      return true;
    case msr::kPlatformId:
      *value = 0;
      return true;
    case msr::kApicBase:
      *value = m.apic_base;
      return true;
    case msr::kFeatureControl:
      *value = m.feature_control;
      return true;
    case msr::kSpecCtrl:
      if (!model.has_spec_ctrl()) return false;
      *value = m.spec_ctrl;
      return true;
    case msr::kBiosSignId:
      *value = 0;
      return true;
    case msr::kMtrrCap:
      *value = msr::kMtrrCapValue;
      return true;
    case msr::kArchCapabilities:
      if (!model.has_arch_capabilities()) return false;
      *value = msr::kArchCapabilitiesValue;
      return true;
    case msr::kSysenterCs:
      *value = m.sysenter_cs;
      return true;
    case msr::kSysenterEsp:
      *value = m.sysenter_esp;
      return true;
    case msr::kSysenterEip:
      *value = m.sysenter_eip;
      return true;
    case msr::kMiscEnable:
      *value = m.misc_enable;
      return true;
    case msr::kPat:
      *value = m.pat;
      return true;
    case msr::kMtrrDefType:
      *value = m.mtrr_def_type;
      return true;
    case msr::kTscDeadline:
      if (!model.has_tsc_deadline()) return false;
      *value = m.tsc_deadline;
      return true;
    case msr::kXss:
      if (!model.has_xsaves()) return false;
      *value = m.xss;
      return true;
    case msr::kEfer:
      *value = s.efer;
      return true;
    case msr::kStar:
      *value = m.star;
      return true;
    case msr::kLstar:
      *value = m.lstar;
      return true;
    case msr::kCstar:
      *value = m.cstar;
      return true;
    case msr::kSfmask:
      *value = m.sfmask;
      return true;
    case msr::kFsBase:
      *value = s.seg[kFs].base;
      return true;
    case msr::kGsBase:
      *value = s.seg[kGs].base;
      return true;
    case msr::kKernelGsBase:
      *value = m.kernel_gs_base;
      return true;
    case msr::kTscAux:
      if (!model.has_rdtscp() && !model.has_rdpid()) return false;
      *value = m.tsc_aux;
      return true;
    default:
      return false;
  }
}

void SystemEmulator::Impl::WriteEfer(uint64_t v) {
  uint64_t allowed = efer::kSce | efer::kLme | efer::kLma;
  if (model.has_nx()) allowed |= efer::kNxe;
  if (v & ~allowed) GP(0);
  if (!model.has_long_mode() && (v & efer::kLme)) GP(0);
  if ((s.cr0 & cr0::kPg) && ((v ^ s.efer) & efer::kLme)) GP(0);
  uint64_t n = (v & ~efer::kLma) | (s.efer & efer::kLma);
  uint64_t old = s.efer;
  s.efer = n;
  if ((old ^ n) & efer::kNxe) tc.FlushTlb(true);
}

bool SystemEmulator::Impl::WriteMsr(uint32_t index, uint64_t v) {
  if (platform) {
    bool gp = false;
    if (platform->WriteMsr(index, v, gp)) return !gp;
    if (gp) return false;
  }
  MsrState& m = s.msr;
  uint64_t phys_reserved = ~((1ull << model.max_phys_addr_bits()) - 1);
  int fixed = FixedMtrrIndex(index);
  if (fixed >= 0) {
    if (!ValidTypeBytes(v, false)) return false;
    m.mtrr_fixed[fixed] = v;
    return true;
  }
  if (index >= msr::kMtrrPhysBase0 && index < msr::kMtrrPhysBase0 + 16) {
    bool is_mask = (index - msr::kMtrrPhysBase0) & 1;
    if (v & phys_reserved) return false;
    if (is_mask ? (v & 0x7FF) != 0 : ((v & 0xF00) != 0 || !ValidMemType(v & 0xFF, false)))
      return false;
    m.mtrr_var[index - msr::kMtrrPhysBase0] = v;
    return true;
  }
  auto canonical = [&](uint64_t a) { return Canonical(a); };
  switch (index) {
    case msr::kTsc:
      clock.WriteTsc(s, v);
      return true;
    case msr::kApicBase: {
      uint64_t reserved = 0xFF | (1ull << 9) | phys_reserved;
      if (!model.Has(1, 0, 2, 21)) reserved |= 1ull << 10;  // x2APIC
      if (v & reserved) return false;
      m.apic_base = (v & ~(1ull << 8)) | (m.apic_base & (1ull << 8));
      return true;
    }
    case msr::kFeatureControl:
      if (m.feature_control & 1) return false;  // locked
      if (v & ~1ull) return false;              // no VMX/SMX/SGX enables
      m.feature_control = v;
      return true;
    case msr::kSpecCtrl:
      if (!model.has_spec_ctrl() || (v & ~7ull)) return false;
      m.spec_ctrl = v;
      return true;
    case msr::kPredCmd:
      if (!model.has_spec_ctrl() || (v & ~1ull)) return false;
      return true;
    case msr::kBiosSignId:
      return true;
    case msr::kSysenterCs:
      m.sysenter_cs = v & 0xFFFF;
      return true;
    case msr::kSysenterEsp:
      if (!canonical(v)) return false;
      m.sysenter_esp = v;
      return true;
    case msr::kSysenterEip:
      if (!canonical(v)) return false;
      m.sysenter_eip = v;
      return true;
    case msr::kMiscEnable:
      m.misc_enable = v;
      return true;
    case msr::kPat:
      if (!ValidTypeBytes(v, true)) return false;
      m.pat = v;
      return true;
    case msr::kMtrrDefType:
      if ((v & ~0xCFFull) || !ValidMemType(v & 0xFF, false)) return false;
      m.mtrr_def_type = v;
      return true;
    case msr::kTscDeadline:
      if (!model.has_tsc_deadline()) return false;
      m.tsc_deadline = v;
      return true;
    case msr::kXss:
      if (!model.has_xsaves() || (v & ~model.supported_xss())) return false;
      m.xss = v;
      return true;
    case msr::kEfer:
      WriteEfer(v);
      return true;
    case msr::kStar:
      m.star = v;
      return true;
    case msr::kLstar:
      if (!canonical(v)) return false;
      m.lstar = v;
      return true;
    case msr::kCstar:
      if (!canonical(v)) return false;
      m.cstar = v;
      return true;
    case msr::kSfmask:
      m.sfmask = v & 0xFFFFFFFF;
      return true;
    case msr::kFsBase:
      if (!canonical(v)) return false;
      s.seg[kFs].base = v;
      return true;
    case msr::kGsBase:
      if (!canonical(v)) return false;
      s.seg[kGs].base = v;
      return true;
    case msr::kKernelGsBase:
      if (!canonical(v)) return false;
      m.kernel_gs_base = v;
      return true;
    case msr::kTscAux:
      if ((!model.has_rdtscp() && !model.has_rdpid()) || (v >> 32)) return false;
      m.tsc_aux = v;
      return true;
    default:
      return false;
  }
}

void SystemEmulator::Impl::DoRdmsr() {
  if (V86()) GP(0);
  RequireCpl0();
  uint64_t v;
  if (!ReadMsr(static_cast<uint32_t>(s.gpr[kRcx]), &v)) GP(0);
  s.gpr[kRax] = v & 0xFFFFFFFF;
  s.gpr[kRdx] = v >> 32;
}

void SystemEmulator::Impl::DoWrmsr() {
  if (V86()) GP(0);
  RequireCpl0();
  uint64_t v = (s.gpr[kRdx] << 32) | (s.gpr[kRax] & 0xFFFFFFFF);
  if (!WriteMsr(static_cast<uint32_t>(s.gpr[kRcx]), v)) GP(0);
}

// ----------------------------------------------------------------------------------------------
// XCR0

void SystemEmulator::Impl::DoXgetbv() {
  if (!(s.cr4 & cr4::kOsxsave)) UD();
  uint32_t idx = static_cast<uint32_t>(s.gpr[kRcx]);
  uint64_t v;
  if (idx == 0) {
    v = s.xcr0;
  } else if (idx == 1 && model.has_xgetbv1()) {
    v = s.xcr0;  // XINUSE: report every enabled component as possibly in use
  } else {
    GP(0);
  }
  s.gpr[kRax] = v & 0xFFFFFFFF;
  s.gpr[kRdx] = v >> 32;
}

void SystemEmulator::Impl::DoXsetbv() {
  if (!(s.cr4 & cr4::kOsxsave)) UD();
  if (V86()) GP(0);
  RequireCpl0();
  if (static_cast<uint32_t>(s.gpr[kRcx]) != 0) GP(0);
  uint64_t v = (s.gpr[kRdx] << 32) | (s.gpr[kRax] & 0xFFFFFFFF);
  if (!(v & xfeature::kX87)) GP(0);
  if (v & ~model.supported_xcr0()) GP(0);
  if ((v & xfeature::kAvx) && !(v & xfeature::kSse)) GP(0);
  uint64_t avx512 = v & xfeature::kAvx512;
  if (avx512 && (avx512 != xfeature::kAvx512 || !(v & xfeature::kAvx))) GP(0);
  if (v != s.xcr0) {
    s.xcr0 = v;
    tc.FlushTranslations();
  }
}

// ----------------------------------------------------------------------------------------------
// XSAVE family. CpuState::xsave is a standard-format area (legacy region, header, components
// at the host's standard offsets).

namespace {
constexpr uint32_t kHeader = 512;
constexpr uint16_t kFcwInit = 0x037F;

uint64_t AreaXstateBv(const uint8_t* area) {
  uint64_t v;
  std::memcpy(&v, area + kHeader, 8);
  return v;
}
void SetAreaXstateBv(uint8_t* area, uint64_t v) {
  std::memcpy(area + kHeader, &v, 8);
}
}  // namespace

void SystemEmulator::Impl::DoXsaveFamily() {
  ZydisMnemonic m = in.mnemonic;
  bool fx = m == ZYDIS_MNEMONIC_FXSAVE || m == ZYDIS_MNEMONIC_FXSAVE64 ||
            m == ZYDIS_MNEMONIC_FXRSTOR || m == ZYDIS_MNEMONIC_FXRSTOR64;
  bool restore = m == ZYDIS_MNEMONIC_FXRSTOR || m == ZYDIS_MNEMONIC_FXRSTOR64 ||
                 m == ZYDIS_MNEMONIC_XRSTOR || m == ZYDIS_MNEMONIC_XRSTOR64 ||
                 m == ZYDIS_MNEMONIC_XRSTORS || m == ZYDIS_MNEMONIC_XRSTORS64;
  bool supervisor = m == ZYDIS_MNEMONIC_XSAVES || m == ZYDIS_MNEMONIC_XSAVES64 ||
                    m == ZYDIS_MNEMONIC_XRSTORS || m == ZYDIS_MNEMONIC_XRSTORS64;
  bool compact_save = m == ZYDIS_MNEMONIC_XSAVEC || m == ZYDIS_MNEMONIC_XSAVEC64 ||
                      m == ZYDIS_MNEMONIC_XSAVES || m == ZYDIS_MNEMONIC_XSAVES64;
  if (!OpIsMem(0)) UD();
  uint8_t* area = s.xsave;
  uint32_t mxcsr_mask;
  std::memcpy(&mxcsr_mask, area + 28, 4);
  if (mxcsr_mask == 0) mxcsr_mask = 0xFFBF;
  SegReg sr = OperandSeg(op[0]);
  uint64_t ea = EffectiveAddress(op[0]);

  if (fx) {
    if (!model.has_fxsr()) UD();
    if (s.cr0 & cr0::kEm) UD();
    if (s.cr0 & cr0::kTs) RaiseNoError(kNm);
    uint64_t a = SegLinear(sr, ea, 512, restore ? MemAccess::kRead : MemAccess::kWrite);
    if (a & 15) GP(0);
    int nxmm = Mode64() ? 16 : 8;
    uint64_t bv = AreaXstateBv(area);
    if (!restore) {
      uint8_t buf[512];
      std::memset(buf, 0, sizeof(buf));
      LinRead(a, buf, 512);  // keep the bytes FXSAVE does not write
      if (bv & xfeature::kX87) {
        std::memcpy(buf, area, 160);
      } else {
        std::memset(buf, 0, 160);
        uint16_t fcw = kFcwInit;
        std::memcpy(buf, &fcw, 2);
      }
      std::memcpy(buf + 24, area + 24, 8);  // MXCSR, MXCSR_MASK
      std::memcpy(buf + 28, &mxcsr_mask, 4);
      if (s.cr4 & cr4::kOsfxsr) {
        if (bv & xfeature::kSse) {
          std::memcpy(buf + 160, area + 160, 16 * nxmm);
        } else {
          std::memset(buf + 160, 0, 16 * nxmm);
        }
      }
      LinWrite(a, buf, 464);
    } else {
      uint8_t buf[512];
      LinRead(a, buf, 512);
      uint32_t mxcsr;
      std::memcpy(&mxcsr, buf + 24, 4);
      if (mxcsr & ~mxcsr_mask) GP(0);
      std::memcpy(area, buf, 24);
      std::memcpy(area + 24, &mxcsr, 4);
      std::memcpy(area + 32, buf + 32, 128);
      if (s.cr4 & cr4::kOsfxsr) std::memcpy(area + 160, buf + 160, 16 * nxmm);
      SetAreaXstateBv(area, bv | xfeature::kX87 | xfeature::kSse);
    }
    return;
  }

  if (!model.has_xsave() || !(s.cr4 & cr4::kOsxsave)) UD();
  if ((m == ZYDIS_MNEMONIC_XSAVEOPT || m == ZYDIS_MNEMONIC_XSAVEOPT64) && !model.has_xsaveopt())
    UD();
  if ((m == ZYDIS_MNEMONIC_XSAVEC || m == ZYDIS_MNEMONIC_XSAVEC64) && !model.has_xsavec()) UD();
  if (supervisor && !model.has_xsaves()) UD();
  if (s.cr0 & cr0::kTs) RaiseNoError(kNm);
  if (supervisor) RequireCpl0();
  uint64_t req = (s.gpr[kRdx] << 32) | (s.gpr[kRax] & 0xFFFFFFFF);
  uint64_t enabled = s.xcr0 | (supervisor ? s.msr.xss : 0);
  uint64_t rfbm = req & enabled;
  uint64_t inuse = AreaXstateBv(area) & s.xcr0;

  // Compacted offsets of the components in `mask`.
  auto compact_offsets = [&](uint64_t mask, uint32_t* offs) {
    uint32_t off = 576;
    for (int i = 2; i < 63; ++i) {
      if (!((mask >> i) & 1)) continue;
      if (model.xsave_align64(i)) off = (off + 63) & ~63u;
      offs[i] = off;
      off += model.xsave_size(i);
    }
    return off;
  };

  if (!restore) {
    bool compact = compact_save;
    uint32_t offs[64] = {};
    uint32_t size = compact ? compact_offsets(rfbm, offs) : model.XsaveStandardSize(enabled);
    uint64_t a = SegLinear(sr, ea, size, MemAccess::kWrite);
    if (a & 63) GP(0);
    // Build the image in a scratch copy of the guest area so untouched bytes stay.
    std::vector<uint8_t> img(size);
    LinRead(a, img.data(), size);
    if (rfbm & xfeature::kX87) {
      if (!compact || (inuse & xfeature::kX87)) {
        if (inuse & xfeature::kX87) {
          std::memcpy(img.data(), area, 24);
          std::memcpy(img.data() + 32, area + 32, 128);
        } else {
          std::memset(img.data(), 0, 24);
          std::memset(img.data() + 32, 0, 128);
          uint16_t fcw = kFcwInit;
          std::memcpy(img.data(), &fcw, 2);
        }
      }
    }
    if (rfbm & (xfeature::kSse | xfeature::kAvx)) {
      std::memcpy(img.data() + 24, area + 24, 4);
      std::memcpy(img.data() + 28, &mxcsr_mask, 4);
    }
    int nxmm = Mode64() ? 16 : 8;
    if ((rfbm & xfeature::kSse) && (!compact || (inuse & xfeature::kSse))) {
      if (inuse & xfeature::kSse) {
        std::memcpy(img.data() + 160, area + 160, 16 * nxmm);
      } else {
        std::memset(img.data() + 160, 0, 16 * nxmm);
      }
    }
    for (int i = 2; i < 63; ++i) {
      if (!((rfbm >> i) & 1)) continue;
      uint32_t dst = compact ? offs[i] : model.xsave_offset(i);
      uint32_t len = model.xsave_size(i);
      if ((inuse >> i) & 1) {
        std::memcpy(img.data() + dst, area + model.xsave_offset(i), len);
      } else if (!compact) {
        std::memset(img.data() + dst, 0, len);
      }
    }
    uint64_t xstate_bv;
    std::memcpy(&xstate_bv, img.data() + kHeader, 8);
    if (compact) {
      xstate_bv = inuse & rfbm;
      uint64_t xcomp = rfbm | (1ull << 63);
      std::memcpy(img.data() + kHeader + 8, &xcomp, 8);
    } else {
      xstate_bv = (xstate_bv & ~rfbm) | (inuse & rfbm);
    }
    std::memcpy(img.data() + kHeader, &xstate_bv, 8);
    LinWrite(a, img.data(), size);
    return;
  }

  // XRSTOR / XRSTORS.
  uint64_t a0 = SegLinear(sr, ea, 576, MemAccess::kRead);
  if (a0 & 63) GP(0);
  uint8_t hdr[64];
  LinRead(a0 + kHeader, hdr, 64);
  uint64_t xstate_bv, xcomp_bv;
  std::memcpy(&xstate_bv, hdr, 8);
  std::memcpy(&xcomp_bv, hdr + 8, 8);
  bool compact = (xcomp_bv >> 63) & 1;
  if (supervisor && !compact) GP(0);
  if (compact && !model.has_xsavec()) GP(0);
  for (int i = 16; i < 64; ++i)
    if (hdr[i]) GP(0);
  if (!compact) {
    if (xcomp_bv != 0) GP(0);
    if (xstate_bv & ~enabled) GP(0);
  } else {
    if ((xcomp_bv & ~(1ull << 63)) & ~enabled) GP(0);
    if (xstate_bv & ~xcomp_bv) GP(0);
  }
  uint32_t offs[64] = {};
  uint32_t size = compact ? compact_offsets(xcomp_bv & ~(1ull << 63), offs)
                          : model.XsaveStandardSize(enabled & rfbm);
  uint64_t a = SegLinear(sr, ea, size, MemAccess::kRead);
  std::vector<uint8_t> img(size);
  LinRead(a, img.data(), size);
  uint32_t mxcsr = 0x1F80;
  bool load_mxcsr = compact ? ((rfbm & xstate_bv) & (xfeature::kSse | xfeature::kAvx)) != 0
                            : (rfbm & (xfeature::kSse | xfeature::kAvx)) != 0;
  if (load_mxcsr) {
    std::memcpy(&mxcsr, img.data() + 24, 4);
    if (mxcsr & ~mxcsr_mask) GP(0);
  }
  // Commit.
  uint64_t area_bv = AreaXstateBv(area);
  int nxmm = Mode64() ? 16 : 8;
  if (rfbm & xfeature::kX87) {
    if (xstate_bv & xfeature::kX87) {
      std::memcpy(area, img.data(), 24);
      std::memcpy(area + 32, img.data() + 32, 128);
      area_bv |= xfeature::kX87;
    } else {
      std::memset(area, 0, 24);
      std::memset(area + 32, 0, 128);
      uint16_t fcw = kFcwInit;
      std::memcpy(area, &fcw, 2);
      area_bv |= xfeature::kX87;  // explicit init values
    }
  }
  // Compacted form with SSE/AVX requested but in their initial state: MXCSR is initialised.
  if (load_mxcsr || (compact && (rfbm & (xfeature::kSse | xfeature::kAvx))))
    std::memcpy(area + 24, &mxcsr, 4);
  if (rfbm & xfeature::kSse) {
    if (xstate_bv & xfeature::kSse) {
      std::memcpy(area + 160, img.data() + 160, 16 * nxmm);
    } else {
      std::memset(area + 160, 0, 16 * nxmm);
    }
    area_bv |= xfeature::kSse;
  }
  for (int i = 2; i < 63; ++i) {
    if (!((rfbm >> i) & 1)) continue;
    uint8_t* dst = area + model.xsave_offset(i);
    uint32_t len = model.xsave_size(i);
    if ((xstate_bv >> i) & 1) {
      uint32_t src = compact ? offs[i] : model.xsave_offset(i);
      std::memcpy(dst, img.data() + src, len);
    } else {
      std::memset(dst, 0, len);
    }
    area_bv |= 1ull << i;
  }
  SetAreaXstateBv(area, area_bv);
}

// ----------------------------------------------------------------------------------------------
// SYSCALL / SYSRET / SYSENTER / SYSEXIT / SWAPGS

namespace {
SegmentCache FlatSegment(uint16_t sel, bool code, int dpl, bool l, bool db) {
  SegmentCache c;
  c.selector = sel;
  c.base = 0;
  c.limit = 0xFFFFFFFF;
  c.attr = seg_attr::kP | seg_attr::kS | seg_attr::kG | (static_cast<uint32_t>(dpl) << 5) |
           (code ? (seg_attr::kTypeCode | seg_attr::kTypeReadable | seg_attr::kTypeAccessed)
                 : (seg_attr::kTypeWritable | seg_attr::kTypeAccessed));
  if (l) c.attr |= seg_attr::kL;
  if (db) c.attr |= seg_attr::kDb;
  return c;
}
}  // namespace

void SystemEmulator::Impl::DoSyscall() {
  if (!s.long_mode_active() || !(s.efer & efer::kSce)) UD();
  // Intel: only in 64-bit mode. AMD also from compatibility mode, entering at CSTAR.
  if (!Mode64() && !model.amd()) UD();
  uint16_t cs = static_cast<uint16_t>((s.msr.star >> 32) & 0xFFFC);
  s.gpr[kRcx] = next_rip;
  s.gpr[kR11] = s.rflags & ~rflags::kRf;
  s.rip = Mode64() ? s.msr.lstar : s.msr.cstar;
  s.rflags &= ~(s.msr.sfmask | rflags::kRf);
  s.rflags |= rflags::kFixed1;
  s.seg[kCs] = FlatSegment(cs, true, 0, true, false);
  s.seg[kSs] = FlatSegment(static_cast<uint16_t>(cs + 8), false, 0, false, true);
}

void SystemEmulator::Impl::DoSysret() {
  if (!s.long_mode_active() || !(s.efer & efer::kSce)) UD();
  if (!Mode64()) UD();
  RequireCpl0();
  uint16_t base = static_cast<uint16_t>(s.msr.star >> 48);
  bool to64 = in.operand_width == 64;
  if (to64) {
    if (!Canonical(s.gpr[kRcx])) GP(0);
    s.rip = s.gpr[kRcx];
    s.seg[kCs] = FlatSegment(static_cast<uint16_t>((base + 16) | 3), true, 3, true, false);
  } else {
    s.rip = s.gpr[kRcx] & 0xFFFFFFFF;
    s.seg[kCs] = FlatSegment(static_cast<uint16_t>(base | 3), true, 3, false, true);
  }
  s.rflags = (s.gpr[kR11] & 0x3C7FD7) | rflags::kFixed1;
  SegmentCache ss = FlatSegment(static_cast<uint16_t>((base + 8) | 3), false, 3, false, true);
  s.seg[kSs] = ss;
}

void SystemEmulator::Impl::DoSysenter() {
  if (!model.has_sep()) UD();
  if (model.amd() && s.long_mode_active()) UD();  // AMD: legacy mode only
  if (Real()) GP(0);
  uint16_t cs = static_cast<uint16_t>(s.msr.sysenter_cs & 0xFFFC);
  if (cs == 0) GP(0);
  s.rflags &= ~(rflags::kVm | rflags::kIf | rflags::kRf);
  bool lma = s.long_mode_active();
  if (lma) {
    s.gpr[kRsp] = s.msr.sysenter_esp;
    s.rip = s.msr.sysenter_eip;
  } else {
    s.gpr[kRsp] = s.msr.sysenter_esp & 0xFFFFFFFF;
    s.rip = s.msr.sysenter_eip & 0xFFFFFFFF;
  }
  s.seg[kCs] = FlatSegment(cs, true, 0, lma, !lma);
  s.seg[kSs] = FlatSegment(static_cast<uint16_t>(cs + 8), false, 0, false, true);
  suppress_single_step = true;
}

void SystemEmulator::Impl::DoSysexit() {
  if (!model.has_sep()) UD();
  if (model.amd() && s.long_mode_active()) UD();
  if (Real() || V86()) GP(0);
  uint16_t cs = static_cast<uint16_t>(s.msr.sysenter_cs & 0xFFFC);
  if (cs == 0) GP(0);
  RequireCpl0();
  if (in.operand_width == 64) {
    if (!Canonical(s.gpr[kRcx]) || !Canonical(s.gpr[kRdx])) GP(0);
    s.gpr[kRsp] = s.gpr[kRdx];
    s.rip = s.gpr[kRcx];
    s.seg[kCs] = FlatSegment(static_cast<uint16_t>((cs + 32) | 3), true, 3, true, false);
    s.seg[kSs] = FlatSegment(static_cast<uint16_t>((cs + 40) | 3), false, 3, false, true);
  } else {
    s.gpr[kRsp] = s.gpr[kRdx] & 0xFFFFFFFF;
    s.rip = s.gpr[kRcx] & 0xFFFFFFFF;
    s.seg[kCs] = FlatSegment(static_cast<uint16_t>((cs + 16) | 3), true, 3, false, true);
    s.seg[kSs] = FlatSegment(static_cast<uint16_t>((cs + 24) | 3), false, 3, false, true);
  }
}

void SystemEmulator::Impl::DoFsGsBase() {
  ZydisMnemonic m = in.mnemonic;
  if (m == ZYDIS_MNEMONIC_SWAPGS) {
    if (!Mode64()) UD();
    RequireCpl0();
    std::swap(s.seg[kGs].base, s.msr.kernel_gs_base);
    return;
  }
  if (!Mode64() || !(s.cr4 & cr4::kFsgsbase)) UD();
  SegReg sr = (m == ZYDIS_MNEMONIC_RDFSBASE || m == ZYDIS_MNEMONIC_WRFSBASE) ? kFs : kGs;
  if (m == ZYDIS_MNEMONIC_RDFSBASE || m == ZYDIS_MNEMONIC_RDGSBASE) {
    SetReg(op[0].reg.value, s.seg[sr].base);
  } else {
    uint64_t v = GetReg(op[0].reg.value);
    if (!Canonical(v)) GP(0);
    s.seg[sr].base = v;
  }
}

// ----------------------------------------------------------------------------------------------
// INVPCID

void SystemEmulator::Impl::DoInvpcid() {
  if (!model.has_invpcid()) UD();
  if (Real()) GP(0);
  if (V86()) GP(0);
  RequireCpl0();
  uint64_t type = GetReg(op[0].reg.value);
  uint64_t desc[2];
  Read(OperandSeg(op[1]), EffectiveAddress(op[1]), desc, 16);
  if (type > 3) GP(0);
  uint64_t pcid = desc[0] & 0xFFF;
  if (desc[0] >> 12) GP(0);
  switch (type) {
    case 0:
      if (pcid && !(s.cr4 & cr4::kPcide)) GP(0);
      if (!Canonical(desc[1])) GP(0);
      tc.FlushTlbPage(desc[1]);
      break;
    case 1:
      if (pcid && !(s.cr4 & cr4::kPcide)) GP(0);
      tc.FlushTlb(false);
      break;
    case 2:
      tc.FlushTlb(true);
      break;
    default:
      tc.FlushTlb(false);
      break;
  }
}

}  // namespace rove
