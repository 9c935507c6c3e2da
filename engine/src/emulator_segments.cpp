// Segment descriptors and everything that loads them: MOV/POP Sreg, LDS..LSS, far JMP/CALL/RET
// (with call gates), LAR/LSL/VERR/VERW, ARPL, and the descriptor-table instructions.
#include <fmt/format.h>

#include <cstring>

#include "emulator_impl.h"

namespace rove {

bool SystemEmulator::Impl::ReadDescriptor(uint16_t sel, uint64_t* low, uint64_t* high, bool wide) {
  uint64_t base;
  uint32_t limit;
  if (sel & selector::kTi) {
    if (!SegIsUsable(s.ldtr) || selector::IsNull(s.ldtr.selector)) return false;
    base = s.ldtr.base;
    limit = s.ldtr.limit;
  } else {
    base = s.gdtr.base;
    limit = s.gdtr.limit;
  }
  uint32_t index = sel & selector::kIndexMask;
  uint32_t last = index + (wide ? 15 : 7);
  if (last > limit) return false;
  if (!s.long_mode_active()) base &= 0xFFFFFFFFull;
  if (wide) {
    uint64_t raw[2];
    LinRead(base + index, raw, 16, true);
    *low = raw[0];
    if (high) *high = raw[1];
  } else {
    *low = LinReadU(base + index, 8, true);
    if (high) *high = 0;
  }
  return true;
}

void SystemEmulator::Impl::SetAccessed(uint16_t sel, uint64_t* low) {
  if ((*low >> 40) & 1) return;
  *low |= 1ull << 40;
  uint64_t base = (sel & selector::kTi) ? s.ldtr.base : s.gdtr.base;
  uint8_t byte = static_cast<uint8_t>(*low >> 40);
  LinWrite(base + (sel & selector::kIndexMask) + 5, &byte, 1, true);
}

void SystemEmulator::Impl::SetCs(const SegmentCache& c, uint16_t sel, int cpl) {
  SegmentCache n = c;
  n.selector = static_cast<uint16_t>((sel & 0xFFFC) | cpl);
  n.attr |= seg_attr::kTypeAccessed;
  // CPL lives in CS.DPL: a conforming segment entered at a lower privilege keeps the CPL.
  n.attr = (n.attr & ~seg_attr::kDplMask) | (static_cast<uint32_t>(cpl) << seg_attr::kDplShift);
  s.seg[kCs] = n;
}

void SystemEmulator::Impl::InvalidateSegmentsForCpl(int cpl) {
  for (SegReg r : {kEs, kDs, kFs, kGs}) {
    SegmentCache& c = s.seg[r];
    if (!SegIsUsable(c)) continue;
    bool data_or_nc = !(c.attr & seg_attr::kTypeCode) || !(c.attr & seg_attr::kTypeConforming);
    if (data_or_nc && c.dpl() < cpl) {
      // The selector is nulled; in 64-bit mode the FS/GS base survives only for a null
      // selector loaded explicitly, so clear it here too as the SDM describes.
      c = NullSegment(0);
    }
  }
}

void SystemEmulator::Impl::LoadSegment(SegReg sr, uint16_t sel) {
  if (Real() || V86()) {
    s.seg[sr] = RealModeSegment(sel, V86(), s.seg[sr]);
    return;
  }
  int cpl = Cpl();
  if (selector::IsNull(sel)) {
    if (sr == kSs) {
      // Only in 64-bit mode, at CPL < 3, with RPL = CPL.
      if (!(Mode64() && cpl != 3 && (sel & 3) == cpl)) GP(0);
      SegmentCache c = NullSegment(sel);
      c.attr |= static_cast<uint32_t>(cpl) << seg_attr::kDplShift;
      s.seg[kSs] = c;
      return;
    }
    SegmentCache c = NullSegment(sel);
    if (Mode64()) c.base = 0;
    s.seg[sr] = c;
    return;
  }
  uint64_t lo;
  if (!ReadDescriptor(sel, &lo)) GP(sel & 0xFFFC);
  SegmentCache c = DecodeSegmentDescriptor(lo, sel);
  int rpl = sel & 3;
  bool sys = !(c.attr & seg_attr::kS);
  bool code = (c.attr & seg_attr::kTypeCode) != 0;
  if (sr == kSs) {
    if (rpl != cpl || sys || code || !(c.attr & seg_attr::kTypeWritable) || c.dpl() != cpl)
      GP(sel & 0xFFFC);
    if (!(c.attr & seg_attr::kP)) SSF(sel & 0xFFFC);
  } else {
    if (sys || (code && !(c.attr & seg_attr::kTypeReadable))) GP(sel & 0xFFFC);
    bool conforming_code = code && (c.attr & seg_attr::kTypeConforming);
    if (!conforming_code && (rpl > c.dpl() || cpl > c.dpl())) GP(sel & 0xFFFC);
    if (!(c.attr & seg_attr::kP)) NP(sel & 0xFFFC);
  }
  SetAccessed(sel, &lo);
  c.attr |= seg_attr::kTypeAccessed;
  s.seg[sr] = c;
}

// ----------------------------------------------------------------------------------------------
// Far JMP / CALL / RET

void SystemEmulator::Impl::DoFarJmpCall(bool is_call) {
  unsigned osz = in.operand_width / 8;
  uint16_t sel;
  uint64_t off;
  if (op[0].type == ZYDIS_OPERAND_TYPE_POINTER) {
    sel = op[0].ptr.segment;
    off = op[0].ptr.offset;
  } else if (op[0].type == ZYDIS_OPERAND_TYPE_MEMORY) {
    SegReg sr = OperandSeg(op[0]);
    uint64_t ea = EffectiveAddress(op[0]);
    off = ReadU(sr, ea, osz);
    sel = static_cast<uint16_t>(ReadU(sr, (ea + osz) & AddrMask(), 2));
  } else {
    UD();
  }
  if (osz == 2) off &= 0xFFFF;
  if (osz == 4) off &= 0xFFFFFFFF;
  uint64_t ret_ip = next_rip;
  uint16_t ret_cs = s.seg[kCs].selector;

  if (Real() || V86()) {
    SegmentCache nc = RealModeSegment(sel, V86(), s.seg[kCs]);
    if (off > nc.limit) GP(0);
    if (is_call) {
      uint64_t sp = Sp();
      WriteU(kSs, (sp - osz) & SpMask(), ret_cs, osz);
      WriteU(kSs, (sp - 2 * osz) & SpMask(), ret_ip, osz);
      SetSp(sp - 2 * osz);
    }
    s.seg[kCs] = nc;
    s.rip = off;
    return;
  }
  int cpl = Cpl();
  if (selector::IsNull(sel)) GP(0);
  uint64_t lo;
  if (!ReadDescriptor(sel, &lo)) GP(sel & 0xFFFC);
  SegmentCache c = DecodeSegmentDescriptor(lo, sel);
  bool lma = s.long_mode_active();
  if (c.attr & seg_attr::kS) {
    if (!(c.attr & seg_attr::kTypeCode)) GP(sel & 0xFFFC);
    if (c.attr & seg_attr::kTypeConforming) {
      if (c.dpl() > cpl) GP(sel & 0xFFFC);
    } else {
      if ((sel & 3) > cpl || c.dpl() != cpl) GP(sel & 0xFFFC);
    }
    if (!(c.attr & seg_attr::kP)) NP(sel & 0xFFFC);
    if (lma && (c.attr & seg_attr::kL) && (c.attr & seg_attr::kDb)) GP(sel & 0xFFFC);
    bool target64 = lma && (c.attr & seg_attr::kL);
    if (target64) {
      if (!Canonical(off)) GP(0);
    } else if (off > c.limit) {
      GP(0);
    }
    if (is_call) {
      uint64_t sp = Sp();
      WriteU(kSs, (sp - osz) & SpMask(), ret_cs, osz);
      WriteU(kSs, (sp - 2 * osz) & SpMask(), ret_ip, osz);
      SetSp(sp - 2 * osz);
    }
    SetAccessed(sel, &lo);
    SetCs(c, sel, cpl);
    s.rip = off;
    return;
  }
  uint8_t type = c.attr & seg_attr::kTypeMask;
  switch (type) {
    case sys_type::kCallGate16:
      if (lma) GP(sel & 0xFFFC);
      [[fallthrough]];
    case sys_type::kCallGate: {
      uint64_t hi = 0;
      if (lma && !ReadDescriptor(sel, &lo, &hi, true)) GP(sel & 0xFFFC);
      if (lma && ((hi >> 40) & 0x1F) != 0) GP(sel & 0xFFFC);
      GateDescriptor g = DecodeGate(lo, hi, lma);
      if (g.dpl < cpl || g.dpl < (sel & 3)) GP(sel & 0xFFFC);
      if (!g.present) NP(sel & 0xFFFC);
      DoCallGate(g, sel, is_call, ret_cs, ret_ip);
      return;
    }
    case sys_type::kTaskGate:
    case sys_type::kTss16Avail:
    case sys_type::kTssAvail:
      if (lma) GP(sel & 0xFFFC);
      Unsupported(fmt::format("far {} to task gate/TSS selector {:#x}: hardware task switching",
                              is_call ? "CALL" : "JMP", sel));
    default:
      GP(sel & 0xFFFC);
  }
}

void SystemEmulator::Impl::DoCallGate(const GateDescriptor& g, uint16_t gate_sel, bool is_call,
                                      uint64_t ret_cs, uint64_t ret_ip) {
  (void)gate_sel;
  bool lma = s.long_mode_active();
  int cpl = Cpl();
  uint16_t sel = g.selector;
  if (selector::IsNull(sel)) GP(0);
  uint64_t lo;
  if (!ReadDescriptor(sel, &lo)) GP(sel & 0xFFFC);
  SegmentCache c = DecodeSegmentDescriptor(lo, sel);
  if (!SegIsCode(c) || c.dpl() > cpl) GP(sel & 0xFFFC);
  bool conforming = (c.attr & seg_attr::kTypeConforming) != 0;
  if (!is_call && !conforming && c.dpl() != cpl) GP(sel & 0xFFFC);
  if (!(c.attr & seg_attr::kP)) NP(sel & 0xFFFC);
  if (lma && (!(c.attr & seg_attr::kL) || (c.attr & seg_attr::kDb))) GP(sel & 0xFFFC);
  unsigned w = lma ? 8 : (g.type == sys_type::kCallGate ? 4 : 2);
  uint64_t target = w == 2 ? (g.offset & 0xFFFF) : g.offset;
  if (lma) {
    if (!Canonical(target)) GP(0);
  } else if (target > c.limit) {
    GP(0);
  }
  bool inner = is_call && !conforming && c.dpl() < cpl;
  if (!inner) {
    int new_cpl = cpl;
    if (is_call) {
      uint64_t sp = Sp();
      WriteU(kSs, (sp - w) & SpMask(), ret_cs, w);
      WriteU(kSs, (sp - 2 * w) & SpMask(), ret_ip, w);
      SetSp(sp - 2 * w);
    }
    SetAccessed(sel, &lo);
    SetCs(c, sel, new_cpl);
    s.rip = target;
    return;
  }
  int new_cpl = c.dpl();
  if (lma) {
    uint64_t rsp = Tss64Read(4 + static_cast<uint32_t>(new_cpl) * 8, 0);
    if (!Canonical(rsp)) SSF(0);
    uint64_t frame[4] = {ret_ip, ret_cs, s.gpr[kRsp], s.seg[kSs].selector};
    uint64_t new_rsp = rsp - 32;
    if (!Canonical(new_rsp)) SSF(0);
    WriteFrame(new_rsp, frame, 4, 8, new_cpl);
    SetAccessed(sel, &lo);
    s.seg[kSs] = NullSegment(static_cast<uint16_t>(new_cpl));
    s.seg[kSs].attr |= static_cast<uint32_t>(new_cpl) << seg_attr::kDplShift;
    s.gpr[kRsp] = new_rsp;
    SetCs(c, sel, new_cpl);
    s.rip = target;
    return;
  }
  // Legacy inner call: new stack from the TSS, parameters copied from the old stack.
  uint16_t new_ss;
  uint64_t new_sp;
  TssStack(new_cpl, 0, &new_ss, &new_sp);
  if (selector::IsNull(new_ss)) TS(0);
  uint64_t slo;
  if (!ReadDescriptor(new_ss, &slo)) TS(new_ss & 0xFFFC);
  SegmentCache ss = DecodeSegmentDescriptor(slo, new_ss);
  if ((new_ss & 3) != new_cpl || ss.dpl() != new_cpl || !(ss.attr & seg_attr::kS) ||
      (ss.attr & seg_attr::kTypeCode) || !(ss.attr & seg_attr::kTypeWritable))
    TS(new_ss & 0xFFFC);
  if (!(ss.attr & seg_attr::kP)) SSF(new_ss & 0xFFFC);
  unsigned params = g.param_count;
  uint64_t vals[40];
  int n = 0;
  vals[n++] = ret_ip;
  vals[n++] = ret_cs;
  for (unsigned i = 0; i < params; ++i) vals[n++] = ReadU(kSs, (Sp() + i * w) & SpMask(), w);
  vals[n++] = s.gpr[kRsp] & SpMask();
  vals[n++] = s.seg[kSs].selector;
  uint8_t frame[320];
  for (int i = 0; i < n; ++i) std::memcpy(frame + i * w, &vals[i], w);
  uint64_t mask = (ss.attr & seg_attr::kDb) ? 0xFFFFFFFFull : 0xFFFFull;
  uint64_t frame_sp = (new_sp - n * w) & mask;
  uint64_t linear;
  try {
    linear = CheckedLinear(ss, true, frame_sp, n * w, MemAccess::kWrite, false);
  } catch (const GuestFault&) {
    SSF(new_ss & 0xFFFC);
  }
  WriteFrame(linear, frame, static_cast<unsigned>(n), w, new_cpl);
  SetAccessed(new_ss, &slo);
  ss.attr |= seg_attr::kTypeAccessed;
  SetAccessed(sel, &lo);
  s.seg[kSs] = ss;
  s.gpr[kRsp] = mask == 0xFFFFFFFFull ? frame_sp : ((s.gpr[kRsp] & ~mask) | frame_sp);
  SetCs(c, sel, new_cpl);
  s.rip = target;
}

void SystemEmulator::Impl::DoFarRet() {
  unsigned osz = in.operand_width / 8;
  uint64_t imm = 0;
  if (in.operand_count_visible > 0 && op[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE)
    imm = op[0].imm.value.u & 0xFFFF;
  uint64_t sp = Sp();
  uint64_t new_ip = ReadU(kSs, sp, osz);
  uint16_t new_cs = static_cast<uint16_t>(ReadU(kSs, (sp + osz) & SpMask(), osz));
  if (Real() || V86()) {
    SegmentCache nc = RealModeSegment(new_cs, V86(), s.seg[kCs]);
    if (new_ip > nc.limit) GP(0);
    s.seg[kCs] = nc;
    s.rip = new_ip;
    SetSp(sp + 2 * osz + imm);
    return;
  }
  int cpl = Cpl();
  bool lma = s.long_mode_active();
  if (selector::IsNull(new_cs)) GP(0);
  uint64_t lo;
  if (!ReadDescriptor(new_cs, &lo)) GP(new_cs & 0xFFFC);
  SegmentCache c = DecodeSegmentDescriptor(lo, new_cs);
  int rpl = new_cs & 3;
  if (!SegIsCode(c) || rpl < cpl) GP(new_cs & 0xFFFC);
  bool conforming = (c.attr & seg_attr::kTypeConforming) != 0;
  if (conforming ? c.dpl() > rpl : c.dpl() != rpl) GP(new_cs & 0xFFFC);
  if (!(c.attr & seg_attr::kP)) NP(new_cs & 0xFFFC);
  if (lma && (c.attr & seg_attr::kL) && (c.attr & seg_attr::kDb)) GP(new_cs & 0xFFFC);
  bool target64 = lma && (c.attr & seg_attr::kL);
  if (target64) {
    if (!Canonical(new_ip)) GP(0);
  } else if (new_ip > c.limit) {
    GP(0);
  }
  if (rpl == cpl) {
    SetAccessed(new_cs, &lo);
    SetCs(c, new_cs, cpl);
    s.rip = new_ip;
    SetSp(sp + 2 * osz + imm);
    return;
  }
  // Return to an outer privilege level: SS:RSP follow the parameters.
  uint64_t new_sp = ReadU(kSs, (sp + 2 * osz + imm) & SpMask(), osz);
  uint16_t new_ss = static_cast<uint16_t>(ReadU(kSs, (sp + 3 * osz + imm) & SpMask(), osz));
  SegmentCache ss;
  if (selector::IsNull(new_ss)) {
    if (!(target64 && rpl != 3)) GP(0);
    ss = NullSegment(new_ss);
    ss.attr |= static_cast<uint32_t>(rpl) << seg_attr::kDplShift;
  } else {
    uint64_t slo;
    if (!ReadDescriptor(new_ss, &slo)) GP(new_ss & 0xFFFC);
    ss = DecodeSegmentDescriptor(slo, new_ss);
    if ((new_ss & 3) != rpl || ss.dpl() != rpl || !(ss.attr & seg_attr::kS) ||
        (ss.attr & seg_attr::kTypeCode) || !(ss.attr & seg_attr::kTypeWritable))
      GP(new_ss & 0xFFFC);
    if (!(ss.attr & seg_attr::kP)) SSF(new_ss & 0xFFFC);
    SetAccessed(new_ss, &slo);
    ss.attr |= seg_attr::kTypeAccessed;
  }
  SetAccessed(new_cs, &lo);
  SetCs(c, new_cs, rpl);
  s.rip = new_ip;
  s.seg[kSs] = ss;
  uint64_t mask = (target64 || osz == 8)      ? ~0ull
                  : (ss.attr & seg_attr::kDb) ? 0xFFFFFFFFull
                                              : 0xFFFFull;
  uint64_t v = (new_sp + imm) & mask;
  s.gpr[kRsp] = mask == 0xFFFFull ? ((s.gpr[kRsp] & ~mask) | v) : v;
  InvalidateSegmentsForCpl(rpl);
}

// ----------------------------------------------------------------------------------------------
// LAR / LSL / VERR / VERW / ARPL

void SystemEmulator::Impl::DoLarLslVerrVerw() {
  if (Real() || V86()) UD();
  ZydisMnemonic m = in.mnemonic;
  bool is_ver = m == ZYDIS_MNEMONIC_VERR || m == ZYDIS_MNEMONIC_VERW;
  uint16_t sel = static_cast<uint16_t>(ReadOp(is_ver ? 0 : 1) & 0xFFFF);
  int cpl = Cpl();
  bool ok = false;
  uint64_t lo = 0, hi = 0;
  if (!selector::IsNull(sel) && ReadDescriptor(sel, &lo)) {
    SegmentCache c = DecodeSegmentDescriptor(lo, sel);
    bool sys = !(c.attr & seg_attr::kS);
    bool code = (c.attr & seg_attr::kTypeCode) != 0;
    bool conforming_code = !sys && code && (c.attr & seg_attr::kTypeConforming);
    bool priv_ok = conforming_code || (c.dpl() >= cpl && c.dpl() >= (sel & 3));
    uint8_t type = c.attr & seg_attr::kTypeMask;
    bool lma = s.long_mode_active();
    switch (m) {
      case ZYDIS_MNEMONIC_LAR:
        if (sys) {
          ok = lma ? (type == sys_type::kLdt || type == sys_type::kTssAvail ||
                      type == sys_type::kTssBusy || type == sys_type::kCallGate)
                   : (type != 0 && type != 8 && type != 0xA && type != 0xD &&
                      type != sys_type::kIntGate16 && type != sys_type::kTrapGate16 &&
                      type != sys_type::kIntGate && type != sys_type::kTrapGate);
        } else {
          ok = true;
        }
        ok = ok && priv_ok;
        if (ok) {
          uint64_t ar = (lo >> 32) & 0x00FFFF00;
          SetReg(op[0].reg.value, ar);
        }
        break;
      case ZYDIS_MNEMONIC_LSL:
        if (sys) {
          ok = lma ? (type == sys_type::kLdt || type == sys_type::kTssAvail ||
                      type == sys_type::kTssBusy)
                   : (type == sys_type::kTss16Avail || type == sys_type::kLdt ||
                      type == sys_type::kTss16Busy || type == sys_type::kTssAvail ||
                      type == sys_type::kTssBusy);
        } else {
          ok = true;
        }
        ok = ok && priv_ok;
        if (ok) SetReg(op[0].reg.value, c.limit);
        break;
      case ZYDIS_MNEMONIC_VERR:
        ok = !sys && (!code || (c.attr & seg_attr::kTypeReadable)) && priv_ok;
        break;
      default:  // VERW
        ok = !sys && !code && (c.attr & seg_attr::kTypeWritable) && c.dpl() >= cpl &&
             c.dpl() >= (sel & 3);
        break;
    }
  }
  (void)hi;
  if (ok) {
    s.rflags |= rflags::kZf;
  } else {
    s.rflags &= ~rflags::kZf;
  }
}

// ----------------------------------------------------------------------------------------------
// LGDT/LIDT/SGDT/SIDT/LLDT/SLDT/LTR/STR/SMSW/LMSW/CLTS

void SystemEmulator::Impl::DoDescriptorTable() {
  ZydisMnemonic m = in.mnemonic;
  switch (m) {
    case ZYDIS_MNEMONIC_LGDT:
    case ZYDIS_MNEMONIC_LIDT: {
      if (V86()) GP(0);
      RequireCpl0();
      if (!OpIsMem(0)) UD();
      SegReg sr = OperandSeg(op[0]);
      uint64_t ea = EffectiveAddress(op[0]);
      uint16_t limit = static_cast<uint16_t>(ReadU(sr, ea, 2));
      uint64_t base;
      if (Mode64()) {
        base = ReadU(sr, (ea + 2) & AddrMask(), 8);
        if (!Canonical(base)) GP(0);
      } else {
        base = ReadU(sr, (ea + 2) & AddrMask(), 4);
        if (in.operand_width == 16) base &= 0xFFFFFF;
      }
      DescriptorTable& t = m == ZYDIS_MNEMONIC_LGDT ? s.gdtr : s.idtr;
      t.base = base;
      t.limit = limit;
      return;
    }
    case ZYDIS_MNEMONIC_SGDT:
    case ZYDIS_MNEMONIC_SIDT: {
      if (UmipBlocks()) GP(0);
      if (!OpIsMem(0)) UD();
      const DescriptorTable& t = m == ZYDIS_MNEMONIC_SGDT ? s.gdtr : s.idtr;
      SegReg sr = OperandSeg(op[0]);
      uint64_t ea = EffectiveAddress(op[0]);
      unsigned bsz = Mode64() ? 8 : 4;
      uint8_t buf[10];
      uint16_t limit = static_cast<uint16_t>(t.limit);
      std::memcpy(buf, &limit, 2);
      uint64_t base = Mode64() ? t.base : (t.base & 0xFFFFFFFFull);
      std::memcpy(buf + 2, &base, bsz);
      Write(sr, ea, buf, 2 + bsz);
      return;
    }
    case ZYDIS_MNEMONIC_SLDT:
    case ZYDIS_MNEMONIC_STR: {
      if (Real() || V86()) UD();
      if (UmipBlocks()) GP(0);
      uint16_t v = m == ZYDIS_MNEMONIC_SLDT ? s.ldtr.selector : s.tr.selector;
      if (OpIsMem(0)) {
        WriteU(OperandSeg(op[0]), EffectiveAddress(op[0]), v, 2);
      } else {
        SetReg(op[0].reg.value, v);  // zero-extended for 32/64-bit registers
      }
      return;
    }
    case ZYDIS_MNEMONIC_SMSW: {
      if (UmipBlocks()) GP(0);
      if (OpIsMem(0)) {
        WriteU(OperandSeg(op[0]), EffectiveAddress(op[0]), s.cr0 & 0xFFFF, 2);
      } else {
        SetReg(op[0].reg.value, s.cr0);
      }
      return;
    }
    case ZYDIS_MNEMONIC_LMSW: {
      RequireCpl0();
      uint64_t v = ReadOp(0) & 0xF;
      // LMSW can set PE but not clear it; it changes MP, EM, TS.
      uint64_t n = (s.cr0 & ~0xEull) | (v & 0xE) | (s.cr0 & cr0::kPe) | (v & cr0::kPe);
      WriteCr0(n);
      return;
    }
    case ZYDIS_MNEMONIC_CLTS: {
      RequireCpl0();
      if (s.cr0 & cr0::kTs) {
        s.cr0 &= ~cr0::kTs;
        tc.FlushTranslations();
      }
      return;
    }
    case ZYDIS_MNEMONIC_LLDT: {
      if (Real() || V86()) UD();
      RequireCpl0();
      uint16_t sel = static_cast<uint16_t>(ReadOp(0));
      if (selector::IsNull(sel)) {
        s.ldtr = NullSegment(sel);
        return;
      }
      if (sel & selector::kTi) GP(sel & 0xFFFC);
      bool lma = s.long_mode_active();
      uint64_t lo, hi = 0;
      if (!ReadDescriptor(sel, &lo, &hi, lma)) GP(sel & 0xFFFC);
      SegmentCache c = DecodeSegmentDescriptor(lo, sel, hi, lma);
      if ((c.attr & seg_attr::kS) || (c.attr & seg_attr::kTypeMask) != sys_type::kLdt)
        GP(sel & 0xFFFC);
      if (!(c.attr & seg_attr::kP)) NP(sel & 0xFFFC);
      if (lma && !Canonical(c.base)) GP(sel & 0xFFFC);
      s.ldtr = c;
      return;
    }
    case ZYDIS_MNEMONIC_LTR: {
      if (Real() || V86()) UD();
      RequireCpl0();
      uint16_t sel = static_cast<uint16_t>(ReadOp(0));
      if (selector::IsNull(sel)) GP(0);
      if (sel & selector::kTi) GP(sel & 0xFFFC);
      bool lma = s.long_mode_active();
      uint64_t lo, hi = 0;
      if (!ReadDescriptor(sel, &lo, &hi, lma)) GP(sel & 0xFFFC);
      SegmentCache c = DecodeSegmentDescriptor(lo, sel, hi, lma);
      uint8_t type = c.attr & seg_attr::kTypeMask;
      bool ok = !(c.attr & seg_attr::kS) &&
                (type == sys_type::kTssAvail || (!lma && type == sys_type::kTss16Avail));
      if (!ok) GP(sel & 0xFFFC);
      if (!(c.attr & seg_attr::kP)) NP(sel & 0xFFFC);
      if (lma && !Canonical(c.base)) GP(sel & 0xFFFC);
      // Mark busy in memory.
      uint64_t base = s.gdtr.base + (sel & selector::kIndexMask) + 5;
      uint8_t byte = static_cast<uint8_t>((lo >> 40) | 2);
      LinWrite(base, &byte, 1, true);
      c.attr |= 2;
      s.tr = c;
      return;
    }
    default:
      UD();
  }
}

}  // namespace rove
