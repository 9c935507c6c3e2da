// System emulator: entry points, fetch/decode/dispatch, and the memory, stack, register and
// operand helpers every instruction uses.
#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "emulator_impl.h"

namespace rove {

// ----------------------------------------------------------------------------------------------
// Public wrapper

SystemEmulator::SystemEmulator(CpuState& state, GuestMemory& memory, LinearMemory& linear,
                               IoPorts& io, TranslationControl& control, const CpuModel& model,
                               GuestClock& clock)
    : impl_(std::make_unique<Impl>(state, memory, linear, io, control, model, clock)) {}
SystemEmulator::~SystemEmulator() = default;

EmulationResult SystemEmulator::EmulateInstruction() {
  return impl_->Emulate();
}

EmulationResult SystemEmulator::DeliverException(const GuestException& e) {
  Event ev;
  ev.vector = e.vector;
  ev.is_exception = true;
  ev.kind = InterruptKind::kExternal;
  // #BP and #OF reported by translated code come from INT3/INTO.
  if (e.vector == kBp || e.vector == kOf) ev.kind = InterruptKind::kSoftwareException;
  ev.has_error = e.has_error_code;
  ev.error = e.error_code;
  ev.cr2 = e.cr2;
  impl_->stats.exceptions++;
  return impl_->Deliver(ev);
}

EmulationResult SystemEmulator::DeliverInterrupt(uint8_t vector, InterruptKind kind) {
  Event ev;
  ev.vector = vector;
  ev.kind = kind;
  ev.is_exception = false;
  impl_->stats.interrupts++;
  impl_->s.halted = false;
  return impl_->Deliver(ev);
}

bool SystemEmulator::CanTakeInterrupt() const {
  return (impl_->s.rflags & rflags::kIf) && !impl_->s.interrupt_shadow;
}

void SystemEmulator::SetPlatformHooks(PlatformHooks* hooks) {
  impl_->platform = hooks;
}

bool SystemEmulator::CanTakeNmi() const {
  return !impl_->nmi_blocked && !impl_->s.interrupt_shadow;
}

std::string SystemEmulator::DumpState() const {
  return impl_->DumpState();
}
const EmulatorStats& SystemEmulator::stats() const {
  return impl_->stats;
}

std::vector<std::pair<std::string, uint64_t>> SystemEmulator::EmulatedProfile(size_t top_n) const {
  std::vector<std::pair<std::string, uint64_t>> out;
  for (int m = 0; m <= ZYDIS_MNEMONIC_MAX_VALUE; ++m) {
    if (impl_->mnemonic_counts[m])
      out.emplace_back(ZydisMnemonicGetString(static_cast<ZydisMnemonic>(m)),
                       impl_->mnemonic_counts[m]);
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.second > b.second; });
  if (out.size() > top_n) out.resize(top_n);
  return out;
}

void SystemEmulator::set_string_chunk_bytes(uint64_t bytes) {
  impl_->chunk_bytes = bytes ? bytes : 1;
}

void SystemEmulator::Impl::ProbeWrite(uint64_t linear) {
  const LinearAccessMode mode{Cpl() == 3, (s.rflags & rflags::kAc) != 0, false};
  const WalkResult w = lin.Translate(Paging(), mode, TruncLinear(linear), Access::kWrite);
  if (w.ok) return;
  GuestFault f;
  f.e.vector = kPf;
  f.e.has_error_code = true;
  f.e.error_code = w.error_code;
  f.e.cr2 = TruncLinear(linear);
  throw f;
}

void SystemEmulator::FlushTlb() {
  impl_->ClearFetchCache();
}

// ----------------------------------------------------------------------------------------------
// Construction, faults

