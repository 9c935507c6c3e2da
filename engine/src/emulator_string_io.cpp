// String instructions (MOVS/STOS/LODS/CMPS/SCAS/INS/OUTS with REP/REPE/REPNE, DF, every
// address size, segment overrides) and port I/O (IN/OUT with the TSS I/O permission bitmap).
//
// Large REP MOVS/STOS take a bulk path: whole page-bounded blocks per step. A REP instruction
// runs at most `chunk_bytes` per call and then returns with RIP still at itself and the count
// and pointer registers updated, so interrupts are taken within a bounded time (as hardware
// does at its interrupt windows). A fault after some iterations leaves the registers at the
// faulting iteration, also as hardware does.
#include <algorithm>
#include <cstring>
#include <vector>

#include "emulator_impl.h"
#include "rove/engine/vmware_backdoor.h"

namespace rove {
namespace {

enum class StrOp { kMovs, kStos, kLods, kCmps, kScas, kIns, kOuts };

uint64_t MaskOf(unsigned size) {
  return size == 8 ? ~0ull : (1ull << (size * 8)) - 1;
}

// Flags of `a - b` for an operand of `size` bytes.
uint64_t SubFlags(uint64_t a, uint64_t b, unsigned size) {
  uint64_t m = MaskOf(size);
  a &= m;
  b &= m;
  uint64_t r = (a - b) & m;
  uint64_t sign = 1ull << (size * 8 - 1);
  uint64_t f = 0;
  if (a < b) f |= rflags::kCf;
  if (Parity(static_cast<uint8_t>(r))) f |= rflags::kPf;
  if ((a ^ b ^ r) & 0x10) f |= rflags::kAf;
  if (r == 0) f |= rflags::kZf;
  if (r & sign) f |= rflags::kSf;
  if (((a ^ b) & (a ^ r)) & sign) f |= rflags::kOf;
  return f;
}

}  // namespace

void SystemEmulator::Impl::CheckIoPermission(uint16_t port, unsigned width) {
  if (Real()) return;
  if (!V86() && Cpl() <= Iopl()) return;
  // The I/O permission bitmap of a 32-bit (or 64-bit) TSS.
  uint32_t type = s.tr.attr & seg_attr::kTypeMask;
  if (!SegIsUsable(s.tr) || (type != sys_type::kTssAvail && type != sys_type::kTssBusy)) GP(0);
  if (s.tr.limit < 103) GP(0);
  uint16_t io_base = static_cast<uint16_t>(LinReadU(s.tr.base + 102, 2, true));
  uint32_t byte = io_base + port / 8u;
  if (byte + 1 > s.tr.limit) GP(0);
  uint16_t bits = static_cast<uint16_t>(LinReadU(s.tr.base + byte, 2, true));
  uint16_t want = static_cast<uint16_t>(((1u << width) - 1) << (port & 7));
  if (bits & want) GP(0);
}

EmulationOutcome SystemEmulator::Impl::DoInOut() {
  bool is_in = in.mnemonic == ZYDIS_MNEMONIC_IN;
  const ZydisDecodedOperand& port_op = is_in ? op[1] : op[0];
  const ZydisDecodedOperand& data_op = is_in ? op[0] : op[1];
  uint16_t port = port_op.type == ZYDIS_OPERAND_TYPE_IMMEDIATE
                      ? static_cast<uint16_t>(port_op.imm.value.u & 0xFF)
                      : static_cast<uint16_t>(s.gpr[kRdx] & 0xFFFF);
  unsigned width = data_op.size / 8;
  // The VMware backdoor answers at any privilege level, as VMware's does (its tools call it
  // from user mode).
  if (is_in && model.vmware_interface() && IsVmwareBackdoorCall(s, port, width)) {
    HandleVmwareBackdoor(s, {model.tsc_hz(), model.apic_bus_hz()});
    return EmulationOutcome::kContinue;
  }
  CheckIoPermission(port, width);
  if (is_in) {
    uint32_t v = io.In(port, width);
    SetReg(data_op.reg.value, v);
  } else {
    io.Out(port, width, static_cast<uint32_t>(GetReg(data_op.reg.value) & MaskOf(width)));
  }
  return EmulationOutcome::kContinue;
}

EmulationOutcome SystemEmulator::Impl::DoString() {
  StrOp kind;
  unsigned size;
  switch (in.mnemonic) {
    case ZYDIS_MNEMONIC_MOVSB:
      kind = StrOp::kMovs;
      size = 1;
      break;
    case ZYDIS_MNEMONIC_MOVSW:
      kind = StrOp::kMovs;
      size = 2;
      break;
    case ZYDIS_MNEMONIC_MOVSD:
      kind = StrOp::kMovs;
      size = 4;
      break;
    case ZYDIS_MNEMONIC_MOVSQ:
      kind = StrOp::kMovs;
      size = 8;
      break;
    case ZYDIS_MNEMONIC_STOSB:
      kind = StrOp::kStos;
      size = 1;
      break;
    case ZYDIS_MNEMONIC_STOSW:
      kind = StrOp::kStos;
      size = 2;
      break;
    case ZYDIS_MNEMONIC_STOSD:
      kind = StrOp::kStos;
      size = 4;
      break;
    case ZYDIS_MNEMONIC_STOSQ:
      kind = StrOp::kStos;
      size = 8;
      break;
    case ZYDIS_MNEMONIC_LODSB:
      kind = StrOp::kLods;
      size = 1;
      break;
    case ZYDIS_MNEMONIC_LODSW:
      kind = StrOp::kLods;
      size = 2;
      break;
    case ZYDIS_MNEMONIC_LODSD:
      kind = StrOp::kLods;
      size = 4;
      break;
    case ZYDIS_MNEMONIC_LODSQ:
      kind = StrOp::kLods;
      size = 8;
      break;
    case ZYDIS_MNEMONIC_CMPSB:
      kind = StrOp::kCmps;
      size = 1;
      break;
    case ZYDIS_MNEMONIC_CMPSW:
      kind = StrOp::kCmps;
      size = 2;
      break;
    case ZYDIS_MNEMONIC_CMPSD:
      kind = StrOp::kCmps;
      size = 4;
      break;
    case ZYDIS_MNEMONIC_CMPSQ:
      kind = StrOp::kCmps;
      size = 8;
      break;
    case ZYDIS_MNEMONIC_SCASB:
      kind = StrOp::kScas;
      size = 1;
      break;
    case ZYDIS_MNEMONIC_SCASW:
      kind = StrOp::kScas;
      size = 2;
      break;
    case ZYDIS_MNEMONIC_SCASD:
      kind = StrOp::kScas;
      size = 4;
      break;
    case ZYDIS_MNEMONIC_SCASQ:
      kind = StrOp::kScas;
      size = 8;
      break;
    case ZYDIS_MNEMONIC_INSB:
      kind = StrOp::kIns;
      size = 1;
      break;
    case ZYDIS_MNEMONIC_INSW:
      kind = StrOp::kIns;
      size = 2;
      break;
    case ZYDIS_MNEMONIC_INSD:
      kind = StrOp::kIns;
      size = 4;
      break;
    case ZYDIS_MNEMONIC_OUTSB:
      kind = StrOp::kOuts;
      size = 1;
      break;
    case ZYDIS_MNEMONIC_OUTSW:
      kind = StrOp::kOuts;
      size = 2;
      break;
    case ZYDIS_MNEMONIC_OUTSD:
      kind = StrOp::kOuts;
      size = 4;
      break;
    default:
      UD();
  }
  uint64_t attrs = in.attributes;
  bool rep = (attrs & (ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE | ZYDIS_ATTRIB_HAS_REPNE)) != 0;
  bool repe = (attrs & (ZYDIS_ATTRIB_HAS_REPE | ZYDIS_ATTRIB_HAS_REP)) != 0;
  bool is_compare = kind == StrOp::kCmps || kind == StrOp::kScas;
  if (is_compare && (attrs & ZYDIS_ATTRIB_HAS_REPNE)) repe = false;
  uint64_t amask = AddrMask();
  SegReg src_seg = DataSeg();
  uint16_t port = static_cast<uint16_t>(s.gpr[kRdx]);
  if (kind == StrOp::kIns || kind == StrOp::kOuts) CheckIoPermission(port, size);

  // Register views with the address size.
  auto set_masked = [&](Gpr r, uint64_t v) {
    if (amask == 0xFFFF) {
      s.gpr[r] = (s.gpr[r] & ~0xFFFFull) | (v & 0xFFFF);
    } else {
      s.gpr[r] = v & amask;
    }
  };
  uint64_t count = rep ? (s.gpr[kRcx] & amask) : 1;
  uint64_t si = s.gpr[kRsi] & amask, di = s.gpr[kRdi] & amask;
  bool down = (s.rflags & rflags::kDf) != 0;
  uint64_t step = down ? (0 - uint64_t{size}) : uint64_t{size};
  string_partial = true;

  // Commit the loop variables (also on a fault, before the fault is rethrown).
  auto commit = [&]() {
    if (rep) set_masked(kRcx, count);
    if (kind == StrOp::kMovs || kind == StrOp::kLods || kind == StrOp::kCmps ||
        kind == StrOp::kOuts)
      set_masked(kRsi, si);
    if (kind != StrOp::kLods && kind != StrOp::kOuts) set_masked(kRdi, di);
  };

  if (rep && count == 0) return EmulationOutcome::kContinue;
  uint64_t budget = std::max<uint64_t>(chunk_bytes / size, 1);
  uint64_t rax_mask = MaskOf(size);
  // Cleared when a run reaches past a segment limit: the elements before the limit are done
  // one by one and the fault comes at the first one beyond it.
  bool whole_runs = true;
  try {
    while (count > 0 && budget > 0) {
      // Bulk path: MOVS/STOS over a run that stays within one page on each side and does not
      // wrap the address size.
      if (whole_runs && rep && (kind == StrOp::kMovs || kind == StrOp::kStos) && count >= 2) {
        uint64_t n = std::min(count, budget);
        // Elements before the destination (and source) page boundary in the direction.
        uint64_t di_lin = SegLinear(kEs, di, size, MemAccess::kWrite);
        auto room = [&](uint64_t lin) {
          uint64_t off = lin & (kPageSize - 1);
          // Going down, the first element must itself end within the page: otherwise the block
          // would run into the next linear page, which need not be the next host page.
          if (down) return off + size <= kPageSize ? (off / size) + 1 : 0;
          return (kPageSize - off) / size;
        };
        n = std::min(n, room(di_lin));
        uint64_t si_lin = 0;
        if (kind == StrOp::kMovs) {
          si_lin = SegLinear(src_seg, si, size, MemAccess::kRead);
          n = std::min(n, room(si_lin));
        }
        // No wrap of the offsets within the address size.
        uint64_t span = n * size;
        auto nowrap = [&](uint64_t off) {
          return down ? off + size >= span : off + span - 1 <= amask;
        };
        bool ok = n >= 2 && nowrap(di) && (kind != StrOp::kMovs || nowrap(si));
        // Overlapping MOVS: copying away from the overlap (forward with the destination below
        // the source, backward with it above) is memmove; copying into it replicates the
        // source every `distance` bytes, which chunks of that size reproduce when an element is
        // no larger than the distance. Otherwise the element path keeps the exact order.
        uint64_t chunk = 0;
        if (ok && kind == StrOp::kMovs) {
          uint64_t lo_d = down ? di_lin - (span - size) : di_lin;
          uint64_t lo_s = down ? si_lin - (span - size) : si_lin;
          if (lo_d < lo_s + span && lo_s < lo_d + span && lo_d != lo_s) {
            const bool into = down ? lo_d < lo_s : lo_d > lo_s;
            const uint64_t distance = lo_d > lo_s ? lo_d - lo_s : lo_s - lo_d;
            if (into) {
              chunk = distance;
              if (distance < size) ok = false;
            }
          }
        }
        uint8_t* host_dst = nullptr;
        const uint8_t* host_src = nullptr;
        uint64_t dst = 0, src = 0, dst_phys = 0;
        if (ok) {
          uint64_t lo_di = down ? di - (span - size) : di;
          uint64_t lo_si = down ? si - (span - size) : si;
          try {
            dst = SegLinear(kEs, lo_di, span, MemAccess::kWrite);
            if (kind == StrOp::kMovs) src = SegLinear(src_seg, lo_si, span, MemAccess::kRead);
          } catch (const GuestFault&) {
            ok = false;
            whole_runs = false;
          }
        }
        if (ok) {
          CheckAlignment(dst, size);
          if (kind == StrOp::kMovs) CheckAlignment(src, size);
          // RAM on both sides: copy host memory directly (one walk per page and side). MMIO or
          // a translation that faults takes the element path, which reports the exact fault.
          LinearAccessMode mode{Cpl() == 3, (s.rflags & rflags::kAc) != 0, false};
          if (kind == StrOp::kMovs) {
            WalkResult ws = lin.Translate(Paging(), mode, src, Access::kRead);
            if (ws.ok && mem.IsRam(ws.phys)) host_src = mem.HostPointer(ws.phys);
            ok = host_src != nullptr;
          }
          if (ok) {
            WalkResult wd = lin.Translate(Paging(), mode, dst, Access::kWrite);
            if (wd.ok && mem.IsRam(wd.phys)) {
              host_dst = mem.HostPointer(wd.phys);
              dst_phys = wd.phys;
            }
            ok = host_dst != nullptr;
          }
        }
        if (ok) {
          mem.NotifyWrite(dst_phys, span);
          if (kind == StrOp::kMovs && chunk) {
            if (!down) {
              for (uint64_t k = 0; k < span; k += chunk)
                std::memcpy(host_dst + k, host_src + k, std::min(chunk, span - k));
            } else {
              for (uint64_t end = span; end > 0; end -= std::min(chunk, end)) {
                const uint64_t start = end - std::min(chunk, end);
                std::memcpy(host_dst + start, host_src + start, end - start);
              }
            }
          } else if (kind == StrOp::kMovs) {
            std::memmove(host_dst, host_src, span);
          } else if (size == 1) {
            std::memset(host_dst, static_cast<uint8_t>(s.gpr[kRax]), span);
          } else {
            uint64_t v = s.gpr[kRax];
            for (uint64_t i = 0; i < span; i += size) std::memcpy(host_dst + i, &v, size);
          }
          count -= n;
          budget -= n;
          di = (di + step * n) & amask;
          if (kind == StrOp::kMovs) si = (si + step * n) & amask;
          stats.string_bytes += span;
          continue;
        }
      }
      // One element.
      switch (kind) {
        case StrOp::kMovs: {
          uint64_t v = ReadU(src_seg, si, size);
          WriteU(kEs, di, v, size);
          si = (si + step) & amask;
          di = (di + step) & amask;
          break;
        }
        case StrOp::kStos:
          WriteU(kEs, di, s.gpr[kRax] & rax_mask, size);
          di = (di + step) & amask;
          break;
        case StrOp::kLods: {
          uint64_t v = ReadU(src_seg, si, size);
          if (size == 4) {
            s.gpr[kRax] = v;
          } else {
            s.gpr[kRax] = (s.gpr[kRax] & ~rax_mask) | v;
          }
          si = (si + step) & amask;
          break;
        }
        case StrOp::kCmps:
        case StrOp::kScas: {
          uint64_t a, b;
          if (kind == StrOp::kCmps) {
            a = ReadU(src_seg, si, size);
            b = ReadU(kEs, di, size);
            si = (si + step) & amask;
          } else {
            a = s.gpr[kRax] & rax_mask;
            b = ReadU(kEs, di, size);
          }
          di = (di + step) & amask;
          s.rflags = (s.rflags & ~rflags::kArith) | SubFlags(a, b, size);
          break;
        }
        case StrOp::kIns: {
          // Check the destination before the port read so a fault loses no data.
          uint64_t a = SegLinear(kEs, di, size, MemAccess::kWrite);
          CheckAlignment(a, size);
          ProbeWrite(a);
          ProbeWrite(a + size - 1);
          uint64_t v = io.In(port, size);
          LinWrite(a, &v, size);
          di = (di + step) & amask;
          break;
        }
        case StrOp::kOuts: {
          uint64_t v = ReadU(src_seg, si, size);
          io.Out(port, size, static_cast<uint32_t>(v));
          si = (si + step) & amask;
          break;
        }
      }
      count--;
      budget--;
      stats.string_bytes += size;
      if (rep && is_compare) {
        bool zf = (s.rflags & rflags::kZf) != 0;
        if (repe ? !zf : zf) break;
      }
      if (!rep) break;
    }
  } catch (const GuestFault&) {
    commit();
    throw;
  }
  commit();
  // Not finished (budget exhausted): stay on the instruction.
  if (rep && count > 0) {
    bool stopped_by_compare = false;
    if (is_compare) {
      bool zf = (s.rflags & rflags::kZf) != 0;
      stopped_by_compare = repe ? !zf : zf;
    }
    if (!stopped_by_compare) s.rip = insn_rip;
  }
  return EmulationOutcome::kContinue;
}

}  // namespace rove
