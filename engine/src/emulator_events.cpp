// Exception and interrupt delivery (real mode IVT, protected-mode and long-mode IDT gates,
// privilege changes through the TSS, IST, #DF and triple fault), IRET, and INT n/INT3/INTO/INT1.
#include <fmt/format.h>

#include <cstring>

#include "emulator_impl.h"

namespace rove {
namespace {

enum class ExcClass { kBenign, kContributory, kPageFault };

ExcClass Classify(const Event& e) {
  if (!e.is_exception) return ExcClass::kBenign;
  switch (e.vector) {
    case kDe:
    case kTs:
    case kNp:
    case kSsFault:
    case kGp:
      return ExcClass::kContributory;
    case kPf:
    case kVe:
      return ExcClass::kPageFault;
    default:
      return ExcClass::kBenign;
  }
}

// Faults (as opposed to traps) push RF = 1 in the saved flags.
bool IsFaultClass(const Event& e) {
  if (!e.is_exception || e.kind == InterruptKind::kSoftwareException ||
      e.kind == InterruptKind::kPrivilegedSoftware)
    return false;
  switch (e.vector) {
    case kDb:
    case kNmi:
    case kBp:
    case kOf:
    case kMc:
      return false;
    default:
      return true;
  }
}

const char* VectorName(uint8_t v) {
  static const char* kNames[32] = {"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
                                   "#DF", "#09", "#TS", "#NP", "#SS", "#GP", "#PF", "#15",
                                   "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "#22", "#23",
                                   "#24", "#25", "#26", "#27", "#28", "#29", "#30", "#31"};
  return v < 32 ? kNames[v] : "interrupt";
}

}  // namespace

EmulationResult SystemEmulator::Impl::Deliver(Event ev) {
  constexpr size_t kSnapshotBytes = offsetof(CpuState, xsave);
  alignas(64) uint8_t snapshot[kSnapshotBytes];
  std::memcpy(snapshot, &s, kSnapshotBytes);
  // The chain of events, formatted only if the VM has to stop.
  Event chain[20];
  int chain_len = 0;
  auto history = [&]() {
    std::string h;
    for (int i = 0; i < chain_len; ++i) {
      const Event& e = chain[i];
      h += fmt::format("{}{}({:#x}){}", i ? " -> " : "", VectorName(e.vector), e.vector,
                       e.has_error ? fmt::format(" err={:#x}", e.error) : "");
    }
    return h;
  };
  for (int depth = 0;; ++depth) {
    chain[chain_len++] = ev;
    try {
      DeliverOnce(ev);
      if (ev.vector == kNmi && !ev.is_exception && ev.kind == InterruptKind::kNmi)
        nmi_blocked = true;
      s.halted = false;
      s.interrupt_shadow = false;
      return {};
    } catch (const GuestFault& f) {
      uint64_t cr2 = s.cr2;
      std::memcpy(static_cast<void*>(&s), snapshot, kSnapshotBytes);
      s.cr2 = cr2;  // CR2 keeps the value loaded by a #PF even if its delivery fails
      Event next;
      next.vector = f.e.vector;
      next.is_exception = true;
      next.kind = InterruptKind::kExternal;
      next.has_error = f.e.has_error_code;
      next.error = f.e.error_code;
      next.cr2 = f.e.cr2;
      if (ev.is_exception && ev.vector == kDf) {
        chain[chain_len++] = next;
        return Shutdown(fmt::format("triple fault: {} while delivering #DF ({})",
                                    VectorName(next.vector), history()));
      }
      ExcClass a = Classify(ev), b = Classify(next);
      bool df = (a == ExcClass::kContributory && b == ExcClass::kContributory) ||
                (a == ExcClass::kPageFault &&
                 (b == ExcClass::kContributory || b == ExcClass::kPageFault));
      if (df) {
        chain[chain_len++] = next;
        next = Event{};
        next.vector = kDf;
        next.is_exception = true;
        next.has_error = true;
        next.error = 0;
      }
      ev = next;
      if (chain_len >= 18) return Shutdown("exception delivery loop: " + history());
    } catch (const UnsupportedFeature& u) {
      std::memcpy(static_cast<void*>(&s), snapshot, kSnapshotBytes);
      return Shutdown(fmt::format("unsupported: {} (delivering {})", u.what, history()));
    }
  }
}

void SystemEmulator::Impl::DeliverOnce(const Event& ev) {
  if (ev.is_exception && ev.vector == kPf) s.cr2 = ev.cr2;
  if (!s.protected_mode()) {
    DeliverReal(ev);
  } else if (s.long_mode_active()) {
    DeliverLong(ev);
  } else {
    DeliverProtected(ev);
  }
}

void SystemEmulator::Impl::DeliverReal(const Event& ev) {
  uint32_t off = uint32_t{ev.vector} * 4;
  if (off + 3 > s.idtr.limit) GP(0);
  uint32_t vec = static_cast<uint32_t>(LinReadU(s.idtr.base + off, 4, true));
  uint16_t ip = vec & 0xFFFF, cs = static_cast<uint16_t>(vec >> 16);
  uint64_t flags = s.rflags;
  if (IsFaultClass(ev)) flags |= rflags::kRf;
  uint64_t sp = (Sp() - 6) & SpMask();
  uint16_t frame[3] = {static_cast<uint16_t>(s.rip), s.seg[kCs].selector,
                       static_cast<uint16_t>(flags)};
  uint64_t a = SegLinear(kSs, sp, 6, MemAccess::kWrite);
  WriteFrame(a, frame, 3, 2, 0);
  SetSp(sp);
  s.seg[kCs] = RealModeSegment(cs, false, s.seg[kCs]);
  s.rip = ip;
  s.rflags &= ~(rflags::kIf | rflags::kTf | rflags::kAc | rflags::kRf);
}

void SystemEmulator::Impl::TssStack(int dpl, uint32_t ext, uint16_t* ss, uint64_t* sp) {
  uint32_t type = s.tr.attr & seg_attr::kTypeMask;
  uint16_t tss_err = static_cast<uint16_t>((s.tr.selector & 0xFFFC) | ext);
  if (type == sys_type::kTssAvail || type == sys_type::kTssBusy) {
    uint32_t off = 4 + static_cast<uint32_t>(dpl) * 8;
    if (off + 5 > s.tr.limit) TS(tss_err);
    *sp = LinReadU(s.tr.base + off, 4, true);
    *ss = static_cast<uint16_t>(LinReadU(s.tr.base + off + 4, 2, true));
  } else {
    uint32_t off = 2 + static_cast<uint32_t>(dpl) * 4;
    if (off + 3 > s.tr.limit) TS(tss_err);
    *sp = LinReadU(s.tr.base + off, 2, true);
    *ss = static_cast<uint16_t>(LinReadU(s.tr.base + off + 2, 2, true));
  }
}

uint64_t SystemEmulator::Impl::Tss64Read(uint32_t offset, uint32_t ext) {
  if (offset + 7 > s.tr.limit) TS((s.tr.selector & 0xFFFC) | ext);
  return LinReadU(s.tr.base + offset, 8, true);
}

namespace {
// Checks and loads the stack segment for an inner-privilege transfer (interrupt, call gate).
}  // namespace

void SystemEmulator::Impl::DeliverProtected(const Event& ev) {
  uint32_t ext = ev.ext();
  uint32_t idt_err = uint32_t{ev.vector} * 8 + 2 + ext;
  bool software =
      ev.kind == InterruptKind::kSoftware || ev.kind == InterruptKind::kSoftwareException;
  if (uint32_t{ev.vector} * 8 + 7 > s.idtr.limit) GP(idt_err);
  uint64_t lo = LinReadU(s.idtr.base + uint64_t{ev.vector} * 8, 8, true);
  GateDescriptor g = DecodeGate(lo, 0, false);
  bool valid = g.system && (g.type == sys_type::kTaskGate || g.type == sys_type::kIntGate16 ||
                            g.type == sys_type::kTrapGate16 || g.type == sys_type::kIntGate ||
                            g.type == sys_type::kTrapGate);
  if (!valid) GP(idt_err);
  int cpl = Cpl();
  if (software && g.dpl < cpl) GP(idt_err);
  if (!g.present) NP(idt_err);
  if (g.type == sys_type::kTaskGate)
    Unsupported(
        fmt::format("task gate in the IDT (vector {:#x}): hardware task switching", ev.vector));
  bool gate32 = (g.type & 8) != 0;
  bool int_gate = (g.type & 1) == 0;
  uint16_t sel = g.selector;
  if (selector::IsNull(sel)) GP(ext);
  uint64_t dlo;
  if (!ReadDescriptor(sel, &dlo)) GP((sel & 0xFFFC) | ext);
  SegmentCache cs = DecodeSegmentDescriptor(dlo, sel);
  if (!SegIsCode(cs) || cs.dpl() > cpl) GP((sel & 0xFFFC) | ext);
  if (!(cs.attr & seg_attr::kP)) NP((sel & 0xFFFC) | ext);
  bool conforming = (cs.attr & seg_attr::kTypeConforming) != 0;
  bool inner = !conforming && cs.dpl() < cpl;
  bool v86 = V86();
  if (v86 && !(inner && cs.dpl() == 0)) GP((sel & 0xFFFC) | ext);
  int new_cpl = inner ? cs.dpl() : cpl;
  uint64_t target = gate32 ? g.offset : (g.offset & 0xFFFF);
  if (target > cs.limit) GP(ext);

  unsigned w = gate32 ? 4 : 2;
  uint64_t flags = s.rflags;
  if (IsFaultClass(ev)) flags |= rflags::kRf;
  // Frame in memory order (lowest address first).
  uint64_t vals[10];
  int n = 0;
  if (ev.has_error) vals[n++] = ev.error;
  vals[n++] = s.rip;
  vals[n++] = s.seg[kCs].selector;
  vals[n++] = flags;
  SegmentCache ss_cache = s.seg[kSs];
  uint64_t sp = Sp();
  uint64_t sp_mask = SpMask();
  uint16_t new_ss = s.seg[kSs].selector;
  if (inner) {
    vals[n++] = s.gpr[kRsp] & SpMask();
    vals[n++] = s.seg[kSs].selector;
    if (v86) {
      vals[n++] = s.seg[kEs].selector;
      vals[n++] = s.seg[kDs].selector;
      vals[n++] = s.seg[kFs].selector;
      vals[n++] = s.seg[kGs].selector;
    }
    uint64_t new_sp;
    TssStack(new_cpl, ext, &new_ss, &new_sp);
    uint32_t ss_err = (new_ss & 0xFFFC) | ext;
    if (selector::IsNull(new_ss)) TS(ext);
    uint64_t slo;
    if (!ReadDescriptor(new_ss, &slo)) TS(ss_err);
    ss_cache = DecodeSegmentDescriptor(slo, new_ss);
    if ((new_ss & 3) != new_cpl || ss_cache.dpl() != new_cpl || !(ss_cache.attr & seg_attr::kS) ||
        (ss_cache.attr & seg_attr::kTypeCode) || !(ss_cache.attr & seg_attr::kTypeWritable))
      TS(ss_err);
    if (!(ss_cache.attr & seg_attr::kP)) SSF(ss_err);
    SetAccessed(new_ss, &slo);
    ss_cache.attr |= seg_attr::kTypeAccessed;
    sp_mask = (ss_cache.attr & seg_attr::kDb) ? 0xFFFFFFFFull : 0xFFFFull;
    sp = new_sp & sp_mask;
  }
  uint8_t frame[80];
  for (int i = 0; i < n; ++i) {
    uint64_t v = vals[i];
    std::memcpy(frame + i * w, &v, w);
  }
  uint64_t frame_sp = (sp - n * w) & sp_mask;
  uint64_t linear;
  try {
    linear = CheckedLinear(ss_cache, true, frame_sp, n * w, MemAccess::kWrite, false);
  } catch (const GuestFault&) {
    SSF(inner ? ((new_ss & 0xFFFC) | ext) : ext);
  }
  WriteFrame(linear, frame, static_cast<unsigned>(n), w, new_cpl);

  // Commit.
  if (inner) {
    s.seg[kSs] = ss_cache;
    s.gpr[kRsp] = (s.gpr[kRsp] & ~sp_mask) | frame_sp;
    if (sp_mask == 0xFFFFFFFFull) s.gpr[kRsp] = frame_sp;
  } else {
    SetSp(frame_sp);
  }
  SetCs(cs, sel, new_cpl);
  s.rip = target;
  s.rflags &= ~(rflags::kTf | rflags::kNt | rflags::kRf | rflags::kVm);
  if (int_gate) s.rflags &= ~rflags::kIf;
  if (v86) {
    for (SegReg r : {kEs, kDs, kFs, kGs}) s.seg[r] = NullSegment(0);
  }
}

void SystemEmulator::Impl::DeliverLong(const Event& ev) {
  uint32_t ext = ev.ext();
  uint32_t idt_err = uint32_t{ev.vector} * 8 + 2 + ext;
  bool software =
      ev.kind == InterruptKind::kSoftware || ev.kind == InterruptKind::kSoftwareException;
  if (uint32_t{ev.vector} * 16 + 15 > s.idtr.limit) GP(idt_err);
  uint64_t raw[2];
  LinRead(s.idtr.base + uint64_t{ev.vector} * 16, raw, 16, true);
  GateDescriptor g = DecodeGate(raw[0], raw[1], true);
  if (!g.system || (g.type != sys_type::kIntGate && g.type != sys_type::kTrapGate) ||
      ((raw[1] >> 40) & 0x1F) != 0)
    GP(idt_err);
  int cpl = Cpl();
  if (software && g.dpl < cpl) GP(idt_err);
  if (!g.present) NP(idt_err);
  uint16_t sel = g.selector;
  if (selector::IsNull(sel)) GP(ext);
  uint64_t dlo;
  if (!ReadDescriptor(sel, &dlo)) GP((sel & 0xFFFC) | ext);
  SegmentCache cs = DecodeSegmentDescriptor(dlo, sel);
  if (!SegIsCode(cs) || cs.dpl() > cpl) GP((sel & 0xFFFC) | ext);
  if (!(cs.attr & seg_attr::kL) || (cs.attr & seg_attr::kDb)) GP((sel & 0xFFFC) | ext);
  if (!(cs.attr & seg_attr::kP)) NP((sel & 0xFFFC) | ext);
  bool conforming = (cs.attr & seg_attr::kTypeConforming) != 0;
  bool inner = !conforming && cs.dpl() < cpl;
  int new_cpl = inner ? cs.dpl() : cpl;

  uint64_t rsp;
  if (g.ist) {
    rsp = Tss64Read(36 + (g.ist - 1) * 8u, ext);
  } else if (inner) {
    rsp = Tss64Read(4 + static_cast<uint32_t>(new_cpl) * 8, ext);
  } else {
    rsp = s.gpr[kRsp];
  }
  if (!Canonical(rsp)) SSF(ext);
  rsp &= ~0xFull;
  uint64_t flags = s.rflags;
  if (IsFaultClass(ev)) flags |= rflags::kRf;
  uint64_t frame[6];
  int n = 0;
  if (ev.has_error) frame[n++] = ev.error;
  frame[n++] = s.rip;
  frame[n++] = s.seg[kCs].selector;
  frame[n++] = flags;
  frame[n++] = s.gpr[kRsp];
  frame[n++] = s.seg[kSs].selector;
  uint64_t new_rsp = rsp - n * 8;
  if (!Canonical(new_rsp)) SSF(ext);
  if (!Canonical(g.offset)) GP(ext);
  WriteFrame(new_rsp, frame, static_cast<unsigned>(n), 8, new_cpl);

  if (inner) {
    s.seg[kSs] = NullSegment(static_cast<uint16_t>(new_cpl));
    s.seg[kSs].attr |= static_cast<uint32_t>(new_cpl) << seg_attr::kDplShift;
  }
  s.gpr[kRsp] = new_rsp;
  SetCs(cs, sel, new_cpl);
  s.rip = g.offset;
  s.rflags &= ~(rflags::kTf | rflags::kNt | rflags::kRf | rflags::kVm);
  if (g.type == sys_type::kIntGate) s.rflags &= ~rflags::kIf;
}

// ----------------------------------------------------------------------------------------------
// INT n, INT3, INTO, INT1

void SystemEmulator::Impl::DoInt(uint8_t vector, InterruptKind kind) {
  if (kind == InterruptKind::kSoftware && V86() && Iopl() < 3) GP(0);
  // The interrupt is a trap: the frame holds the address of the next instruction. Deliver it
  // directly so faults during delivery get the event's EXT semantics.
  s.rip = next_rip;
  suppress_single_step = true;
  Event ev;
  ev.vector = vector;
  ev.kind = kind;
  ev.is_exception = kind != InterruptKind::kSoftware;
  DeliverOnce(ev);
}

// ----------------------------------------------------------------------------------------------
// IRET

void SystemEmulator::Impl::DoIret() {
  unsigned size = in.operand_width / 8;
  suppress_single_step = true;
  if (Real()) {
    uint64_t sp = Sp();
    uint64_t ip = ReadU(kSs, sp, size);
    uint16_t cs = static_cast<uint16_t>(ReadU(kSs, (sp + size) & SpMask(), size));
    uint64_t fl = ReadU(kSs, (sp + 2 * size) & SpMask(), size);
    if (ip > s.seg[kCs].limit) GP(0);
    if (size == 4) {
      s.rflags = (fl & 0x257FD5) | (s.rflags & 0x1A0000) | rflags::kFixed1;
    } else {
      s.rflags = (s.rflags & ~0xFFFFull) | (fl & 0x7FD5) | rflags::kFixed1;
    }
    SetSp(sp + 3 * size);
    s.seg[kCs] = RealModeSegment(cs, false, s.seg[kCs]);
    s.rip = ip;
    return;
  }
  if (V86()) {
    if (Iopl() < 3) GP(0);
    uint64_t sp = Sp();
    uint64_t ip = ReadU(kSs, sp, size);
    uint16_t cs = static_cast<uint16_t>(ReadU(kSs, (sp + size) & SpMask(), size));
    uint64_t fl = ReadU(kSs, (sp + 2 * size) & SpMask(), size);
    if (ip > 0xFFFF) GP(0);
    uint64_t keep = rflags::kVm | rflags::kIoplMask | rflags::kVip | rflags::kVif;
    if (size == 2) keep |= ~0xFFFFull;
    s.rflags = (s.rflags & keep) | (fl & ~keep & rflags::kDefined) | rflags::kFixed1;
    SetSp(sp + 3 * size);
    s.seg[kCs] = RealModeSegment(cs, true, s.seg[kCs]);
    s.rip = ip;
    return;
  }
  if (s.rflags & rflags::kNt) {
    if (s.long_mode_active()) GP(0);
    Unsupported("IRET with EFLAGS.NT set (return from a nested task: hardware task switching)");
  }
  DoIretProtected(size);
}

void SystemEmulator::Impl::DoIretProtected(unsigned size) {
  uint64_t sp = Sp();
  auto rd = [&](int idx) { return ReadU(kSs, (sp + idx * size) & SpMask(), size); };
  uint64_t new_ip = rd(0);
  uint16_t new_cs = static_cast<uint16_t>(rd(1));
  uint64_t new_flags = rd(2);
  int cpl = Cpl();
  bool lma = s.long_mode_active();

  if (!lma && size == 4 && (new_flags & rflags::kVm) && cpl == 0) {
    // Return to virtual-8086 mode.
    uint64_t new_esp = rd(3);
    uint16_t vals[5];
    for (int i = 0; i < 5; ++i) vals[i] = static_cast<uint16_t>(rd(4 + i));  // SS ES DS FS GS
    if ((new_ip & 0xFFFF) > 0xFFFF) GP(0);
    s.rflags = (new_flags & rflags::kDefined) | rflags::kFixed1;
    s.seg[kCs] = RealModeSegment(new_cs, true, s.seg[kCs]);
    s.seg[kSs] = RealModeSegment(vals[0], true, s.seg[kSs]);
    s.seg[kEs] = RealModeSegment(vals[1], true, s.seg[kEs]);
    s.seg[kDs] = RealModeSegment(vals[2], true, s.seg[kDs]);
    s.seg[kFs] = RealModeSegment(vals[3], true, s.seg[kFs]);
    s.seg[kGs] = RealModeSegment(vals[4], true, s.seg[kGs]);
    s.gpr[kRsp] = new_esp & 0xFFFFFFFF;
    s.rip = new_ip & 0xFFFF;
    return;
  }

  if (selector::IsNull(new_cs)) GP(0);
  uint64_t lo;
  if (!ReadDescriptor(new_cs, &lo)) GP(new_cs & 0xFFFC);
  SegmentCache cs = DecodeSegmentDescriptor(lo, new_cs);
  int rpl = new_cs & 3;
  if (!SegIsCode(cs) || rpl < cpl) GP(new_cs & 0xFFFC);
  bool conforming = (cs.attr & seg_attr::kTypeConforming) != 0;
  if (conforming ? cs.dpl() > rpl : cs.dpl() != rpl) GP(new_cs & 0xFFFC);
  if (!(cs.attr & seg_attr::kP)) NP(new_cs & 0xFFFC);
  if (lma && (cs.attr & seg_attr::kL) && (cs.attr & seg_attr::kDb)) GP(new_cs & 0xFFFC);
  bool target64 = lma && (cs.attr & seg_attr::kL);
  bool outer = rpl > cpl;

  bool load_ss = Mode64() || outer;
  SegmentCache ss;
  uint64_t new_sp = 0;
  if (load_ss) {
    new_sp = rd(3);
    uint16_t new_ss = static_cast<uint16_t>(rd(4));
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
  }
  if (size == 2) new_ip &= 0xFFFF;
  if (target64) {
    if (!Canonical(new_ip)) GP(0);
  } else {
    if (size == 8) new_ip &= 0xFFFFFFFF;
    if (new_ip > cs.limit) GP(0);
  }

  // Flags: which bits IRET may change depends on the old CPL and IOPL.
  uint64_t changeable = rflags::kArith | rflags::kTf | rflags::kDf | rflags::kNt | rflags::kRf |
                        rflags::kAc | rflags::kId;
  if (cpl <= Iopl()) changeable |= rflags::kIf;
  if (cpl == 0) changeable |= rflags::kIoplMask | rflags::kVif | rflags::kVip;
  if (size == 2) changeable &= 0xFFFF;
  s.rflags = (s.rflags & ~changeable) | (new_flags & changeable) | rflags::kFixed1;

  SetCs(cs, new_cs, rpl);
  s.rip = new_ip;
  if (load_ss) {
    s.seg[kSs] = ss;
    if (Mode64() || size == 8) {
      s.gpr[kRsp] = new_sp;
    } else {
      uint64_t mask = (ss.attr & seg_attr::kDb) ? 0xFFFFFFFFull : 0xFFFFull;
      s.gpr[kRsp] = (s.gpr[kRsp] & ~mask) | (new_sp & mask);
      if (mask == 0xFFFFFFFFull) s.gpr[kRsp] = new_sp & mask;
    }
  } else {
    SetSp(sp + 3 * size);
  }
  if (outer) InvalidateSegmentsForCpl(rpl);
}

}  // namespace rove