SystemEmulator::Impl::Impl(CpuState& state, GuestMemory& memory, LinearMemory& linear,
                           IoPorts& io_ports, TranslationControl& control,
                           const CpuModel& cpu_model, GuestClock& guest_clock)
    : s(state),
      mem(memory),
      lin(linear),
      io(io_ports),
      invalidating_control(control, *this),
      tc(invalidating_control),
      model(cpu_model),
      clock(guest_clock) {
  static constexpr ZydisMachineMode kModes[6] = {
      ZYDIS_MACHINE_MODE_LONG_64,        ZYDIS_MACHINE_MODE_LONG_COMPAT_32,
      ZYDIS_MACHINE_MODE_LONG_COMPAT_16, ZYDIS_MACHINE_MODE_LEGACY_32,
      ZYDIS_MACHINE_MODE_LEGACY_16,      ZYDIS_MACHINE_MODE_REAL_16};
  static constexpr ZydisStackWidth kWidths[6] = {ZYDIS_STACK_WIDTH_64, ZYDIS_STACK_WIDTH_32,
                                                 ZYDIS_STACK_WIDTH_16, ZYDIS_STACK_WIDTH_32,
                                                 ZYDIS_STACK_WIDTH_16, ZYDIS_STACK_WIDTH_16};
  for (int i = 0; i < 6; ++i) ZydisDecoderInit(&decoders[i], kModes[i], kWidths[i]);
}

void SystemEmulator::Impl::Raise(uint8_t vector, uint32_t error) {
  GuestFault f;
  f.e.vector = vector;
  f.e.has_error_code = true;
  f.e.error_code = error;
  throw f;
}

void SystemEmulator::Impl::RaiseNoError(uint8_t vector) {
  GuestFault f;
  f.e.vector = vector;
  throw f;
}

void SystemEmulator::Impl::Unsupported(std::string what) {
  throw UnsupportedFeature{std::move(what)};
}

uint64_t SystemEmulator::Impl::CodeMask() const {
  int bits = s.code_bits();
  return bits == 64 ? ~0ull : bits == 32 ? 0xFFFFFFFFull : 0xFFFFull;
}

// ----------------------------------------------------------------------------------------------
// Linear memory

namespace {
[[noreturn]] void RaisePageFault(const PageFault& pf) {
  GuestFault f;
  f.e.vector = kPf;
  f.e.has_error_code = true;
  f.e.error_code = pf.error_code;
  f.e.cr2 = pf.linear;
  throw f;
}
}  // namespace

void SystemEmulator::Impl::LinRead(uint64_t linear, void* dst, size_t len, bool sys) {
  LinearAccessMode m{!sys && Cpl() == 3, (s.rflags & rflags::kAc) != 0, sys};
  if (auto pf = lin.Read(Paging(), m, linear, dst, len)) RaisePageFault(*pf);
}

void SystemEmulator::Impl::LinWrite(uint64_t linear, const void* src, size_t len, bool sys) {
  LinearAccessMode m{!sys && Cpl() == 3, (s.rflags & rflags::kAc) != 0, sys};
  if (auto pf = lin.Write(Paging(), m, linear, src, len)) RaisePageFault(*pf);
}

void SystemEmulator::Impl::LinWriteAs(uint64_t linear, const void* src, size_t len, int cpl) {
  LinearAccessMode m{cpl == 3, (s.rflags & rflags::kAc) != 0, false};
  if (auto pf = lin.Write(Paging(), m, linear, src, len)) RaisePageFault(*pf);
}

void SystemEmulator::Impl::LinReadAs(uint64_t linear, void* dst, size_t len, int cpl) {
  LinearAccessMode m{cpl == 3, (s.rflags & rflags::kAc) != 0, false};
  if (auto pf = lin.Read(Paging(), m, linear, dst, len)) RaisePageFault(*pf);
}

void SystemEmulator::Impl::WriteFrame(uint64_t linear, const void* frame, unsigned count,
                                      unsigned width, int cpl) {
  try {
    LinWriteAs(linear, frame, size_t{count} * width, cpl);
  } catch (const GuestFault&) {
    // Redo slot by slot from the top so the fault names the slot pushed first.
    const uint8_t* p = static_cast<const uint8_t*>(frame);
    for (unsigned i = count; i-- > 0;) {
      uint64_t a = linear + uint64_t{i} * width;
      if (!Mode64() && !s.long_mode_active()) a &= 0xFFFFFFFFull;
      LinWriteAs(a, p + size_t{i} * width, width, cpl);
    }
    throw;  // not reached unless the fault was transient; keep the original fault
  }
}

uint64_t SystemEmulator::Impl::LinReadU(uint64_t linear, unsigned size, bool sys) {
  uint64_t v = 0;
  LinRead(linear, &v, size, sys);
  return v;
}

void SystemEmulator::Impl::LinWriteU(uint64_t linear, uint64_t value, unsigned size, bool sys) {
  LinWrite(linear, &value, size, sys);
}

// ----------------------------------------------------------------------------------------------
// Segmentation

uint64_t SystemEmulator::Impl::CheckedLinear(const SegmentCache& c, bool is_ss, uint64_t offset,
                                             uint64_t size, MemAccess acc, bool mode64) {
  if (mode64) {
    uint64_t base = 0;
    if (&c == &s.seg[kFs] || &c == &s.seg[kGs]) base = c.base;
    uint64_t a = base + offset;
    if (!Canonical(a) || (size > 1 && !Canonical(a + size - 1))) {
      if (is_ss) SSF(0);
      GP(0);
    }
    return a;
  }
  if (s.protected_mode() && !s.v86_mode()) {
    if (!SegIsUsable(c)) {
      if (is_ss) SSF(0);
      GP(0);
    }
    bool code = (c.attr & seg_attr::kTypeCode) != 0;
    if (acc != MemAccess::kRead) {
      if (code || !(c.attr & seg_attr::kTypeWritable)) {
        if (is_ss) SSF(0);
        GP(0);
      }
    } else if (code && !(c.attr & seg_attr::kTypeReadable)) {
      GP(0);
    }
  }
  uint64_t last = offset + size - 1;
  bool bad;
  if (!(c.attr & seg_attr::kTypeCode) && (c.attr & seg_attr::kTypeExpandDown) &&
      s.protected_mode() && !s.v86_mode()) {
    uint64_t upper = (c.attr & seg_attr::kDb) ? 0xFFFFFFFFull : 0xFFFFull;
    bad = offset <= c.limit || last > upper;
  } else {
    bad = last > c.limit || last < offset;
  }
  if (bad) {
    if (is_ss) SSF(0);
    GP(0);
  }
  return (c.base + offset) & 0xFFFFFFFFull;
}

uint64_t SystemEmulator::Impl::SegLinear(SegReg sr, uint64_t offset, uint64_t size, MemAccess acc) {
  return CheckedLinear(s.seg[sr], sr == kSs, offset, size, acc, Mode64());
}

void SystemEmulator::Impl::CheckAlignment(uint64_t linear, unsigned align) {
  if (align > 1 && (linear & (align - 1)) && (s.cr0 & cr0::kAm) && (s.rflags & rflags::kAc) &&
      Cpl() == 3) {
    Raise(kAc, 0);
  }
}

void SystemEmulator::Impl::Read(SegReg sr, uint64_t offset, void* dst, size_t len) {
  uint64_t a = SegLinear(sr, offset, len, MemAccess::kRead);
  if (len == 2 || len == 4 || len == 8) CheckAlignment(a, static_cast<unsigned>(len));
  LinRead(a, dst, len);
}

void SystemEmulator::Impl::Write(SegReg sr, uint64_t offset, const void* src, size_t len) {
  uint64_t a = SegLinear(sr, offset, len, MemAccess::kWrite);
  if (len == 2 || len == 4 || len == 8) CheckAlignment(a, static_cast<unsigned>(len));
  LinWrite(a, src, len);
}

uint64_t SystemEmulator::Impl::ReadU(SegReg sr, uint64_t offset, unsigned size) {
  uint64_t v = 0;
  Read(sr, offset, &v, size);
  return v;
}

void SystemEmulator::Impl::WriteU(SegReg sr, uint64_t offset, uint64_t value, unsigned size) {
  Write(sr, offset, &value, size);
}

// ----------------------------------------------------------------------------------------------
// Stack

uint64_t SystemEmulator::Impl::SpMask() const {
  int b = s.stack_bits();
  return b == 64 ? ~0ull : b == 32 ? 0xFFFFFFFFull : 0xFFFFull;
}

void SystemEmulator::Impl::Push(uint64_t value, unsigned size) {
  uint64_t sp = (Sp() - size) & SpMask();
  WriteU(kSs, sp, value, size);
  SetSp(sp);
}

uint64_t SystemEmulator::Impl::Pop(unsigned size) {
  uint64_t v = ReadU(kSs, Sp(), size);
  SetSp(Sp() + size);
  return v;
}

uint64_t SystemEmulator::Impl::PeekStack(uint64_t delta, unsigned size) {
  return ReadU(kSs, (Sp() + delta) & SpMask(), size);
}

// ----------------------------------------------------------------------------------------------
// Registers and operands

int SystemEmulator::Impl::GprIndex(ZydisRegister r) {
  if (r >= ZYDIS_REGISTER_AL && r <= ZYDIS_REGISTER_BL) return r - ZYDIS_REGISTER_AL;
  if (r >= ZYDIS_REGISTER_AH && r <= ZYDIS_REGISTER_BH) return r - ZYDIS_REGISTER_AH;
  if (r >= ZYDIS_REGISTER_SPL && r <= ZYDIS_REGISTER_R15B) return r - ZYDIS_REGISTER_SPL + 4;
  if (r >= ZYDIS_REGISTER_AX && r <= ZYDIS_REGISTER_R15W) return r - ZYDIS_REGISTER_AX;
  if (r >= ZYDIS_REGISTER_EAX && r <= ZYDIS_REGISTER_R15D) return r - ZYDIS_REGISTER_EAX;
  if (r >= ZYDIS_REGISTER_RAX && r <= ZYDIS_REGISTER_R15) return r - ZYDIS_REGISTER_RAX;
  return -1;
}

SegReg SystemEmulator::Impl::ZydisSeg(ZydisRegister r) {
  switch (r) {
    case ZYDIS_REGISTER_ES:
      return kEs;
    case ZYDIS_REGISTER_CS:
      return kCs;
    case ZYDIS_REGISTER_SS:
      return kSs;
    case ZYDIS_REGISTER_FS:
      return kFs;
    case ZYDIS_REGISTER_GS:
      return kGs;
    default:
      return kDs;
  }
}

uint64_t SystemEmulator::Impl::GetReg(ZydisRegister r) const {
  if (r >= ZYDIS_REGISTER_AH && r <= ZYDIS_REGISTER_BH)
    return (s.gpr[r - ZYDIS_REGISTER_AH] >> 8) & 0xFF;
  if (r == ZYDIS_REGISTER_RIP || r == ZYDIS_REGISTER_EIP || r == ZYDIS_REGISTER_IP) return next_rip;
  int i = GprIndex(r);
  if (i < 0) {
    if (r >= ZYDIS_REGISTER_ES && r <= ZYDIS_REGISTER_GS) return s.seg[ZydisSeg(r)].selector;
    return 0;
  }
  uint64_t v = s.gpr[i];
  switch (ZydisRegisterGetWidth(ZYDIS_MACHINE_MODE_LONG_64, r)) {
    case 8:
      return v & 0xFF;
    case 16:
      return v & 0xFFFF;
    case 32:
      return v & 0xFFFFFFFF;
    default:
      return v;
  }
}

void SystemEmulator::Impl::SetReg(ZydisRegister r, uint64_t v) {
  if (r >= ZYDIS_REGISTER_AH && r <= ZYDIS_REGISTER_BH) {
    uint64_t& g = s.gpr[r - ZYDIS_REGISTER_AH];
    g = (g & ~0xFF00ull) | ((v & 0xFF) << 8);
    return;
  }
  int i = GprIndex(r);
  if (i < 0) return;
  uint64_t& g = s.gpr[i];
  switch (ZydisRegisterGetWidth(ZYDIS_MACHINE_MODE_LONG_64, r)) {
    case 8:
      g = (g & ~0xFFull) | (v & 0xFF);
      break;
    case 16:
      g = (g & ~0xFFFFull) | (v & 0xFFFF);
      break;
    case 32:
      g = v & 0xFFFFFFFF;
      break;
    default:
      g = v;
      break;
  }
}

uint64_t SystemEmulator::Impl::EffectiveAddress(const ZydisDecodedOperand& o) const {
  uint64_t a = 0;
  if (o.mem.base != ZYDIS_REGISTER_NONE) a += GetReg(o.mem.base);
  if (o.mem.index != ZYDIS_REGISTER_NONE) a += GetReg(o.mem.index) * o.mem.scale;
  if (o.mem.disp.has_displacement) a += static_cast<uint64_t>(o.mem.disp.value);
  return a & AddrMask();
}

SegReg SystemEmulator::Impl::OperandSeg(const ZydisDecodedOperand& o) const {
  return ZydisSeg(o.mem.segment);
}

SegReg SystemEmulator::Impl::DataSeg() const {
  uint64_t a = in.attributes;
  if (a & ZYDIS_ATTRIB_HAS_SEGMENT_ES) return kEs;
  if (a & ZYDIS_ATTRIB_HAS_SEGMENT_CS) return kCs;
  if (a & ZYDIS_ATTRIB_HAS_SEGMENT_SS) return kSs;
  if (a & ZYDIS_ATTRIB_HAS_SEGMENT_FS) return kFs;
  if (a & ZYDIS_ATTRIB_HAS_SEGMENT_GS) return kGs;
  return kDs;
}

uint64_t SystemEmulator::Impl::ReadOp(int i) {
  const ZydisDecodedOperand& o = op[i];
  switch (o.type) {
    case ZYDIS_OPERAND_TYPE_REGISTER:
      return GetReg(o.reg.value);
    case ZYDIS_OPERAND_TYPE_MEMORY:
      return ReadU(OperandSeg(o), EffectiveAddress(o), o.size / 8);
    case ZYDIS_OPERAND_TYPE_IMMEDIATE: {
      uint64_t v = o.imm.value.u;
      if (o.size < 64) v &= (1ull << o.size) - 1;
      return v;
    }
    default:
      UD();
  }
}

void SystemEmulator::Impl::WriteOp(int i, uint64_t v) {
  const ZydisDecodedOperand& o = op[i];
  if (o.type == ZYDIS_OPERAND_TYPE_REGISTER) {
    SetReg(o.reg.value, v);
  } else if (o.type == ZYDIS_OPERAND_TYPE_MEMORY) {
    WriteU(OperandSeg(o), EffectiveAddress(o), v, o.size / 8);
  } else {
    UD();
  }
}

bool Parity(uint8_t v) {
  return (__builtin_popcount(v) & 1) == 0;
}

// ----------------------------------------------------------------------------------------------
// Fetch and decode

void SystemEmulator::Impl::Fetch() {
  int mode;
  if (Mode64()) {
    mode = 0;
  } else if (s.long_mode_active()) {
    mode = (s.seg[kCs].attr & seg_attr::kDb) ? 1 : 2;
  } else if (Prot()) {
    mode = (s.seg[kCs].attr & seg_attr::kDb) ? 3 : 4;
  } else {
    mode = 5;
  }
  uint64_t linear;
  size_t avail = 15;
  if (mode == 0) {
    if (!Canonical(s.rip)) GP(0);
    linear = s.rip;
  } else {
    uint64_t eip = s.rip & CodeMask();
    const SegmentCache& cs = s.seg[kCs];
    if (eip > cs.limit) GP(0);
    avail = static_cast<size_t>(std::min<uint64_t>(15, uint64_t{cs.limit} - eip + 1));
    linear = (cs.base + eip) & 0xFFFFFFFFull;
  }
  LinearAccessMode m{Cpl() == 3, false, false};
  size_t first = static_cast<size_t>(std::min<uint64_t>(avail, kPageSize - (linear & 0xFFF)));
  const PagingRegs regs = Paging();
  const uint64_t page = linear & ~uint64_t{0xFFF};
  FetchCacheEntry& fc = fetch_cache[(page >> 12) & (kFetchCacheSize - 1)];
  if (fc.page == page && fc.user == m.user && fc.regs.cr0 == regs.cr0 && fc.regs.cr3 == regs.cr3 &&
      fc.regs.cr4 == regs.cr4 && fc.regs.efer == regs.efer) {
    std::memcpy(bytes, fc.host + (linear & 0xFFF), first);
  } else {
    if (auto pf = lin.Fetch(regs, m, linear, bytes, first)) RaisePageFault(*pf);
    const WalkResult w = lin.Translate(regs, m, linear, Access::kExecute);
    if (const uint8_t* host = w.ok ? mem.HostPointer(w.phys & ~uint64_t{0xFFF}) : nullptr)
      fc = {page, regs, m.user, host};
  }
  // Decoded-instruction cache: a hit needs the same address, mode and bytes (so rewritten code
  // is decoded again). Decoding costs far more than the fetch.
  DecodeCacheEntry& e =
      decode_cache[(linear ^ (linear >> 9) ^ static_cast<uint64_t>(mode)) & (kDecodeCacheSize - 1)];
  if (e.length && e.linear == linear && e.mode == mode && e.length <= first &&
      std::memcmp(e.bytes, bytes, e.length) == 0) {
    in = e.in;
    std::memcpy(op, e.op, sizeof(op));
    next_rip = (s.rip + in.length) & CodeMask();
    return;
  }
  ZyanStatus st = ZydisDecoderDecodeFull(&decoders[mode], bytes, first, &in, op);
  if (ZYAN_SUCCESS(st)) {
    e.linear = linear;
    e.mode = static_cast<uint8_t>(mode);
    e.length = in.length;
    std::memcpy(e.bytes, bytes, in.length);
    e.in = in;
    std::memcpy(e.op, op, sizeof(op));
  }
  if (st == ZYDIS_STATUS_NO_MORE_DATA && first < avail) {
    uint64_t next = mode == 0 ? linear + first : (linear + first) & 0xFFFFFFFFull;
    if (auto pf = lin.Fetch(Paging(), m, next, bytes + first, avail - first)) RaisePageFault(*pf);
    st = ZydisDecoderDecodeFull(&decoders[mode], bytes, avail, &in, op);
  }
  if (st == ZYDIS_STATUS_NO_MORE_DATA || st == ZYDIS_STATUS_INSTRUCTION_TOO_LONG) {
    if (avail < 15 && st == ZYDIS_STATUS_NO_MORE_DATA) GP(0);  // runs past the CS limit
    GP(0);
  }
  if (!ZYAN_SUCCESS(st)) UD();
  next_rip = (s.rip + in.length) & CodeMask();
}

// ----------------------------------------------------------------------------------------------
// The instruction loop step

namespace {
// CpuState without the vector registers: what an instruction that faults must leave unchanged.
constexpr size_t kSnapshotBytes = offsetof(CpuState, xsave);
}  // namespace

EmulationResult SystemEmulator::Impl::Emulate() {
  alignas(64) uint8_t snapshot[kSnapshotBytes];
  std::memcpy(snapshot, &s, kSnapshotBytes);
  uint64_t flags_before = s.rflags;
  bool shadow_before = s.interrupt_shadow;
  suppress_single_step = false;
  set_shadow = false;
  halted = false;
  string_partial = false;
  insn_rip = s.rip;
  stats.instructions++;
  EmulationOutcome outcome;
  try {
    s.interrupt_shadow = false;
    Fetch();
    mnemonic_counts[in.mnemonic]++;
    if (in.attributes & ZYDIS_ATTRIB_HAS_LOCK) UD();
    outcome = Execute();
  } catch (const GuestFault& f) {
    // Faults leave the instruction's architectural effects undone (string instructions commit
    // their completed iterations themselves and rethrow with the registers updated).
    uint64_t rcx = s.gpr[kRcx], rsi = s.gpr[kRsi], rdi = s.gpr[kRdi];
    bool string_progress = string_partial;
    std::memcpy(static_cast<void*>(&s), snapshot, kSnapshotBytes);
    if (string_progress) {
      s.gpr[kRcx] = rcx;
      s.gpr[kRsi] = rsi;
      s.gpr[kRdi] = rdi;
    }
    s.interrupt_shadow = shadow_before;
    Event ev;
    ev.vector = f.e.vector;
    ev.is_exception = true;
    ev.has_error = f.e.has_error_code;
    ev.error = f.e.error_code;
    ev.cr2 = f.e.cr2;
    stats.exceptions++;
    return Deliver(ev);
  } catch (const UnsupportedFeature& u) {
    std::memcpy(static_cast<void*>(&s), snapshot, kSnapshotBytes);
    return Shutdown(fmt::format("unsupported: {}", u.what));
  }
  s.interrupt_shadow = set_shadow;
  // RF is cleared once an instruction completes (IRET loads it from the frame).
  if (in.mnemonic != ZYDIS_MNEMONIC_IRET && in.mnemonic != ZYDIS_MNEMONIC_IRETD &&
      in.mnemonic != ZYDIS_MNEMONIC_IRETQ) {
    s.rflags &= ~rflags::kRf;
  } else {
    nmi_blocked = false;  // a completed IRET ends NMI blocking
  }
  if (outcome == EmulationOutcome::kHalt) s.halted = true;
  // Single-step trap after the instruction when TF was set before it.
  if ((flags_before & rflags::kTf) && !suppress_single_step) {
    s.dr[6] |= 1ull << 14;  // BS
    Event ev;
    ev.vector = kDb;
    ev.is_exception = true;
    ev.kind = InterruptKind::kExternal;
    EmulationResult r = Deliver(ev);
    if (r.outcome != EmulationOutcome::kContinue) return r;
    s.halted = false;
    return {};
  }
  EmulationResult r;
  r.outcome = outcome;
  return r;
}

EmulationResult SystemEmulator::Impl::Shutdown(const std::string& why) {
  EmulationResult r;
  r.outcome = EmulationOutcome::kShutdown;
  r.message = why + "\n" + DumpState();
  return r;
}

std::string SystemEmulator::Impl::DumpState() const {
  std::string out;
  static const char* kNames[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                   "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};
  for (int i = 0; i < 16; ++i) {
    out += fmt::format("{:>3}={:016x}{}", kNames[i], s.gpr[i], (i % 4 == 3) ? "\n" : " ");
  }
  out += fmt::format("rip={:016x} rflags={:08x} cpl={} mode={}\n", s.rip, s.rflags, Cpl(),
                     Mode64()                 ? "64-bit"
                     : s.long_mode_active()   ? "compat"
                     : s.v86_mode() && Prot() ? "v8086"
                     : s.protected_mode()     ? "protected"
                                              : "real");
  static const char* kSegs[6] = {"es", "cs", "ss", "ds", "fs", "gs"};
  for (int i = 0; i < 6; ++i) {
    const SegmentCache& c = s.seg[i];
    out += fmt::format("{}={:04x} base={:016x} limit={:08x} attr={:05x}\n", kSegs[i], c.selector,
                       c.base, c.limit, c.attr);
  }
  out +=
      fmt::format("ldtr={:04x} base={:016x} limit={:08x}  tr={:04x} base={:016x} limit={:08x}\n",
                  s.ldtr.selector, s.ldtr.base, s.ldtr.limit, s.tr.selector, s.tr.base, s.tr.limit);
  out += fmt::format("gdtr={:016x}/{:04x} idtr={:016x}/{:04x}\n", s.gdtr.base, s.gdtr.limit,
                     s.idtr.base, s.idtr.limit);
  out += fmt::format("cr0={:08x} cr2={:016x} cr3={:016x} cr4={:08x} efer={:x}", s.cr0, s.cr2, s.cr3,
                     s.cr4, s.efer);
  return out;
}

}  // namespace rove
