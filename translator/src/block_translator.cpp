// Translation of one guest basic block into host code.
//
// Most guest instructions are re-emitted as they are (same ISA). Explicit memory operands are
// rewritten to [scratch] after an inline soft-TLB lookup; stack operations and control
// transfers are expanded; everything privileged, sensitive or rare ends the block with an exit
// to the engine's emulator. See docs/ARCHITECTURE.md for the register convention.
#include <asmjit/x86.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <stdexcept>

#include "emit.h"
#include "impl.h"
#include "rove/mmu/page_walker.h"

namespace rove {

using namespace asmjit;
using bt::Gs;
using bt::GsIndexed;

namespace {

constexpr uint32_t kArithFlags = 0x8D5;  // CF PF AF ZF SF OF

enum class Kind : uint8_t {
  kIdent,  // copy / re-encode, no memory access
  kDrop,   // no architectural effect we model (NOP, PREFETCH, CLFLUSH...)
  kMem,    // one explicit memory operand
  kLea,
  kPushReg,
  kPushImm,
  kPushMem,  // PUSH m64 in 64-bit mode: read the source, then push it
  kPopReg,
  kCallRel,
  kCallInd,
  kRetNear,
  kJmpRel,
  kJmpInd,
  kJcc,
  kLoop,  // LOOP/LOOPE/LOOPNE/JCXZ/JECXZ/JRCXZ
  kCli,   // CLI/STI/PUSHF inline (TransMode::sys_inline): IF in ctx.sys_rflags
  kSti,
  kPushf,
  kLeave,   // LEAVE with a 64-bit stack and operand size
  kSwapgs,  // SWAPGS in 64-bit code at CPL 0: swaps ctx.seg_base[GS] and ctx.kernel_gs_base
  kProbe,   // CLFLUSH/CLFLUSHOPT/CLWB: no effect to model, but the faults of a 1-byte read
  kEmulate,
};

struct Insn {
  uint64_t rip = 0;
  uint64_t next_rip = 0;
  ZydisDecodedInstruction d{};
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT]{};
  Kind kind = Kind::kEmulate;
  int mem_index = -1;  // operand index of the memory operand
  uint32_t flags_read = 0;
  uint32_t flags_written = 0;
  uint32_t live_before = kArithFlags;
  uint32_t used_regs = 0;  // bit per host GPR id: every GPR the instruction names
  // Register liveness (bit per GPR id), including implicit and hidden operands.
  uint16_t regs_read = 0;     // values the instruction needs (partial and conditional writes too)
  uint16_t regs_killed = 0;   // registers it overwrites entirely (32/64-bit writes)
  uint16_t regs_written = 0;  // registers it writes at all (partial and conditional too)
  uint16_t live_regs_before = 0xFFFF;  // everything is live at the block end
  bool uses_high_byte = false;
  bool uses_rsp = false;
  bool writes_rsp = false;
  uint8_t bytes[16] = {};
};

int GprId(ZydisRegister r) {
  if (r == ZYDIS_REGISTER_NONE) return -1;
  ZydisRegister big = ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, r);
  if (big >= ZYDIS_REGISTER_RAX && big <= ZYDIS_REGISTER_R15) return big - ZYDIS_REGISTER_RAX;
  return -1;
}

bool IsHighByte(ZydisRegister r) {
  return r == ZYDIS_REGISTER_AH || r == ZYDIS_REGISTER_CH || r == ZYDIS_REGISTER_DH ||
         r == ZYDIS_REGISTER_BH;
}

// Same-width register of another GPR.
ZydisRegister SubstituteGpr(ZydisRegister r, int new_id) {
  switch (ZydisRegisterGetWidth(ZYDIS_MACHINE_MODE_LONG_64, r)) {
    case 64:
      return ZydisRegisterEncode(ZYDIS_REGCLASS_GPR64, static_cast<ZyanU8>(new_id));
    case 32:
      return ZydisRegisterEncode(ZYDIS_REGCLASS_GPR32, static_cast<ZyanU8>(new_id));
    case 16:
      return ZydisRegisterEncode(ZYDIS_REGCLASS_GPR16, static_cast<ZyanU8>(new_id));
    case 8: {
      // GPR8 class ids 4-7 are AH..BH; SPL..DIL come at 8-11 when a REX prefix is present.
      if (new_id >= 4 && new_id < 8)
        return static_cast<ZydisRegister>(ZYDIS_REGISTER_SPL + (new_id - 4));
      if (new_id < 4) return ZydisRegisterEncode(ZYDIS_REGCLASS_GPR8, static_cast<ZyanU8>(new_id));
      return static_cast<ZydisRegister>(ZYDIS_REGISTER_R8B + (new_id - 8));
    }
    default:
      return ZYDIS_REGISTER_NONE;
  }
}

bool IsRspFamily(ZydisRegister r) {
  return GprId(r) == kRsp;
}

bool HasRegClass(const Insn& in, ZydisRegisterClass cls) {
  for (int i = 0; i < in.d.operand_count; ++i) {
    const auto& op = in.ops[i];
    if (op.type == ZYDIS_OPERAND_TYPE_REGISTER && ZydisRegisterGetClass(op.reg.value) == cls)
      return true;
  }
  return false;
}

bool AllowedCategory(ZydisInstructionCategory c) {
  switch (c) {
    case ZYDIS_CATEGORY_ADOX_ADCX:
    case ZYDIS_CATEGORY_AES:
    case ZYDIS_CATEGORY_AVX:
    case ZYDIS_CATEGORY_AVX2:
    case ZYDIS_CATEGORY_AVX512:
    case ZYDIS_CATEGORY_AVX512_4FMAPS:
    case ZYDIS_CATEGORY_AVX512_4VNNIW:
    case ZYDIS_CATEGORY_AVX512_BITALG:
    case ZYDIS_CATEGORY_AVX512_VBMI:
    case ZYDIS_CATEGORY_AVX512_VP2INTERSECT:
    case ZYDIS_CATEGORY_BINARY:
    case ZYDIS_CATEGORY_BITBYTE:
    case ZYDIS_CATEGORY_BLEND:
    case ZYDIS_CATEGORY_BMI1:
    case ZYDIS_CATEGORY_BMI2:
    case ZYDIS_CATEGORY_BROADCAST:
    case ZYDIS_CATEGORY_CMOV:
    case ZYDIS_CATEGORY_COMPRESS:
    case ZYDIS_CATEGORY_CONFLICT:
    case ZYDIS_CATEGORY_CONVERT:
    case ZYDIS_CATEGORY_DATAXFER:
    case ZYDIS_CATEGORY_EXPAND:
    case ZYDIS_CATEGORY_FCMOV:
    case ZYDIS_CATEGORY_FP16:
    case ZYDIS_CATEGORY_GFNI:
    case ZYDIS_CATEGORY_IFMA:
    case ZYDIS_CATEGORY_KMASK:
    case ZYDIS_CATEGORY_LOGICAL:
    case ZYDIS_CATEGORY_LOGICAL_FP:
    case ZYDIS_CATEGORY_LZCNT:
    case ZYDIS_CATEGORY_MMX:
    case ZYDIS_CATEGORY_PCLMULQDQ:
    case ZYDIS_CATEGORY_VPCLMULQDQ:
    case ZYDIS_CATEGORY_ROTATE:
    case ZYDIS_CATEGORY_SHIFT:
    case ZYDIS_CATEGORY_SEMAPHORE:
    case ZYDIS_CATEGORY_SETCC:
    case ZYDIS_CATEGORY_SHA:
    case ZYDIS_CATEGORY_SSE:
    case ZYDIS_CATEGORY_STTNI:
    case ZYDIS_CATEGORY_VAES:
    case ZYDIS_CATEGORY_VBMI2:
    case ZYDIS_CATEGORY_VEX:
    case ZYDIS_CATEGORY_VFMA:
    case ZYDIS_CATEGORY_X87_ALU:
    case ZYDIS_CATEGORY_UFMA:
    case ZYDIS_CATEGORY_RDRAND:
    case ZYDIS_CATEGORY_RDSEED:
    case ZYDIS_CATEGORY_MOVDIR:
    case ZYDIS_CATEGORY_FLAGOP:
      return true;
    default:
      return false;
  }
}

bool IsSensitiveMnemonic(ZydisMnemonic m) {
  switch (m) {
    case ZYDIS_MNEMONIC_CLI:
    case ZYDIS_MNEMONIC_STI:
    case ZYDIS_MNEMONIC_POPF:
    case ZYDIS_MNEMONIC_POPFD:
    case ZYDIS_MNEMONIC_POPFQ:
    case ZYDIS_MNEMONIC_PUSHF:
    case ZYDIS_MNEMONIC_PUSHFD:
    case ZYDIS_MNEMONIC_PUSHFQ:
    case ZYDIS_MNEMONIC_XLAT:
    case ZYDIS_MNEMONIC_LDS:
    case ZYDIS_MNEMONIC_LES:
    case ZYDIS_MNEMONIC_LFS:
    case ZYDIS_MNEMONIC_LGS:
    case ZYDIS_MNEMONIC_LSS:
    case ZYDIS_MNEMONIC_ARPL:
    case ZYDIS_MNEMONIC_BOUND:
    case ZYDIS_MNEMONIC_SALC:
    case ZYDIS_MNEMONIC_FXSAVE:
    case ZYDIS_MNEMONIC_FXSAVE64:
    case ZYDIS_MNEMONIC_FXRSTOR:
    case ZYDIS_MNEMONIC_FXRSTOR64:
    case ZYDIS_MNEMONIC_RSM:
    case ZYDIS_MNEMONIC_ENTER:
    case ZYDIS_MNEMONIC_LEAVE:
      return true;
    default:
      return false;
  }
}

// A direct JMP/CALL of 64-bit code whose target is not canonical (48-bit; a 57-bit target
// space only makes this conservative): the emulator raises #GP at the branch, before anything
// is pushed.
bool NonCanonicalDirectTarget(const Insn& in, const bt::TransMode& mode) {
  if (mode.code_bits != 64) return false;
  const uint64_t target = in.rip + in.d.length + static_cast<uint64_t>(in.ops[0].imm.value.s);
  return static_cast<uint64_t>(static_cast<int64_t>(target << 16) >> 16) != target;
}

Kind Classify(Insn& in, const bt::TransMode& mode) {
  const auto& d = in.d;
  const auto cat = d.meta.category;
  if (mode.sys_inline && !mode.single_step) {
    switch (d.mnemonic) {
      case ZYDIS_MNEMONIC_CLI:
        return Kind::kCli;
      case ZYDIS_MNEMONIC_STI:
        return Kind::kSti;
      case ZYDIS_MNEMONIC_PUSHF:
      case ZYDIS_MNEMONIC_PUSHFD:
      case ZYDIS_MNEMONIC_PUSHFQ:
        return Kind::kPushf;
      default:
        break;
    }
  }
  if (d.mnemonic == ZYDIS_MNEMONIC_SWAPGS && mode.cpl0 && !mode.single_step) return Kind::kSwapgs;
  if (d.mnemonic == ZYDIS_MNEMONIC_LEAVE && mode.code_bits == 64 && mode.stack_bits == 64 &&
      d.operand_width == 64)
    return Kind::kLeave;
  // Far transfers and anything touching segment/control/debug registers go to the emulator.
  if (d.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR) return Kind::kEmulate;
  if (HasRegClass(in, ZYDIS_REGCLASS_SEGMENT) && cat != ZYDIS_CATEGORY_COND_BR)
    return Kind::kEmulate;
  if (HasRegClass(in, ZYDIS_REGCLASS_CONTROL) || HasRegClass(in, ZYDIS_REGCLASS_DEBUG) ||
      HasRegClass(in, ZYDIS_REGCLASS_TEST) || HasRegClass(in, ZYDIS_REGCLASS_BOUND) ||
      HasRegClass(in, ZYDIS_REGCLASS_TABLE) || HasRegClass(in, ZYDIS_REGCLASS_TMM))
    return Kind::kEmulate;
  if (IsSensitiveMnemonic(d.mnemonic)) return Kind::kEmulate;

  int mem_ops = 0;
  for (int i = 0; i < d.operand_count_visible; ++i) {
    if (in.ops[i].type == ZYDIS_OPERAND_TYPE_MEMORY) {
      ++mem_ops;
      in.mem_index = i;
    }
  }
  const ZydisDecodedOperand* op0 = &in.ops[0];

  switch (cat) {
    case ZYDIS_CATEGORY_COND_BR:
      switch (d.mnemonic) {
        case ZYDIS_MNEMONIC_LOOP:
        case ZYDIS_MNEMONIC_LOOPE:
        case ZYDIS_MNEMONIC_LOOPNE:
        case ZYDIS_MNEMONIC_JCXZ:
        case ZYDIS_MNEMONIC_JECXZ:
        case ZYDIS_MNEMONIC_JRCXZ:
          return Kind::kLoop;
        default:
          return Kind::kJcc;
      }
    case ZYDIS_CATEGORY_UNCOND_BR:
      if (op0->type == ZYDIS_OPERAND_TYPE_IMMEDIATE)
        return NonCanonicalDirectTarget(in, mode) ? Kind::kEmulate : Kind::kJmpRel;
      if (op0->type == ZYDIS_OPERAND_TYPE_REGISTER || op0->type == ZYDIS_OPERAND_TYPE_MEMORY)
        return Kind::kJmpInd;
      return Kind::kEmulate;
    case ZYDIS_CATEGORY_CALL:
      if (op0->type == ZYDIS_OPERAND_TYPE_IMMEDIATE)
        return NonCanonicalDirectTarget(in, mode) ? Kind::kEmulate : Kind::kCallRel;
      if (op0->type == ZYDIS_OPERAND_TYPE_REGISTER || op0->type == ZYDIS_OPERAND_TYPE_MEMORY)
        return Kind::kCallInd;
      return Kind::kEmulate;
    case ZYDIS_CATEGORY_RET:
      return d.mnemonic == ZYDIS_MNEMONIC_RET ? Kind::kRetNear : Kind::kEmulate;
    case ZYDIS_CATEGORY_PUSH:
      if (d.mnemonic != ZYDIS_MNEMONIC_PUSH) return Kind::kEmulate;
      if (op0->type == ZYDIS_OPERAND_TYPE_REGISTER && GprId(op0->reg.value) >= 0)
        return Kind::kPushReg;
      if (op0->type == ZYDIS_OPERAND_TYPE_IMMEDIATE) return Kind::kPushImm;
      // PUSH m: 64-bit code, operand and address size only (16-bit pushes, address-size
      // overrides and segmented stacks stay with the emulator).
      if (op0->type == ZYDIS_OPERAND_TYPE_MEMORY && op0->mem.type == ZYDIS_MEMOP_TYPE_MEM &&
          mode.code_bits == 64 && mode.stack_bits == 64 && d.operand_width == 64 &&
          d.address_width == 64) {
        in.mem_index = 0;
        return Kind::kPushMem;
      }
      return Kind::kEmulate;
    case ZYDIS_CATEGORY_POP:
      if (d.mnemonic == ZYDIS_MNEMONIC_POP && op0->type == ZYDIS_OPERAND_TYPE_REGISTER &&
          GprId(op0->reg.value) >= 0)
        return Kind::kPopReg;
      return Kind::kEmulate;
    case ZYDIS_CATEGORY_CLFLUSHOPT:
    case ZYDIS_CATEGORY_CLWB:
      return mem_ops == 1 && in.ops[in.mem_index].mem.type == ZYDIS_MEMOP_TYPE_MEM ? Kind::kProbe
                                                                                   : Kind::kEmulate;
    case ZYDIS_CATEGORY_NOP:
    case ZYDIS_CATEGORY_WIDENOP:
    case ZYDIS_CATEGORY_PREFETCH:  // prefetches never fault
    case ZYDIS_CATEGORY_CLDEMOTE:
      return Kind::kDrop;
    case ZYDIS_CATEGORY_MISC:
      if (d.mnemonic == ZYDIS_MNEMONIC_LEA) return Kind::kLea;
      if (d.mnemonic == ZYDIS_MNEMONIC_PAUSE) return Kind::kIdent;
      // Flushing a cache line is invisible here, but it faults like a read of the byte.
      if (d.mnemonic == ZYDIS_MNEMONIC_CLFLUSH)
        return mem_ops == 1 && in.ops[in.mem_index].mem.type == ZYDIS_MEMOP_TYPE_MEM
                   ? Kind::kProbe
                   : Kind::kEmulate;
      if (d.mnemonic == ZYDIS_MNEMONIC_LFENCE || d.mnemonic == ZYDIS_MNEMONIC_MFENCE ||
          d.mnemonic == ZYDIS_MNEMONIC_SFENCE)
        return Kind::kIdent;
      return Kind::kEmulate;
    case ZYDIS_CATEGORY_CET:
      if (d.mnemonic == ZYDIS_MNEMONIC_ENDBR64 || d.mnemonic == ZYDIS_MNEMONIC_ENDBR32)
        return Kind::kDrop;
      return Kind::kEmulate;
    default:
      break;
  }
  if (!AllowedCategory(cat)) return Kind::kEmulate;
  if (mem_ops > 1) return Kind::kEmulate;
  // A hidden memory operand (MASKMOVDQU's [RDI], ...) would reach host memory unchecked.
  for (int i = d.operand_count_visible; i < d.operand_count; ++i)
    if (in.ops[i].type == ZYDIS_OPERAND_TYPE_MEMORY) return Kind::kEmulate;
  if (mem_ops == 1) {
    const auto& mem = in.ops[in.mem_index].mem;
    if (mem.type != ZYDIS_MEMOP_TYPE_MEM) return Kind::kEmulate;  // VSIB gathers, MIB
    return Kind::kMem;
  }
  return Kind::kIdent;
}

// 16/32-bit accesses the translated check does not cover: through a segment the mode marks for
// the emulator (unusable, expand-down, read-only, code) and data accesses through CS (the
// emulator applies every rule).
bool AccessesEmulatedSegment(const Insn& in, const bt::TransMode& mode) {
  if (mode.code_bits == 64 || in.kind == Kind::kEmulate) return false;
  switch (in.kind) {
    case Kind::kPushReg:
    case Kind::kPushImm:
    case Kind::kPushMem:
    case Kind::kPopReg:
    case Kind::kCallRel:
    case Kind::kCallInd:
    case Kind::kRetNear:
    case Kind::kLeave:
    case Kind::kPushf:
      if (mode.emulated_segs & (1u << kSs)) return true;
      break;
    default:
      break;
  }
  if (in.mem_index < 0 || in.kind == Kind::kLea) return false;
  const auto& op = in.ops[in.mem_index];
  if (op.type != ZYDIS_OPERAND_TYPE_MEMORY || op.mem.type == ZYDIS_MEMOP_TYPE_AGEN) return false;
  int seg;
  switch (op.mem.segment) {
    case ZYDIS_REGISTER_ES:
      seg = kEs;
      break;
    case ZYDIS_REGISTER_CS:
      seg = kCs;
      break;
    case ZYDIS_REGISTER_SS:
      seg = kSs;
      break;
    case ZYDIS_REGISTER_FS:
      seg = kFs;
      break;
    case ZYDIS_REGISTER_GS:
      seg = kGs;
      break;
    default:
      seg = kDs;
      break;
  }
  if (seg == kCs) return true;  // rare; the code segment's own rules
  return (mode.emulated_segs & (1u << seg)) != 0;
}

// Whether a near branch may land beyond the CS limit: a direct one whose target is beyond it,
// an indirect one or a return unless the limit covers every target of its operand size.
bool BranchMayLeaveLimit(const Insn& in, uint64_t cs_limit) {
  const uint64_t width_mask = in.d.operand_width == 16 ? 0xFFFFull : 0xFFFFFFFFull;
  switch (in.kind) {
    case Kind::kJmpRel:
    case Kind::kCallRel:
    case Kind::kJcc:
    case Kind::kLoop:
      return ((in.next_rip + static_cast<uint64_t>(in.ops[0].imm.value.s)) & width_mask) > cs_limit;
    case Kind::kJmpInd:
    case Kind::kCallInd:
    case Kind::kRetNear:
      return cs_limit < width_mask;
    default:
      return false;
  }
}

// Whether a non-canonical address in the read or write access of `in` raises #SS rather than
// #GP: the stack side of PUSH/POP/CALL/RET/LEAVE, and memory operands based on RSP or RBP. The
// host decides by the base register, not by segment prefixes: [ds:rbp] raises #SS, [ss:rax]
// and [rbx + rbp] raise #GP (tests/diff/cases/exceptions.asm). PUSH m and CALL m read their
// operand like any other memory operand.
bool UsesStackSegment(const Insn& in, bool write) {
  switch (in.kind) {
    case Kind::kPushReg:
    case Kind::kPushImm:
    case Kind::kPushf:
    case Kind::kPopReg:
    case Kind::kCallRel:
    case Kind::kRetNear:
    case Kind::kLeave:
      return true;
    case Kind::kPushMem:
    case Kind::kCallInd:
      if (write) return true;
      break;
    default:
      break;
  }
  if (in.mem_index < 0 || in.ops[in.mem_index].type != ZYDIS_OPERAND_TYPE_MEMORY) return false;
  const auto& mem = in.ops[in.mem_index].mem;
  const int base = GprId(mem.base);
  return (base == kRsp || base == kRbp) && mem.segment != ZYDIS_REGISTER_FS &&
         mem.segment != ZYDIS_REGISTER_GS;
}

// The alignment (bytes) the memory operand of `in` must have, else #GP(0), or 0: legacy-encoded
// instructions with a 16-byte operand (SSE and its extensions, CMPXCHG16B) except the
// explicitly unaligned ones, and the VEX/EVEX aligned and non-temporal moves (vector length).
// The host checks it itself when the access hits the soft TLB; the slow path checks it before
// paging and for accesses it bounces.
uint8_t RequiredAlignment(const Insn& in) {
  if (in.mem_index < 0) return 0;
  const unsigned bytes = in.ops[in.mem_index].size / 8;
  switch (in.d.mnemonic) {
    case ZYDIS_MNEMONIC_MOVUPS:
    case ZYDIS_MNEMONIC_MOVUPD:
    case ZYDIS_MNEMONIC_MOVDQU:
    case ZYDIS_MNEMONIC_LDDQU:
    case ZYDIS_MNEMONIC_PCMPESTRI:
    case ZYDIS_MNEMONIC_PCMPESTRM:
    case ZYDIS_MNEMONIC_PCMPISTRI:
    case ZYDIS_MNEMONIC_PCMPISTRM:
      return 0;
    case ZYDIS_MNEMONIC_VMOVAPS:
    case ZYDIS_MNEMONIC_VMOVAPD:
    case ZYDIS_MNEMONIC_VMOVDQA:
    case ZYDIS_MNEMONIC_VMOVDQA32:
    case ZYDIS_MNEMONIC_VMOVDQA64:
    case ZYDIS_MNEMONIC_VMOVNTPS:
    case ZYDIS_MNEMONIC_VMOVNTPD:
    case ZYDIS_MNEMONIC_VMOVNTDQ:
    case ZYDIS_MNEMONIC_VMOVNTDQA:
      return bytes == 16 || bytes == 32 || bytes == 64 ? static_cast<uint8_t>(bytes) : 0;
    default:
      break;
  }
  if (in.d.encoding != ZYDIS_INSTRUCTION_ENCODING_LEGACY || bytes != 16) return 0;
  return in.d.mnemonic == ZYDIS_MNEMONIC_CMPXCHG16B || HasRegClass(in, ZYDIS_REGCLASS_XMM) ? 16 : 0;
}

// The element masking of a vector memory operand (MaskedAccess), for the instructions whose
// masked-off elements do not fault: VPMASKMOV/VMASKMOV, and EVEX instructions with a k mask
// in the exception classes with fault suppression (E1-E6, E10, E11; not the ...NF ones such as
// VPERMD) when the mask maps simply onto the memory elements. Anything else is accessed whole.
bt::MaskedAccess DescribeMask(const Insn& in) {
  bt::MaskedAccess m;
  if (in.mem_index < 0) return m;
  const auto& mem = in.ops[in.mem_index];
  const unsigned element_bytes = mem.element_size / 8;
  const unsigned elements = mem.element_count;
  if (element_bytes == 0 || elements == 0 || elements > 64 ||
      element_bytes * elements != mem.size / 8u)
    return m;
  m.element_bytes = static_cast<uint8_t>(element_bytes);
  m.elements = static_cast<uint8_t>(elements);
  switch (in.d.mnemonic) {
    case ZYDIS_MNEMONIC_VPMASKMOVD:
    case ZYDIS_MNEMONIC_VPMASKMOVQ:
    case ZYDIS_MNEMONIC_VMASKMOVPS:
    case ZYDIS_MNEMONIC_VMASKMOVPD:
      if (in.ops[1].type != ZYDIS_OPERAND_TYPE_REGISTER) return {};
      m.kind = bt::MaskedAccess::kVectorSign;
      m.reg = static_cast<uint8_t>(
          in.ops[1].reg.value - ZydisRegisterEncode(ZydisRegisterGetClass(in.ops[1].reg.value), 0));
      m.controls = m.elements;
      return m;
    default:
      break;
  }
  if (in.d.encoding != ZYDIS_INSTRUCTION_ENCODING_EVEX) return {};
  const auto& mask = in.d.avx.mask;
  if (mask.reg < ZYDIS_REGISTER_K1 || mask.reg > ZYDIS_REGISTER_K7 ||
      (mask.mode != ZYDIS_MASK_MODE_MERGING && mask.mode != ZYDIS_MASK_MODE_ZEROING))
    return {};
  switch (in.d.meta.exception_class) {
    case ZYDIS_EXCEPTION_CLASS_E1:
    case ZYDIS_EXCEPTION_CLASS_E2:
    case ZYDIS_EXCEPTION_CLASS_E3:
    case ZYDIS_EXCEPTION_CLASS_E4:
    case ZYDIS_EXCEPTION_CLASS_E5:
    case ZYDIS_EXCEPTION_CLASS_E6:
    case ZYDIS_EXCEPTION_CLASS_E10:
    case ZYDIS_EXCEPTION_CLASS_E11:
      break;
    default:
      return {};
  }
  m.reg = static_cast<uint8_t>(mask.reg - ZYDIS_REGISTER_K0);
  // The mask controls the memory elements of a store, else the destination register's.
  unsigned controls = elements;
  if (in.mem_index != 0) {
    const auto& dst = in.ops[0];
    if (dst.type != ZYDIS_OPERAND_TYPE_REGISTER ||
        ZydisRegisterGetClass(dst.reg.value) == ZYDIS_REGCLASS_MASK)
      return {};
    controls = dst.element_count;
  }
  if (controls == 0 || controls > 64) return {};
  m.controls = static_cast<uint8_t>(controls);
  const auto cat = in.d.meta.category;
  if (cat == ZYDIS_CATEGORY_EXPAND || cat == ZYDIS_CATEGORY_COMPRESS) {
    m.kind = bt::MaskedAccess::kOpmaskPacked;
    return m;
  }
  if (in.d.avx.broadcast.mode != ZYDIS_BROADCAST_MODE_INVALID) {
    // Embedded or instruction broadcast: each memory element feeds every `elements`-th control.
    if (controls % elements != 0) return {};
  } else if (elements == 1) {
    m.controls = 1;  // scalar: mask bit 0
  } else if (controls != elements) {
    return {};
  }
  m.kind = bt::MaskedAccess::kOpmask;
  return m;
}

// Register use, for picking scratch registers the instruction does not touch.
void ComputeRegisterUse(Insn& in) {
  for (int i = 0; i < in.d.operand_count; ++i) {
    const auto& op = in.ops[i];
    if (op.type == ZYDIS_OPERAND_TYPE_REGISTER) {
      int id = GprId(op.reg.value);
      if (id >= 0) {
        in.used_regs |= 1u << id;
        const uint16_t bit = static_cast<uint16_t>(1u << id);
        if (op.actions & ZYDIS_OPERAND_ACTION_MASK_READ) in.regs_read |= bit;
        if (op.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) {
          in.regs_written |= bit;
          // A conditional or 8/16-bit write keeps (part of) the old value: that is a use.
          const bool full = !(op.actions & ZYDIS_OPERAND_ACTION_CONDWRITE) &&
                            ZydisRegisterGetWidth(ZYDIS_MACHINE_MODE_LONG_64, op.reg.value) >= 32;
          if (full)
            in.regs_killed |= bit;
          else
            in.regs_read |= bit;
        }
        if (id == kRsp) {
          in.uses_rsp = true;
          if (op.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) in.writes_rsp = true;
        }
      }
      if (IsHighByte(op.reg.value)) in.uses_high_byte = true;
    } else if (op.type == ZYDIS_OPERAND_TYPE_MEMORY) {
      int b = GprId(op.mem.base);
      int x = GprId(op.mem.index);
      if (b >= 0) in.used_regs |= 1u << b;
      if (x >= 0) in.used_regs |= 1u << x;
      if (b >= 0) in.regs_read |= static_cast<uint16_t>(1u << b);
      if (x >= 0) in.regs_read |= static_cast<uint16_t>(1u << x);
      if (b == kRsp || x == kRsp) in.uses_rsp = true;
    }
  }
  if (in.d.cpu_flags) {
    in.flags_read = in.d.cpu_flags->tested & kArithFlags;
    in.flags_written = (in.d.cpu_flags->modified | in.d.cpu_flags->set_0 | in.d.cpu_flags->set_1 |
                        in.d.cpu_flags->undefined) &
                       kArithFlags;
  }
  // BSF/BSR leave the destination unchanged for a zero source (and Zydis may not say so);
  // a register written but also read can never be a scratch register.
  if (in.d.mnemonic == ZYDIS_MNEMONIC_BSF || in.d.mnemonic == ZYDIS_MNEMONIC_BSR) {
    in.regs_read |= in.regs_killed;
    in.regs_killed = 0;
  }
  // Zeroing idioms (xor r, r / sub r, r, 32 or 64 bits) do not depend on the old value.
  if ((in.d.mnemonic == ZYDIS_MNEMONIC_XOR || in.d.mnemonic == ZYDIS_MNEMONIC_SUB) &&
      in.d.operand_count_visible == 2 && in.ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
      in.ops[1].type == ZYDIS_OPERAND_TYPE_REGISTER && in.ops[0].reg.value == in.ops[1].reg.value &&
      ZydisRegisterGetWidth(ZYDIS_MACHINE_MODE_LONG_64, in.ops[0].reg.value) >= 32) {
    const int id = GprId(in.ops[0].reg.value);
    if (id >= 0) {
      in.regs_read &= static_cast<uint16_t>(~(1u << id));
      in.regs_killed |= static_cast<uint16_t>(1u << id);
    }
  }
  in.regs_killed &= static_cast<uint16_t>(~in.regs_read);
  // Precise flags at faults are kept by the emitter, not by liveness: a flag-clobbering
  // soft-TLB check pushes the guest flags first (the slow path and the fault handler restore
  // them), and is used only when no later fault can happen before the flags are rewritten
  // (FlagsDeadFrom); the exit-request check obeys the same rule.
  // Shifts and rotates by a register count leave the flags alone when the count is zero.
  switch (in.d.mnemonic) {
    case ZYDIS_MNEMONIC_SHL:
    case ZYDIS_MNEMONIC_SHR:
    case ZYDIS_MNEMONIC_SAR:
    case ZYDIS_MNEMONIC_ROL:
    case ZYDIS_MNEMONIC_ROR:
    case ZYDIS_MNEMONIC_RCL:
    case ZYDIS_MNEMONIC_RCR:
    case ZYDIS_MNEMONIC_SHLD:
    case ZYDIS_MNEMONIC_SHRD:
      for (int i = 0; i < in.d.operand_count_visible; ++i) {
        const auto& op = in.ops[i];
        if (op.type == ZYDIS_OPERAND_TYPE_REGISTER && op.reg.value == ZYDIS_REGISTER_CL)
          in.flags_read |= in.flags_written;
        // So does an immediate count that masks to zero (shl al, 0; shl eax, 32).
        if (i > 0 && op.type == ZYDIS_OPERAND_TYPE_IMMEDIATE &&
            (op.imm.value.u & (in.d.operand_width == 64 ? 0x3F : 0x1F)) == 0)
          in.flags_read |= in.flags_written;
      }
      break;
    default:
      break;
  }
}

// Integer instruction families whose register forms cannot fault (DIV and IDIV aside), so with
// a memory operand only the access can.
bool NonFaultingCategory(ZydisInstructionCategory c) {
  switch (c) {
    case ZYDIS_CATEGORY_BINARY:
    case ZYDIS_CATEGORY_LOGICAL:
    case ZYDIS_CATEGORY_SHIFT:
    case ZYDIS_CATEGORY_ROTATE:
    case ZYDIS_CATEGORY_BITBYTE:
    case ZYDIS_CATEGORY_CMOV:
    case ZYDIS_CATEGORY_SETCC:
    case ZYDIS_CATEGORY_DATAXFER:
    case ZYDIS_CATEGORY_CONVERT:
    case ZYDIS_CATEGORY_BMI1:
    case ZYDIS_CATEGORY_BMI2:
    case ZYDIS_CATEGORY_LZCNT:
    case ZYDIS_CATEGORY_FLAGOP:
      return true;
    default:
      return false;
  }
}

// Whether a host fault (a guest exception) can happen while the instruction runs: then the
// host RFLAGS must hold the guest flags (or the side table must say where they are).
bool CanFault(const Insn& in) {
  switch (in.kind) {
    case Kind::kDrop:
    case Kind::kLea:
    case Kind::kCli:
    case Kind::kSti:
      return false;
    case Kind::kIdent:
      break;
    default:
      return true;
  }
  if (in.d.mnemonic == ZYDIS_MNEMONIC_DIV || in.d.mnemonic == ZYDIS_MNEMONIC_IDIV) return true;
  // MMX and x87 register forms take a pending x87 exception (#MF), whatever their category.
  for (int i = 0; i < in.d.operand_count; ++i) {
    if (in.ops[i].type != ZYDIS_OPERAND_TYPE_REGISTER) continue;
    const ZydisRegisterClass c = ZydisRegisterGetClass(in.ops[i].reg.value);
    if (c == ZYDIS_REGCLASS_MMX || c == ZYDIS_REGCLASS_X87) return true;
  }
  return !NonFaultingCategory(in.d.meta.category);
}

// Host scratch registers in order of preference (RCX last: the flag-free checks need it).
constexpr std::array<int, 15> kScratchOrder = {kRbx, kRsi, kRdi, kRbp, kRdx, kRax, kR8, kR9,
                                               kR10, kR11, kR12, kR13, kR14, kR15, kRcx};

struct Reencoded {
  uint8_t bytes[ZYDIS_MAX_INSTRUCTION_LENGTH];
  ZyanUSize length = 0;
};

// A memory operand rewritten to [base + index*scale + disp] (host registers), for accesses
// whose host address is formed directly from a host base register.
struct Rebase {
  int base = -1;
  int index = -1;
  uint8_t scale = 1;
  int64_t disp = 0;
};

// A register operand (outside the memory operand) replaced by another GPR of the same width.
struct RegSubst {
  int from = -1;
  int to = -1;
};

// Re-encodes a decoded guest instruction for 64-bit execution, optionally replacing its memory
// operand by [mem_base] (or by `rebase`) and RSP references by `rsp_subst`.
bool Reencode(const Insn& in, int mem_base, int rsp_subst, Reencoded& out,
              const Rebase* rebase = nullptr, RegSubst subst = {}) {
  ZydisEncoderRequest req;
  if (ZYAN_FAILED(ZydisEncoderDecodedInstructionToEncoderRequest(&in.d, in.ops,
                                                                 in.d.operand_count_visible, &req)))
    return false;
  req.machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
  // A 16/32-bit guest's address-size hint is meaningless (and invalid) in 64-bit mode: the
  // only memory operand left is rewritten to a 64-bit base register.
  req.address_size_hint = ZYDIS_ADDRESS_SIZE_HINT_NONE;
  req.prefixes &=
      ~(ZYDIS_ATTRIB_HAS_SEGMENT_CS | ZYDIS_ATTRIB_HAS_SEGMENT_SS | ZYDIS_ATTRIB_HAS_SEGMENT_DS |
        ZYDIS_ATTRIB_HAS_SEGMENT_ES | ZYDIS_ATTRIB_HAS_SEGMENT_FS | ZYDIS_ATTRIB_HAS_SEGMENT_GS);
  for (int i = 0; i < req.operand_count; ++i) {
    auto& op = req.operands[i];
    if (op.type == ZYDIS_OPERAND_TYPE_REGISTER) {
      if (subst.from >= 0 && GprId(op.reg.value) == subst.from)
        op.reg.value = SubstituteGpr(op.reg.value, subst.to);
      else if (rsp_subst >= 0 && IsRspFamily(op.reg.value))
        op.reg.value = SubstituteGpr(op.reg.value, rsp_subst);
    } else if (op.type == ZYDIS_OPERAND_TYPE_MEMORY) {
      if (rebase) {
        op.mem.base = ZydisRegisterEncode(ZYDIS_REGCLASS_GPR64, static_cast<ZyanU8>(rebase->base));
        op.mem.index = rebase->index < 0 ? ZYDIS_REGISTER_NONE
                                         : ZydisRegisterEncode(ZYDIS_REGCLASS_GPR64,
                                                               static_cast<ZyanU8>(rebase->index));
        op.mem.scale = rebase->index < 0 ? 0 : rebase->scale;
        op.mem.displacement = rebase->disp;
      } else if (mem_base >= 0) {
        op.mem.base = ZydisRegisterEncode(ZYDIS_REGCLASS_GPR64, static_cast<ZyanU8>(mem_base));
        op.mem.index = ZYDIS_REGISTER_NONE;
        op.mem.scale = 0;
        op.mem.displacement = 0;
        req.address_size_hint = ZYDIS_ADDRESS_SIZE_HINT_NONE;
      } else if (rsp_subst >= 0) {
        if (IsRspFamily(op.mem.base)) op.mem.base = SubstituteGpr(op.mem.base, rsp_subst);
        if (IsRspFamily(op.mem.index)) op.mem.index = SubstituteGpr(op.mem.index, rsp_subst);
      }
    }
  }
  out.length = sizeof(out.bytes);
  return ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(&req, out.bytes, &out.length));
}

// BT/BTS/BTR/BTC [m], r: the register's bit offset is signed and not reduced modulo the
// operand size, so the instruction reaches memory beyond its operand.
bool IsBitTestWithRegisterOffset(const Insn& in) {
  switch (in.d.mnemonic) {
    case ZYDIS_MNEMONIC_BT:
    case ZYDIS_MNEMONIC_BTS:
    case ZYDIS_MNEMONIC_BTR:
    case ZYDIS_MNEMONIC_BTC:
      return in.mem_index == 0 && in.ops[1].type == ZYDIS_OPERAND_TYPE_REGISTER;
    default:
      return false;
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------
// Emission
// ------------------------------------------------------------------------------------------

namespace {

struct ChainSite {
  Label after;  // end of the patchable jmp/jcc rel32
  uint64_t target;
};

// Scratch registers for the translation of one guest instruction. Dead registers (not read
// before being overwritten later in the block) are used first: their guest value is stored in
// their home slot ctx.spill[reg] once, never reloaded, and the side table keeps saying so until
// an instruction rewrites them, so faults and exits stay precise. Only when there are not
// enough dead registers is a live one spilled and reloaded around the access (the one read
// last), because a reload puts a store-forwarding delay on that register's dependency chain.
struct Scratch {
  int s0 = -1;               // guest RSP, when the instruction references RSP
  int s1 = -1;               // linear address, then host address
  int s2 = -1;               // soft-TLB index
  int park = -1;             // holds guest RCX while the flag-free check uses RCX
  int limit = -1;            // segment-limit check (TransMode::limit_checks)
  bool flags_path = false;   // flags dead: flag-clobbering check, guest RFLAGS pushed meanwhile
  bool rcx_spilled = false;  // flag-free check with RCX live and no register to park it in
  uint16_t saves = 0;        // dead registers to store before their first use as scratch
  uint16_t spills = 0;       // live registers: stored before, reloaded after
};

// Counted-loop versioning. A block that branches back to its own start with `cmp iv, bound;
// jb/jne` after a single `iv += step` gets a second, fast version of its body: memory operands
// whose address is a loop-invariant part plus at most one varying register (the induction
// variable, or a register just loaded by MOVZX and so bounded) are checked once for a whole
// range in a header, and then use a host base register (a register the block never names)
// with no soft-TLB lookup at all. The fast latch also stops when the induction variable
// reaches the end of the checked pages; the header then checks the next ones. See
// docs/ARCHITECTURE.md ("Counted loops").
struct LoopGroup {
  int inv_base = -1;  // invariant registers of the address (kRsp: guest RSP), or -1
  int inv_index = -1;
  uint8_t inv_scale = 1;
  int var = -1;  // stream groups: the induction variable (its term is in the access), else -1
  uint8_t var_scale = 1;
  int64_t step = 0;  // stream groups: the induction variable's step per iteration
  int64_t lo = 0;    // bytes touched at iteration 0, relative to the invariant part (plus the
  int64_t hi = 0;    // induction term for stream groups), inclusive
  bool write = false;
  int reg = -1;  // host register: invariant part + lo + (host - linear)
};
struct LoopAccess {
  int group = -1;
  int var = -1;  // the varying register left in the access, or -1
  uint8_t var_scale = 1;
  int64_t disp = 0;              // displacement from the invariant part plus the varying term
  bool needs_fp_masked = false;  // SIMD floating point: hoisted only when MXCSR masks all
};
struct LoopPlan {
  // Compare latch (`cmp iv, bound; jb/jne`): the fast latch compares iv with a limit. Otherwise
  // a count latch: any Jcc back to the start, with an iteration count in ctx.loop_limit.
  bool compare_latch = false;
  size_t body_end = 0;  // instructions before it are the body (the compare latch's CMP is not)
  int iv = -1;
  int64_t step = 0;
  int bound = -1;  // register, or -1 for bound_imm
  int64_t bound_imm = 0;
  bool jne = false;
  std::vector<LoopGroup> groups;
  std::vector<LoopAccess> access;  // per instruction
  uint16_t pinned = 0;             // host registers holding group bases
  bool needs_fp_masked = false;    // the header requires MXCSR to mask every SIMD FP exception
  int64_t max_iterations = 1;      // per header: bounds the time between exit-request checks
};

// Guest instructions a fast loop may run between two exit-request checks (a few microseconds).
constexpr int64_t kLoopInsnBudget = 16384;

class BlockEmitter {
 public:
  BlockEmitter(BtCpu::Impl& impl, const bt::TransMode& mode, uint64_t cs_base,
               std::vector<Insn>& insns, uint64_t block_linear)
      : impl_(impl), mode_(mode), cs_base_(cs_base), insns_(insns), block_linear_(block_linear) {
    code_.init(Environment::host());
    code_.attach(&a_);
  }

  void Emit();

  CodeHolder& code() { return code_; }

  struct MapLabel {
    Label label;
    size_t insn;
    uint16_t saved;
    bool flags_on_stack;
  };
  std::vector<MapLabel> map_labels;
  struct SiteLabel {
    Label label;
    uint32_t size;
    uint8_t access;  // 0 read, 1 write
    size_t insn;
    bool post;
  };
  std::vector<SiteLabel> site_labels;
  std::vector<ChainSite> chain_sites;
  Label unchecked;  // entry after the exit-request check

 private:
  x86::Gp G(int id) const { return bt::Reg64(static_cast<unsigned>(id)); }
  x86::Gp G32(int id) const { return x86::gpd(static_cast<unsigned>(id)); }
  x86::Gp G16(int id) const { return x86::gpw(static_cast<unsigned>(id)); }

  // Starts the host code range of a guest instruction for the fault side table: `extra` are
  // scratch registers saved for this instruction only.
  void MarkInsn(size_t index, uint16_t extra = 0, bool flags_on_stack = false) {
    MapLabel m{a_.newLabel(), index, static_cast<uint16_t>(clobbered_ | extra), flags_on_stack};
    a_.bind(m.label);
    map_labels.push_back(m);
  }

  x86::Mem Slot(int reg) const { return Gs(ROVE_CTX(spill) + 8 * static_cast<size_t>(reg)); }
  void Save(int reg) { a_.mov(Slot(reg), G(reg)); }
  void Load(int reg) { a_.mov(G(reg), Slot(reg)); }
  void LoadMask(uint16_t mask) {
    for (int r = 0; r < 16; ++r)
      if (mask & (1u << r)) Load(r);
  }
  // Puts the guest values of dead registers used as scratch back (before leaving the block).
  void RestoreClobbered() {
    LoadMask(clobbered_);
    clobbered_ = 0;
  }

  uint64_t RipMask() const {
    return mode_.code_bits == 64 ? ~0ull : (mode_.code_bits == 32 ? 0xFFFFFFFFull : 0xFFFFull);
  }

  // ---- flag clobbering ----

  // Whether the guest flags may be clobbered from the start of instruction `from` on: no
  // instruction can fault before one that rewrites all arithmetic flags (faults must see the
  // guest flags; everything is live at the block end).
  bool FlagsDeadFrom(size_t from) const {
    for (size_t j = from; j < insns_.size(); ++j) {
      const Insn& in = insns_[j];
      if (in.flags_read & kArithFlags) return false;
      if (CanFault(in)) return false;
      if ((in.flags_written & kArithFlags) == kArithFlags) return true;
    }
    return false;
  }

  // Whether the memory access of instruction `index` may use the flag-clobbering soft-TLB
  // check: the guest flags are dead before it, its own faults find them pushed on the host
  // stack, and no later fault can happen before they are rewritten.
  bool FlagsPathOk(size_t index) const {
    if (!kUseFlagsPath) return false;
    const Insn& in = insns_[index];
    if (in.live_before & kArithFlags) return false;
    if ((in.flags_written & kArithFlags) == kArithFlags) return true;
    return FlagsDeadFrom(index + 1);
  }

  static bool IsAccessKind(Kind k) {
    return k == Kind::kMem || k == Kind::kPushReg || k == Kind::kPushImm || k == Kind::kPushMem ||
           k == Kind::kPopReg || k == Kind::kLeave || k == Kind::kProbe;
  }

  // ---- scratch allocation ----

  uint16_t DeadAt(size_t index) const {
    return static_cast<uint16_t>(~insns_[index].live_regs_before & ~(1u << kRsp));
  }

  // Distance to the next read of `reg` after instruction `index`; a register the block does not
  // read again ranks after the others, and one the block never reads at all (its reload
  // delays nothing, even around a loop) ranks last.
  size_t NextRead(size_t index, int reg) const {
    for (size_t j = index + 1; j < insns_.size(); ++j)
      if (insns_[j].regs_read & (1u << reg)) return j;
    for (size_t j = 0; j <= index; ++j)
      if (insns_[j].regs_read & (1u << reg)) return insns_.size() + 1;
    return insns_.size() + 2;
  }

  // `operand`: the register appears inside the re-encoded instruction (next to its operands).
  int Pick(size_t index, uint16_t& taken, bool low_only, bool operand, Scratch& sc,
           bool dead_only = false) {
    const Insn& in = insns_[index];
    uint16_t allowed = static_cast<uint16_t>(~taken & ~(1u << kRsp) & ~reserved_);
    if (low_only) allowed &= 0x00FF;
    if (operand) allowed &= static_cast<uint16_t>(~in.used_regs);
    const uint16_t dead = allowed & DeadAt(index);
    // Dead registers already saved by an earlier instruction cost nothing; then other dead ones.
    for (int pass = 0; pass < 2; ++pass) {
      for (int r : kScratchOrder) {
        const uint16_t bit = static_cast<uint16_t>(1u << r);
        if (!(dead & bit)) continue;
        const bool saved = (clobbered_ & bit) != 0;
        if (pass == 0 && !saved) continue;
        if (!saved) sc.saves |= bit;
        taken |= bit;
        return r;
      }
    }
    if (dead_only) return -1;
    // A live register the instruction does not use: the one whose next read is farthest.
    const uint16_t live = allowed & static_cast<uint16_t>(~in.used_regs) & ~dead;
    int best = -1;
    size_t best_next = 0;
    for (int r : kScratchOrder) {
      if (!(live & (1u << r))) continue;
      const size_t next = NextRead(index, r);
      if (best < 0 || next > best_next) {
        best = r;
        best_next = next;
      }
    }
    if (best >= 0) {
      sc.spills |= static_cast<uint16_t>(1u << best);
      taken |= static_cast<uint16_t>(1u << best);
    }
    return best;
  }

  // Plans the scratch registers of instruction `index`: s0 when `need_rsp`, s1/s2 and the
  // soft-TLB check variant when `need_access` (flag-clobbering when `flags_ok`). Returns false
  // when registers ran out.
  bool Plan(size_t index, bool need_rsp, bool need_access, bool low_only, bool flags_ok,
            Scratch& sc, int* extra = nullptr) {
    uint16_t taken = static_cast<uint16_t>(1u << kRsp);
    sc.flags_path = need_access && flags_ok;
    if (need_access && !sc.flags_path) taken |= static_cast<uint16_t>(1u << kRcx);
    if (need_rsp && (sc.s0 = Pick(index, taken, low_only, true, sc)) < 0) return false;
    if (need_access) {
      if ((sc.s1 = Pick(index, taken, low_only, false, sc)) < 0) return false;
      if ((sc.s2 = Pick(index, taken, false, false, sc)) < 0) return false;
      if (mode_.limit_checks && (sc.limit = Pick(index, taken, false, false, sc)) < 0) return false;
      if (extra && (*extra = Pick(index, taken, false, false, sc)) < 0) return false;
      if (!sc.flags_path) {
        const uint16_t rcx = static_cast<uint16_t>(1u << kRcx);
        if (DeadAt(index) & rcx) {
          if (!(clobbered_ & rcx)) sc.saves |= rcx;
        } else {
          sc.park = Pick(index, taken, false, false, sc, /*dead_only=*/true);
          sc.rcx_spilled = sc.park < 0;
        }
      }
    }
    return true;
  }

  // Stores the guest values of the planned scratch registers; loads guest RSP into s0.
  void Begin(const Scratch& sc) {
    for (int r = 0; r < 16; ++r)
      if ((sc.saves | sc.spills) & (1u << r)) Save(r);
    clobbered_ |= sc.saves;
    if (sc.s0 >= 0) a_.mov(G(sc.s0), Gs(ROVE_CTX(guest_rsp)));
  }
  // Registers whose guest value is in a slot while the access runs.
  uint16_t AccessMask(const Scratch& sc) const {
    return static_cast<uint16_t>(clobbered_ | sc.spills);
  }
  void End(const Scratch& sc) { LoadMask(sc.spills); }

  // ---- exits and branches ----

  // Exit to the dispatcher with `rip` in lookup_rip and the given internal reason.
  void EmitExit(uint64_t rip, bt::InternalExit reason) {
    a_.mov(Gs(ROVE_CTX(tmp_rax)), x86::rax);
    a_.mov(x86::rax, rip);
    a_.mov(Gs(ROVE_CTX(lookup_rip)), x86::rax);
    a_.mov(Gs(ROVE_CTX(exit_reason)), static_cast<int32_t>(reason));
    a_.jmp(impl_.runtime.exit_common);
  }

  bool Chainable(uint64_t target) const {
    const uint64_t target_linear = (target & RipMask()) + cs_base_;
    return (target_linear & kPageMask) == (block_linear_ & kPageMask) && !mode_.single_step;
  }

  // Patchable rel32 jump (or jcc when `cc` >= 0) to a same-page guest RIP, initially to out-of-line
  // code that asks the dispatcher to chain it. Forward branches chain to the target's
  // unchecked entry.
  void EmitChainJump(uint64_t target, uint64_t branch_rip, int cc) {
    target &= RipMask();
    Label chain_request = a_.newLabel();
    if (cc < 0)
      a_.long_().jmp(chain_request);
    else
      a_.long_().emit(
          static_cast<x86::Inst::Id>(x86::Inst::jccFromCond(static_cast<x86::CondCode>(cc))),
          chain_request);
    Label after = a_.newLabel();
    a_.bind(after);
    const bt::InternalExit reason = target > branch_rip ? bt::kExitChainForward : bt::kExitChain;
    deferred_.push_back([this, chain_request, after, target, reason] {
      a_.bind(chain_request);
      a_.mov(Gs(ROVE_CTX(tmp_rax)), x86::rax);
      a_.mov(x86::rax, target);
      a_.mov(Gs(ROVE_CTX(lookup_rip)), x86::rax);
      a_.lea(x86::rax, x86::ptr(after));
      a_.mov(Gs(ROVE_CTX(chain_site)), x86::rax);
      a_.mov(Gs(ROVE_CTX(exit_reason)), static_cast<int32_t>(reason));
      a_.jmp(impl_.runtime.exit_common);
    });
    chain_sites.push_back({after, target});
  }

  // Direct transfer to a known guest RIP: a patchable jump when chaining is possible,
  // otherwise an inline jump-cache lookup.
  void EmitDirectJump(uint64_t target, uint64_t branch_rip) {
    RestoreClobbered();
    target &= RipMask();
    if (Chainable(target)) {
      EmitChainJump(target, branch_rip, -1);
      return;
    }
    // lookup_rip <- target without touching a guest register: spill rcx briefly.
    a_.mov(Gs(ROVE_CTX(spill_rcx)), x86::rcx);
    a_.mov(x86::rcx, target);
    a_.mov(Gs(ROVE_CTX(lookup_rip)), x86::rcx);
    a_.mov(x86::rcx, Gs(ROVE_CTX(spill_rcx)));
    EmitIndirectJump();
  }

  // Jump to the guest RIP in ctx.lookup_rip through the jump cache. Flag-free.
  void EmitIndirectJump() {
    RestoreClobbered();
    if (mode_.single_step) {
      a_.mov(Gs(ROVE_CTX(tmp_rax)), x86::rax);
      a_.mov(Gs(ROVE_CTX(exit_reason)), static_cast<int32_t>(bt::kExitLookup));
      a_.jmp(impl_.runtime.exit_common);
      return;
    }
    const int s1 = kRbx, s2 = kRsi;
    const size_t jc = ROVE_CTX(jump_cache) + mode_.view * sizeof(bt::JumpCache);
    a_.mov(Gs(ROVE_CTX(spill_rcx)), x86::rcx);
    Save(s1);
    Save(s2);
    a_.mov(G(s1), Gs(ROVE_CTX(lookup_rip)));
    a_.pext(G(s2), G(s1), Gs(ROVE_CTX(jc_index_mask)));
    a_.mov(x86::rcx, GsIndexed(jc + offsetof(bt::JumpCache, neg_rip), G(s2), 3));
    a_.lea(x86::rcx, x86::ptr(x86::rcx, G(s1)));
    Label hit = a_.newLabel();
    a_.jecxz(x86::rcx, hit);
    a_.mov(x86::rcx, Gs(ROVE_CTX(spill_rcx)));
    Load(s1);
    Load(s2);
    a_.jmp(impl_.runtime.exit_lookup_miss);
    a_.bind(hit);
    a_.mov(x86::rcx, GsIndexed(jc + offsetof(bt::JumpCache, host), G(s2), 3));
    a_.mov(Gs(ROVE_CTX(jump_target)), x86::rcx);
    a_.mov(x86::rcx, Gs(ROVE_CTX(spill_rcx)));
    Load(s1);
    Load(s2);
    a_.jmp(Gs(ROVE_CTX(jump_target)));
  }

  // ---- addresses ----

  // Computes the linear address of a memory operand into s1 (64-bit register), using s2 as a
  // temporary and s0 as the holder of guest RSP (or -1 when RSP is not referenced). Flag-free.
  void EmitLinearAddress(const Insn& in, const ZydisDecodedOperand& op, int s1, int s2, int s0) {
    const auto& mem = op.mem;
    const int addr_bits = in.d.address_width;
    int base = GprId(mem.base);
    int index = GprId(mem.index);
    if (base == kRsp) base = s0;
    if (index == kRsp) index = s0;
    int64_t disp = mem.disp.has_displacement ? mem.disp.value : 0;
    if (mem.base == ZYDIS_REGISTER_RIP || mem.base == ZYDIS_REGISTER_EIP) {
      uint64_t abs = in.next_rip + static_cast<uint64_t>(disp);
      if (mem.base == ZYDIS_REGISTER_EIP) abs &= 0xFFFFFFFFull;
      a_.mov(G(s1), abs);
    } else if (base < 0 && index < 0) {
      uint64_t abs = static_cast<uint64_t>(disp);
      if (addr_bits == 32) abs &= 0xFFFFFFFFull;
      if (addr_bits == 16) abs &= 0xFFFFull;
      a_.mov(G(s1), abs);
    } else {
      uint32_t shift = mem.scale == 8 ? 3 : mem.scale == 4 ? 2 : mem.scale == 2 ? 1 : 0;
      x86::Mem m;
      int32_t d32 = static_cast<int32_t>(disp);
      if (addr_bits == 64) {
        if (base >= 0 && index >= 0)
          m = x86::ptr(G(base), G(index), shift, d32);
        else if (base >= 0)
          m = x86::ptr(G(base), d32);
        if (base < 0) {
          // index*scale + disp with no base: asmjit needs the absolute form.
          m = x86::ptr_abs(static_cast<uint64_t>(static_cast<int64_t>(d32)), G(index), shift);
        }
        a_.lea(G(s1), m);
      } else {
        // 32- and 16-bit address sizes: compute in 32 bits (address-size prefix), then wrap.
        if (base >= 0 && index >= 0)
          m = x86::ptr(G32(base), G32(index), shift, d32);
        else if (base >= 0)
          m = x86::ptr(G32(base), d32);
        else
          m = x86::ptr_abs(static_cast<uint64_t>(static_cast<uint32_t>(d32)), G32(index), shift);
        a_.lea(G32(s1), m);
        if (addr_bits == 16) a_.movzx(G32(s1), G16(s1));
      }
    }
    const SegReg seg = SegmentOf(mem.segment);
    const bool poison = EmitLimitPoison(seg, s1, s2);
    EmitSegmentBase(seg, s1, s2);
    if (poison) a_.lea(G(s1), x86::ptr(G(s1), G(limit_scratch_)));
  }

  // The `address` step of EmitAccess for memory operand `op_index` of `in`.
  std::function<void()> OperandAddress(const Insn& in, int op_index, const Scratch& sc) {
    const Insn* pin = &in;
    const int s0 = sc.s0, s1 = sc.s1, s2 = sc.s2;
    return [this, pin, op_index, s0, s1, s2] {
      EmitLinearAddress(*pin, pin->ops[op_index], s1, s2, s0);
    };
  }

  // With TransMode::limit_checks, limit_scratch_ = a poison for the access of access_size_
  // bytes at offset s1 (zero-extended) in `seg`: 0 within the limit, else bit 62 (#GP) or bits
  // 62 and 61 (#SS). Added to the linear address it makes the soft-TLB check miss -- also
  // against an empty entry, whose tag is 2^63 -- and the slow path raises the fault.
  // Flag-free; clobbers s2.
  bool EmitLimitPoison(SegReg seg, int s1, int s2) {
    if (!mode_.limit_checks || mode_.code_bits == 64 || limit_scratch_ < 0) return false;
    const x86::Gp t = G(limit_scratch_);
    a_.lea(t, x86::ptr(G(s1), static_cast<int32_t>(access_size_ - 1)));  // last byte
    a_.not_(t);                                                          // -last - 1
    a_.mov(G(s2), Gs(ROVE_CTX(seg_limit) + 8 * seg));
    a_.lea(t, x86::ptr(t, G(s2), 0, 1));  // limit - last: negative iff beyond the limit
    a_.mov(G32(s2), 63);
    a_.shrx(t, t, G(s2));  // 1 iff beyond
    a_.mov(G32(s2), seg == kSs ? 61 : 62);
    a_.shlx(t, t, G(s2));
    if (seg == kSs) a_.lea(t, x86::ptr(t, t, 1));  // bits 62 and 61
    return true;
  }

  static SegReg SegmentOf(ZydisRegister seg) {
    switch (seg) {
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

  void EmitSegmentBase(SegReg seg, int s1, int s2) {
    bool add;
    if (mode_.code_bits == 64)
      add = (seg == kFs || seg == kGs);
    else
      add = mode_.add_seg_base || seg == kFs || seg == kGs;
    if (!add) return;
    a_.mov(G(s2), Gs(ROVE_CTX(seg_base) + 8 * seg));
    if (mode_.code_bits == 64)
      a_.lea(G(s1), x86::ptr(G(s1), G(s2)));
    else
      a_.lea(G32(s1), x86::ptr(G(s1), G(s2)));
  }

  // Linear address of the stack slot at guest RSP + `delta` (after wrapping to the stack
  // width), into s1; s0 holds guest RSP.
  void EmitStackAddress(int s1, int s2, int s0, int32_t delta) {
    if (mode_.stack_bits == 64) {
      a_.lea(G(s1), x86::ptr(G(s0), delta));
    } else {
      a_.lea(G32(s1), x86::ptr(G(s0), delta));
      if (mode_.stack_bits == 16) a_.movzx(G32(s1), G16(s1));
    }
    const bool poison = EmitLimitPoison(kSs, s1, s2);
    if (mode_.code_bits != 64 && mode_.add_seg_base) {
      a_.mov(G(s2), Gs(ROVE_CTX(seg_base) + 8 * kSs));
      a_.lea(G32(s1), x86::ptr(G(s1), G(s2)));
    }
    if (poison) a_.lea(G(s1), x86::ptr(G(s1), G(limit_scratch_)));
  }

  // [addr] = the low `size` bytes (2, 4 or 8) of `value`.
  void EmitStoreSized(int addr, int value, uint32_t size) {
    if (size == 8)
      a_.mov(x86::qword_ptr(G(addr)), G(value));
    else if (size == 4)
      a_.mov(x86::dword_ptr(G(addr)), G32(value));
    else
      a_.mov(x86::word_ptr(G(addr)), G16(value));
  }

  // Guest RSP (in s0) += delta in the stack width, committed to ctx.guest_rsp. Flag-free.
  void EmitRspCommit(int s0, int32_t delta) {
    if (mode_.stack_bits == 64) {
      a_.lea(G(s0), x86::ptr(G(s0), delta));
      a_.mov(Gs(ROVE_CTX(guest_rsp)), G(s0));
    } else if (mode_.stack_bits == 32) {
      a_.lea(G32(s0), x86::ptr(G(s0), delta));
      a_.mov(Gs(ROVE_CTX(guest_rsp), 4), G32(s0));
    } else {
      a_.lea(G32(s0), x86::ptr(G(s0), delta));
      a_.mov(Gs(ROVE_CTX(guest_rsp), 2), G16(s0));
    }
  }

  // The memory access core. `address` emits the linear address into s1 (may clobber s2; s0
  // holds guest RSP). `access` emits the operation on [s1] (host address). On a soft-TLB hit
  // the operation runs inline; otherwise the C++ slow path returns a host or bounce pointer and
  // the same operation runs out of line. The check clobbers RFLAGS only on the flags path,
  // where the guest flags stay pushed on the host stack until the access is done.
  void EmitAccess(size_t index, const Scratch& sc, uint32_t size, bool write,
                  const std::function<void()>& address, const std::function<void()>& access) {
    const int s0 = sc.s0, s1 = sc.s1, s2 = sc.s2;
    const size_t set = ROVE_CTX(tlb) + mode_.view * sizeof(TlbSet) + offsetof(TlbSet, entry);
    const size_t tag =
        set + (write ? offsetof(TlbEntry, write_neg_tag) : offsetof(TlbEntry, read_neg_tag));
    Label slow = a_.newLabel();
    Label resume = a_.newLabel();
    Begin(sc);
    limit_scratch_ = sc.limit;
    access_size_ = size;
    address();
    const uint16_t mask = AccessMask(sc);
    if (sc.flags_path) {
      a_.pushfq();
      if (static_cast<int64_t>(index) == check_at_) {
        // The block's exit-request check, here where the guest flags are already saved and
        // the state is precise: an exit resumes at this instruction.
        Label leave = a_.newLabel();
        a_.cmp(Gs(ROVE_CTX(exit_request)), 0);
        a_.jne(leave);
        const uint64_t rip = insns_[index].rip;
        deferred_.push_back([this, leave, rip, mask] {
          a_.bind(leave);
          a_.popfq();
          LoadMask(mask);
          EmitExit(rip, bt::kExitRequest);
        });
      }
      a_.pext(G(s2), G(s1), Gs(ROVE_CTX(tlb_index_mask)));
      a_.shl(G32(s2), kTlbEntryShift);
      a_.add(G(s1), GsIndexed(tag, G(s2), 0));
      a_.cmp(G(s1), static_cast<int32_t>(kPageSize - size));
      a_.ja(slow);
      a_.add(G(s1), GsIndexed(set + offsetof(TlbEntry, host_page), G(s2), 0));
      MarkInsn(index, mask, true);
      access();
      a_.lea(x86::rsp, x86::ptr(x86::rsp, 8));
    } else {
      auto park = [&] {
        if (sc.park >= 0)
          a_.mov(G(sc.park), x86::rcx);
        else if (sc.rcx_spilled)
          a_.mov(Gs(ROVE_CTX(spill_rcx)), x86::rcx);
      };
      auto unpark = [&] {
        if (sc.park >= 0)
          a_.mov(x86::rcx, G(sc.park));
        else if (sc.rcx_spilled)
          a_.mov(x86::rcx, Gs(ROVE_CTX(spill_rcx)));
      };
      a_.pext(G(s2), G(s1), Gs(ROVE_CTX(tlb_index_mask)));
      a_.lea(G(s2), x86::ptr_abs(0, G(s2), 2));  // entry index * 4 (scaled by 8 below)
      park();
      a_.mov(x86::rcx, GsIndexed(tag, G(s2), 3));
      a_.lea(x86::rcx, x86::ptr(x86::rcx, G(s1), 0, static_cast<int32_t>(size - 1)));
      a_.pext(x86::rcx, x86::rcx, Gs(ROVE_CTX(page_hi_mask)));
      Label hit = a_.newLabel();
      a_.jecxz(x86::rcx, hit);
      unpark();
      a_.jmp(slow);
      a_.bind(hit);
      a_.mov(x86::rcx, GsIndexed(set + offsetof(TlbEntry, addend), G(s2), 3));
      a_.lea(G(s1), x86::ptr(G(s1), x86::rcx));
      unpark();
      MarkInsn(index, mask);
      access();
    }
    End(sc);
    a_.bind(resume);

    // Registers to put back before calling C++: every guest value held in a slot. After a
    // write, the post call may leave the block: registers this instruction wrote are final.
    const uint16_t pre_mask = mask;
    const uint16_t post_mask =
        static_cast<uint16_t>(clobbered_ & ~insns_[index].regs_killed & ~sc.spills);
    const bool flags_path = sc.flags_path;
    const uint16_t spills = sc.spills;
    const bool fast = fast_;
    const int limit = sc.limit;
    deferred_.push_back([=, this] {
      a_.bind(slow);
      limit_scratch_ = limit;
      access_size_ = size;
      address();
      a_.mov(Gs(ROVE_CTX(mem_va)), G(s1));
      if (flags_path) a_.popfq();
      LoadMask(pre_mask);
      a_.call(impl_.runtime.thunk_mem_slow);
      Label ret = a_.newLabel();
      a_.bind(ret);
      site_labels.push_back({ret, size, static_cast<uint8_t>(write ? 1 : 0), index, false});
      if (s0 >= 0) a_.mov(G(s0), Gs(ROVE_CTX(guest_rsp)));
      a_.mov(G(s1), Gs(ROVE_CTX(mem_host)));
      const uint16_t saved_clobbered = clobbered_;
      clobbered_ = 0;
      MarkInsn(index, pre_mask);
      clobbered_ = saved_clobbered;
      access();
      LoadMask(spills);
      if (write) {
        LoadMask(post_mask);
        a_.call(impl_.runtime.thunk_mem_post);
        Label post = a_.newLabel();
        a_.bind(post);
        site_labels.push_back({post, size, 1, index, true});
      }
      if (fast) ReloadLoopBases();
      a_.jmp(resume);
    });
  }

  void EmitInsn(size_t index);
  void EmitMem(size_t index);
  void EmitBitOffsetMem(size_t index);
  void EmitLea(size_t index);
  void EmitPush(size_t index);
  void EmitPushMem(size_t index);
  void EmitPop(size_t index);
  void EmitCall(size_t index);
  void EmitRet(size_t index);
  void EmitJmpInd(size_t index);
  void EmitJcc(size_t index);
  void EmitLoop(size_t index);
  void EmitIdent(size_t index);
  void EmitCliSti(size_t index);
  void EmitPushf(size_t index);
  void EmitLeave(size_t index);
  void EmitSwapgs(size_t index);
  void EmitProbe(size_t index);
  // Faults on the host (SIGSEGV, mapped to #GP(0) at the current instruction) when `reg`, a
  // 64-bit branch target, is not canonical; clobbers `reg`, flag-free. Branches check their
  // target before committing RSP, so the #GP leaves the state before the branch.
  void EmitCanonicalCheck(int reg) {
    a_.pext(G(reg), G(reg), Gs(ROVE_CTX(canon_sign_mask)));
    a_.lea(G(reg), x86::ptr(G(reg), 1));
    a_.pdep(G(reg), G(reg), Gs(ROVE_CTX(canon_fault_mask)));
    x86::Mem probe = x86::dword_ptr(G(reg));  // ctx offset 0 or 1 when canonical
    probe.setSegment(x86::gs);
    a_.mov(G32(reg), probe);
  }
  // The same for the register operand of JMP reg, checked in a dead register when there is
  // one, else in RAX or RCX saved around the check.
  void EmitCanonicalCheckReg(size_t index, int target);
  // VZEROUPPER/VZEROALL of 16/32-bit code reach only YMM0-7; run in 64-bit mode they would
  // clear YMM8-15 too. A VEX.128 move (or XOR) of each of the eight zeroes the same bits.
  void EmitVzeroLow8(bool all) {
    for (uint32_t r = 0; r < 8; ++r) {
      if (all)
        a_.vpxor(x86::xmm(r), x86::xmm(r), x86::xmm(r));
      else
        a_.vmovdqa(x86::xmm(r), x86::xmm(r));
    }
  }
  void EmitFallback(size_t index) {
    RestoreClobbered();
    MarkInsn(index);
    EmitExit(insns_[index].rip, bt::kExitEmulate);
  }

  // Loads an indirect branch target (register or memory operand) into ctx.lookup_rip.
  bool EmitLoadTarget(size_t index);

  static constexpr bool kUseFlagsPath = true;
  int64_t check_at_ = -1;  // instruction whose flag-clobbering access holds the exit check

  // ---- counted loops ----
  bool PlanLoop();
  bool PlanLoopAccess(size_t index, const std::vector<int>& writes, const std::vector<int>& def);
  int64_t InductionStep(int reg, const std::vector<int>& writes, const std::vector<int>& def) const;
  void EmitLoopVersion(Label generic);
  void LoadGuest(x86::Gp dst, int reg, uint16_t clobbered);
  void LoadGroupAddress(x86::Gp dst, x86::Gp tmp, const LoopGroup& g, int64_t offset,
                        uint16_t clobbered);
  void EmitLoopTlbCheck(x86::Gp addr, x86::Gp out, x86::Gp index, bool write, Label fail);
  bool EmitHoistedMem(size_t index);
  // Puts the group base registers back after a slow path loaded guest values into them.
  void ReloadLoopBases() {
    for (size_t g = 0; g < loop_.groups.size(); ++g)
      if (loop_.groups[g].reg >= 0) a_.mov(G(loop_.groups[g].reg), Gs(ROVE_CTX(loop_base) + 8 * g));
  }
  LoopPlan loop_;
  int limit_scratch_ = -1;  // the current access's segment-limit poison register, or -1
  uint32_t access_size_ = 1;
  bool fast_ = false;      // emitting the fast version of a counted loop
  uint16_t reserved_ = 0;  // host registers scratch allocation must not use

  BtCpu::Impl& impl_;
  bt::TransMode mode_;
  uint64_t cs_base_;
  std::vector<Insn>& insns_;
  uint64_t block_linear_;
  CodeHolder code_;
  x86::Assembler a_;
  std::vector<std::function<void()>> deferred_;
  uint16_t clobbered_ = 0;  // dead registers used as scratch whose guest value is in their slot
};

void BlockEmitter::Emit() {
  MarkInsn(0);
  unchecked = a_.newLabel();
  const bool versioned = PlanLoop();
  if (versioned) {
    impl_.stats.counted_loops++;
    Label generic = a_.newLabel();
    EmitLoopVersion(generic);
    a_.bind(generic);
    MarkInsn(0);
  }
  // The exit-request check: in the first flag-clobbering memory access when there is one (its
  // guest flags are pushed anyway), else at the block entry. Every path through the block
  // passes it or leaves the block.
  for (size_t i = 0; i < insns_.size(); ++i) {
    if (i > 0 && insns_[i - 1].kind == Kind::kSti) continue;  // the STI shadow
    if (IsAccessKind(insns_[i].kind) && FlagsPathOk(i)) {
      check_at_ = static_cast<int64_t>(i);
      break;
    }
  }
  if (check_at_ >= 0) {
    // Chained forward branches enter at the start too; the check costs two instructions.
  } else if (FlagsDeadFrom(0)) {
    Label leave = a_.newLabel();
    a_.cmp(Gs(ROVE_CTX(exit_request)), 0);
    a_.jne(leave);
    const uint64_t rip = insns_[0].rip;
    deferred_.push_back([this, leave, rip] {
      a_.bind(leave);
      EmitExit(rip, bt::kExitRequest);
    });
  } else {
    // Flag-free: JRCXZ. RCX goes to its slot when dead (reloading a dead register delays
    // nothing), else into a dead register, else through ctx.spill_rcx.
    const uint16_t dead = DeadAt(0);
    int park = -1;
    if (!(dead & (1u << kRcx))) {
      for (int r : kScratchOrder)
        if (r != kRcx && (dead & (1u << r))) {
          park = r;
          break;
        }
    }
    Label go = a_.newLabel();
    auto save = [&] {
      if (dead & (1u << kRcx)) {
        Save(kRcx);
      } else if (park >= 0) {
        Save(park);
        a_.mov(G(park), x86::rcx);
      } else {
        a_.mov(Gs(ROVE_CTX(spill_rcx)), x86::rcx);
      }
    };
    auto restore = [&] {
      if (dead & (1u << kRcx)) {
        Load(kRcx);
      } else if (park >= 0) {
        a_.mov(x86::rcx, G(park));
        Load(park);
      } else {
        a_.mov(x86::rcx, Gs(ROVE_CTX(spill_rcx)));
      }
    };
    save();
    a_.mov(x86::rcx, Gs(ROVE_CTX(exit_request)));
    a_.jecxz(x86::rcx, go);
    restore();
    EmitExit(insns_[0].rip, bt::kExitRequest);
    a_.bind(go);
    restore();
  }
  if (!versioned) a_.bind(unchecked);
  for (size_t i = 0; i < insns_.size(); ++i) {
    EmitInsn(i);
    clobbered_ &= static_cast<uint16_t>(~insns_[i].regs_killed);
  }
  const Insn& last = insns_.back();
  switch (last.kind) {
    case Kind::kJmpRel:
    case Kind::kJmpInd:
    case Kind::kCallRel:
    case Kind::kCallInd:
    case Kind::kRetNear:
    case Kind::kJcc:
    case Kind::kLoop:
    case Kind::kEmulate:
      break;
    default:
      EmitDirectJump(last.next_rip, last.rip);
      break;
  }
  for (size_t i = 0; i < deferred_.size(); ++i) deferred_[i]();
}

void BlockEmitter::EmitInsn(size_t index) {
  Insn& in = insns_[index];
  switch (in.kind) {
    case Kind::kDrop:
      MarkInsn(index);
      break;
    case Kind::kIdent:
      EmitIdent(index);
      break;
    case Kind::kMem:
      EmitMem(index);
      break;
    case Kind::kLea:
      EmitLea(index);
      break;
    case Kind::kPushReg:
    case Kind::kPushImm:
      EmitPush(index);
      break;
    case Kind::kPushMem:
      EmitPushMem(index);
      break;
    case Kind::kPopReg:
      EmitPop(index);
      break;
    case Kind::kCallRel:
    case Kind::kCallInd:
      EmitCall(index);
      break;
    case Kind::kRetNear:
      EmitRet(index);
      break;
    case Kind::kJmpRel:
      MarkInsn(index);
      EmitDirectJump(in.next_rip + in.ops[0].imm.value.s, in.rip);
      break;
    case Kind::kJmpInd:
      EmitJmpInd(index);
      break;
    case Kind::kJcc:
      EmitJcc(index);
      break;
    case Kind::kLoop:
      EmitLoop(index);
      break;
    case Kind::kCli:
    case Kind::kSti:
      EmitCliSti(index);
      break;
    case Kind::kPushf:
      EmitPushf(index);
      break;
    case Kind::kLeave:
      EmitLeave(index);
      break;
    case Kind::kSwapgs:
      EmitSwapgs(index);
      break;
    case Kind::kProbe:
      EmitProbe(index);
      break;
    case Kind::kEmulate:
      EmitFallback(index);
      break;
  }
}

// CLI/STI when CPL <= IOPL (or real mode): byte 1 of RFLAGS is TF=0 (not single-stepping),
// IF, DF and OF (kept in the host RFLAGS, so 0 here), IOPL and NT (constant for the block's
// mode), so both are one store. After STI an interrupt may not be taken before the next
// instruction retires: inline STI is never the last instruction of a block and the next
// instruction never holds the exit-request check; when the vCPU has an interrupt waiting,
// STI leaves with ctx.sti_shadow set, so the engine runs one instruction and then takes it.
void BlockEmitter::EmitCliSti(size_t index) {
  const Insn& in = insns_[index];
  const bool sti = in.kind == Kind::kSti;
  if (sti && index + 1 == insns_.size()) {
    EmitFallback(index);
    return;
  }
  MarkInsn(index);
  const uint8_t byte1 =
      static_cast<uint8_t>((mode_.iopl << 4) | (mode_.nt ? 0x40 : 0) | (sti ? 0x02 : 0));
  a_.mov(Gs(ROVE_CTX(sys_rflags) + 1, 1), byte1);
  if (!sti) return;
  Label leave = a_.newLabel();
  Label go = a_.newLabel();
  a_.mov(Gs(ROVE_CTX(spill_rcx)), x86::rcx);
  a_.mov(x86::rcx, Gs(ROVE_CTX(irq_pending)));
  a_.jecxz(x86::rcx, go);
  a_.jmp(leave);
  a_.bind(go);
  a_.mov(x86::rcx, Gs(ROVE_CTX(spill_rcx)));
  const uint16_t clobbered = clobbered_;
  const uint64_t next = in.next_rip;
  deferred_.push_back([this, leave, clobbered, next] {
    a_.bind(leave);
    a_.mov(x86::rcx, Gs(ROVE_CTX(spill_rcx)));
    LoadMask(clobbered);
    a_.mov(Gs(ROVE_CTX(sti_shadow)), 1);
    EmitExit(next, bt::kExitRequest);
  });
}

// PUSHF: the host RFLAGS' guest bits (arithmetic flags, DF) plus ctx.sys_rflags, stored with
// the flag-free soft-TLB check so the flags stay in place.
void BlockEmitter::EmitPushf(size_t index) {
  Insn& in = insns_[index];
  const uint32_t size = in.d.operand_width / 8;
  Scratch sc;
  int s3 = -1;
  if (!Plan(index, true, true, false, false, sc, &s3)) {
    EmitFallback(index);
    return;
  }
  const int s0 = sc.s0, s1 = sc.s1, s2 = sc.s2;
  EmitAccess(
      index, sc, size, true,
      [this, s0, s1, s2, size] { EmitStackAddress(s1, s2, s0, -static_cast<int32_t>(size)); },
      [this, s0, s1, s2, s3, size] {
        a_.pushfq();
        a_.pop(G(s3));
        a_.pext(G(s3), G(s3), Gs(ROVE_CTX(host_live_mask)));
        a_.pdep(G(s3), G(s3), Gs(ROVE_CTX(host_live_mask)));
        a_.mov(G(s2), Gs(ROVE_CTX(sys_rflags)));
        a_.lea(G(s3), x86::ptr(G(s3), G(s2)));  // disjoint bits: the sum is the OR
        EmitStoreSized(s1, s3, size);
        EmitRspCommit(s0, -static_cast<int32_t>(size));
      });
}

// LEAVE (64-bit): RSP = RBP + 8 and RBP = [RBP], committed only after the load succeeds.
void BlockEmitter::EmitLeave(size_t index) {
  Scratch sc;
  if (!Plan(index, false, true, false, FlagsPathOk(index), sc)) {
    EmitFallback(index);
    return;
  }
  const int s1 = sc.s1, s2 = sc.s2;
  EmitAccess(
      index, sc, 8, false, [this, s1] { a_.mov(G(s1), x86::rbp); },
      [this, s1, s2] {
        a_.lea(G(s2), x86::ptr(x86::rbp, 8));
        a_.mov(x86::rbp, x86::qword_ptr(G(s1)));
        a_.mov(Gs(ROVE_CTX(guest_rsp)), G(s2));
      });
}

// SWAPGS: two registers (dead ones when there are) exchange the two context words. It cannot
// fault here (64-bit code at CPL 0 is the block's mode).
void BlockEmitter::EmitSwapgs(size_t index) {
  Scratch sc;
  uint16_t taken = static_cast<uint16_t>(1u << kRsp);
  const int a = Pick(index, taken, false, false, sc);
  const int b = a < 0 ? -1 : Pick(index, taken, false, false, sc);
  if (b < 0) {
    EmitFallback(index);
    return;
  }
  Begin(sc);
  MarkInsn(index, sc.spills);
  const size_t gs = ROVE_CTX(seg_base) + 8 * kGs;
  a_.mov(G(a), Gs(gs));
  a_.mov(G(b), Gs(ROVE_CTX(kernel_gs_base)));
  a_.mov(Gs(gs), G(b));
  a_.mov(Gs(ROVE_CTX(kernel_gs_base)), G(a));
  End(sc);
}

// CLFLUSH/CLFLUSHOPT/CLWB: a 1-byte read through the soft TLB, its value unused (guest RAM is
// ordinary host memory; there is nothing to flush for the guest to observe). The read is real:
// an address that matches an empty entry must reach its guard page and fault.
void BlockEmitter::EmitProbe(size_t index) {
  Insn& in = insns_[index];
  Scratch sc;
  if (!Plan(index, in.uses_rsp, true, false, FlagsPathOk(index), sc)) {
    EmitFallback(index);
    return;
  }
  const int s1 = sc.s1, s2 = sc.s2;
  EmitAccess(index, sc, 1, false, OperandAddress(in, in.mem_index, sc),
             [this, s1, s2] { a_.movzx(G32(s2), x86::byte_ptr(G(s1))); });
}

void BlockEmitter::EmitIdent(size_t index) {
  Insn& in = insns_[index];
  if (mode_.code_bits == 64 && !in.uses_rsp) {
    MarkInsn(index);
    a_.embed(in.bytes, in.d.length);
    return;
  }
  if (in.d.mnemonic == ZYDIS_MNEMONIC_VZEROUPPER || in.d.mnemonic == ZYDIS_MNEMONIC_VZEROALL) {
    MarkInsn(index);
    EmitVzeroLow8(in.d.mnemonic == ZYDIS_MNEMONIC_VZEROALL);
    return;
  }
  Scratch sc;
  Reencoded enc;
  if (!Plan(index, in.uses_rsp, false, in.uses_high_byte, false, sc) ||
      !Reencode(in, -1, sc.s0, enc)) {
    EmitFallback(index);
    return;
  }
  Begin(sc);
  MarkInsn(index, sc.spills);
  a_.embed(enc.bytes, enc.length);
  if (sc.s0 >= 0 && in.writes_rsp) a_.mov(Gs(ROVE_CTX(guest_rsp)), G(sc.s0));
  End(sc);
}

void BlockEmitter::EmitMem(size_t index) {
  if (fast_ && EmitHoistedMem(index)) return;
  Insn& in = insns_[index];
  if (IsBitTestWithRegisterOffset(in)) {
    EmitBitOffsetMem(index);
    return;
  }
  const auto& op = in.ops[in.mem_index];
  Scratch sc;
  Reencoded enc;
  if (!Plan(index, in.uses_rsp, true, in.uses_high_byte, FlagsPathOk(index), sc) ||
      !Reencode(in, sc.s1, sc.s0, enc)) {
    EmitFallback(index);
    return;
  }
  bool write = (op.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) != 0;
  uint32_t size = std::max<uint32_t>(1, op.size / 8);
  if (size > bt::kBounceBytes) {
    EmitFallback(index);
    return;
  }
  const Insn* pin = &in;
  const int s0 = sc.s0;
  EmitAccess(index, sc, size, write, OperandAddress(in, in.mem_index, sc), [this, enc, pin, s0] {
    a_.embed(enc.bytes, enc.length);
    if (s0 >= 0 && pin->writes_rsp) a_.mov(Gs(ROVE_CTX(guest_rsp)), G(s0));
  });
}

// BT* [m], r: the access is to the operand-sized unit at EA + (offset SAR log2(bits)) *
// (bits / 8) (EA wrapped to the address size, then the segment base), and the host instruction
// gets the offset modulo bits, so it touches exactly the checked bytes.
void BlockEmitter::EmitBitOffsetMem(size_t index) {
  Insn& in = insns_[index];
  const int reg = GprId(in.ops[1].reg.value);
  const uint32_t bits = in.d.operand_width;
  const uint32_t size = bits / 8;
  const bool write = (in.ops[0].actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) != 0;
  Scratch sc;
  int s3 = -1;
  Reencoded enc;
  if (reg < 0 || reg == kRsp || (bits != 16 && bits != 32 && bits != 64) ||
      !Plan(index, in.uses_rsp, true, false, FlagsPathOk(index), sc, &s3) ||
      !Reencode(in, sc.s1, sc.s0, enc, nullptr, RegSubst{reg, s3})) {
    EmitFallback(index);
    return;
  }
  const int s0 = sc.s0, s1 = sc.s1, s2 = sc.s2;
  const Insn* pin = &in;
  const uint32_t shift = bits == 64 ? 6 : bits == 32 ? 5 : 4;
  const size_t mask_slot = ROVE_CTX(bit_offset_mask) + 8 * (shift - 4);
  EmitAccess(
      index, sc, size, write,
      [this, pin, reg, bits, shift, s0, s1, s2, s3] {
        // Unit index (signed) = offset SAR log2(bits), flag-free.
        if (bits == 64)
          a_.mov(G(s3), G(reg));
        else if (bits == 32)
          a_.movsxd(G(s3), G32(reg));
        else
          a_.movsx(G(s3), G16(reg));
        a_.mov(G32(s2), shift);
        a_.sarx(G(s3), G(s3), G(s2));
        ZydisDecodedOperand plain = pin->ops[0];
        plain.mem.segment = ZYDIS_REGISTER_DS;
        const bt::TransMode saved = mode_;
        mode_.add_seg_base = false;
        mode_.code_bits = 64;
        EmitLinearAddress(*pin, plain, s1, s2, s0);
        mode_ = saved;
        const x86::Mem unit = x86::ptr(G(s1), G(s3), shift - 3);
        if (pin->d.address_width == 64) {
          a_.lea(G(s1), unit);
        } else {
          a_.lea(G32(s1), unit);
          if (pin->d.address_width == 16) a_.movzx(G32(s1), G16(s1));
        }
        const SegReg seg = SegmentOf(pin->ops[0].mem.segment);
        const bool poison = EmitLimitPoison(seg, s1, s2);  // the unit's offset, not EA's
        EmitSegmentBase(seg, s1, s2);
        if (poison) a_.lea(G(s1), x86::ptr(G(s1), G(limit_scratch_)));
      },
      [this, enc, reg, s3, mask_slot] {
        a_.pext(G(s3), G(reg), Gs(mask_slot));  // offset modulo bits, flag-free
        a_.embed(enc.bytes, enc.length);
      });
}

void BlockEmitter::EmitLea(size_t index) {
  Insn& in = insns_[index];
  const auto& op = in.ops[1];
  int dst = GprId(in.ops[0].reg.value);
  if (mode_.code_bits == 64 && !in.uses_rsp && op.mem.base != ZYDIS_REGISTER_RIP) {
    MarkInsn(index);
    a_.embed(in.bytes, in.d.length);
    return;
  }
  Scratch sc;
  if (!Plan(index, in.uses_rsp, false, false, false, sc)) {
    EmitFallback(index);
    return;
  }
  // The result register: the destination itself when it is written whole, else a scratch.
  int s1 = dst;
  if (dst == kRsp || in.ops[0].size < 32) {
    uint16_t taken = static_cast<uint16_t>((1u << kRsp) | (sc.s0 >= 0 ? 1u << sc.s0 : 0));
    if ((s1 = Pick(index, taken, false, true, sc)) < 0) {
      EmitFallback(index);
      return;
    }
  }
  Begin(sc);
  MarkInsn(index, sc.spills);
  // Effective address only (LEA ignores segments): compute with a copy of the operand that
  // has no segment base added.
  ZydisDecodedOperand plain = op;
  plain.mem.segment = ZYDIS_REGISTER_DS;
  bt::TransMode saved = mode_;
  mode_.add_seg_base = false;
  mode_.code_bits = 64;  // suppress any FS/GS base addition
  EmitLinearAddress(in, plain, s1, s1, sc.s0);
  mode_ = saved;
  const int out = dst == kRsp ? sc.s0 : dst;
  if (out != s1 || in.ops[0].size != 64) {
    switch (in.ops[0].size) {
      case 64:
        a_.mov(G(out), G(s1));
        break;
      case 32:
        a_.mov(G32(out), G32(s1));
        break;
      default:
        a_.mov(G16(out), G16(s1));
        break;
    }
  }
  if (dst == kRsp) a_.mov(Gs(ROVE_CTX(guest_rsp)), G(sc.s0));
  End(sc);
}

void BlockEmitter::EmitPush(size_t index) {
  Insn& in = insns_[index];
  uint32_t size = in.d.operand_width / 8;
  Scratch sc;
  if (!Plan(index, true, true, false, FlagsPathOk(index), sc)) {
    EmitFallback(index);
    return;
  }
  const Insn* pin = &in;
  const int s0 = sc.s0, s1 = sc.s1, s2 = sc.s2;
  EmitAccess(
      index, sc, size, true,
      [this, s0, s1, s2, size] { EmitStackAddress(s1, s2, s0, -static_cast<int32_t>(size)); },
      [this, pin, s0, s1, size] {
        if (pin->kind == Kind::kPushImm) {
          int64_t v = pin->ops[0].imm.value.s;
          if (size == 8)
            a_.mov(x86::qword_ptr(G(s1)), static_cast<int32_t>(v));
          else if (size == 4)
            a_.mov(x86::dword_ptr(G(s1)), static_cast<int32_t>(v));
          else
            a_.mov(x86::word_ptr(G(s1)), static_cast<int32_t>(v & 0xFFFF));
        } else {
          int r = GprId(pin->ops[0].reg.value);
          if (r == kRsp) r = s0;
          EmitStoreSized(s1, r, size);
        }
        EmitRspCommit(s0, -static_cast<int32_t>(size));
      });
}

// PUSH m64: the source is read first (its faults come first; with the old RSP for an
// RSP-based operand), kept in ctx.lookup_rip, then pushed like a register. Nothing is committed
// before the push's store, so a fault in either access (or the exit-request check) leaves the
// guest state as before the instruction. The read uses the flag-free check: the guest flags
// must still be in the host RFLAGS when the push faults; the push may use the flags path.
void BlockEmitter::EmitPushMem(size_t index) {
  Insn& in = insns_[index];
  Scratch rd;
  if (!Plan(index, in.uses_rsp, true, false, false, rd)) {
    EmitFallback(index);
    return;
  }
  {
    const int s1 = rd.s1, s2 = rd.s2;
    EmitAccess(index, rd, 8, false, OperandAddress(in, 0, rd), [this, s1, s2] {
      a_.mov(G(s2), x86::qword_ptr(G(s1)));
      a_.mov(Gs(ROVE_CTX(lookup_rip)), G(s2));
    });
  }
  Scratch sc;
  if (!Plan(index, true, true, false, FlagsPathOk(index), sc)) {
    EmitFallback(index);
    return;
  }
  const int s0 = sc.s0, s1 = sc.s1, s2 = sc.s2;
  EmitAccess(
      index, sc, 8, true, [this, s0, s1, s2] { EmitStackAddress(s1, s2, s0, -8); },
      [this, s0, s1, s2] {
        a_.mov(G(s2), Gs(ROVE_CTX(lookup_rip)));
        EmitStoreSized(s1, s2, 8);
        EmitRspCommit(s0, -8);
      });
}

void BlockEmitter::EmitPop(size_t index) {
  Insn& in = insns_[index];
  uint32_t size = in.d.operand_width / 8;
  int dst = GprId(in.ops[0].reg.value);
  Scratch sc;
  if (!Plan(index, true, true, false, FlagsPathOk(index), sc)) {
    EmitFallback(index);
    return;
  }
  const int s0 = sc.s0, s1 = sc.s1, s2 = sc.s2;
  EmitAccess(
      index, sc, size, false, [this, s0, s1, s2] { EmitStackAddress(s1, s2, s0, 0); },
      [this, s0, s1, size, dst] {
        if (dst == kRsp) {
          // POP RSP: RSP = value read (the increment is overwritten).
          if (size == 8) {
            a_.mov(G(s0), x86::qword_ptr(G(s1)));
            a_.mov(Gs(ROVE_CTX(guest_rsp)), G(s0));
          } else if (size == 4) {
            a_.mov(G32(s0), x86::dword_ptr(G(s1)));
            a_.mov(Gs(ROVE_CTX(guest_rsp), 4), G32(s0));
          } else {
            a_.mov(G16(s0), x86::word_ptr(G(s1)));
            a_.mov(Gs(ROVE_CTX(guest_rsp), 2), G16(s0));
          }
          return;
        }
        if (size == 8)
          a_.mov(G(dst), x86::qword_ptr(G(s1)));
        else if (size == 4)
          a_.mov(G32(dst), x86::dword_ptr(G(s1)));
        else
          a_.mov(G16(dst), x86::word_ptr(G(s1)));
        EmitRspCommit(s0, static_cast<int32_t>(size));
      });
}

void BlockEmitter::EmitCanonicalCheckReg(size_t index, int target) {
  int tmp = -1;
  const uint16_t dead = DeadAt(index);
  for (int r : kScratchOrder) {
    if (r != target && (dead & (1u << r))) {
      tmp = r;
      break;
    }
  }
  const bool reload = tmp < 0;
  if (reload) tmp = target == kRax ? kRcx : kRax;
  const uint16_t bit = static_cast<uint16_t>(1u << tmp);
  if (!(clobbered_ & bit)) {
    Save(tmp);
    if (!reload) clobbered_ |= bit;  // dead: its guest value stays in the slot
  }
  MarkInsn(index, bit);
  if (target == kRsp)
    a_.mov(G(tmp), Gs(ROVE_CTX(guest_rsp)));
  else
    a_.mov(G(tmp), G(target));
  EmitCanonicalCheck(tmp);
  if (reload && !(clobbered_ & bit)) Load(tmp);
}

bool BlockEmitter::EmitLoadTarget(size_t index) {
  Insn& in = insns_[index];
  const auto& op = in.ops[0];
  uint32_t width = in.d.operand_width;
  if (op.type == ZYDIS_OPERAND_TYPE_REGISTER) {
    int r = GprId(op.reg.value);
    if (in.kind == Kind::kJmpInd && mode_.code_bits == 64 && width == 64)
      EmitCanonicalCheckReg(index, r);
    MarkInsn(index);
    if (r == kRsp) {
      a_.mov(Gs(ROVE_CTX(spill_rcx)), x86::rcx);
      a_.mov(x86::rcx, Gs(ROVE_CTX(guest_rsp)));
      r = kRcx;
    }
    if (width == 64) {
      a_.mov(Gs(ROVE_CTX(lookup_rip)), G(r));
    } else {
      if (r != kRcx) a_.mov(Gs(ROVE_CTX(spill_rcx)), x86::rcx);
      if (width == 32)
        a_.mov(x86::ecx, G32(r));
      else
        a_.movzx(x86::ecx, G16(r));
      a_.mov(Gs(ROVE_CTX(lookup_rip)), x86::rcx);
    }
    if (r == kRcx || width != 64) a_.mov(x86::rcx, Gs(ROVE_CTX(spill_rcx)));
    return true;
  }
  Scratch sc;
  if (!Plan(index, in.uses_rsp, true, false, false, sc)) {
    EmitFallback(index);
    return false;
  }
  const Insn* pin = &in;
  const int s1 = sc.s1, s2 = sc.s2;
  EmitAccess(index, sc, width / 8, false, OperandAddress(in, 0, sc), [this, pin, s1, s2, width] {
    if (width == 64)
      a_.mov(G(s2), x86::qword_ptr(G(s1)));
    else if (width == 32)
      a_.mov(G32(s2), x86::dword_ptr(G(s1)));
    else
      a_.movzx(G32(s2), x86::word_ptr(G(s1)));
    a_.mov(Gs(ROVE_CTX(lookup_rip)), G(s2));
    if (pin->kind == Kind::kJmpInd && mode_.code_bits == 64 && width == 64) {
      a_.mov(G(s1), G(s2));
      EmitCanonicalCheck(s1);
    }
  });
  return true;
}

void BlockEmitter::EmitCall(size_t index) {
  Insn& in = insns_[index];
  if (in.kind == Kind::kCallInd) {
    if (!EmitLoadTarget(index)) return;
  } else {
    MarkInsn(index);
  }
  // Push the return address.
  uint32_t size = mode_.code_bits == 64 ? 8 : in.d.operand_width / 8;
  uint64_t ret = in.next_rip;
  Scratch sc;
  if (!Plan(index, true, true, false, false, sc)) {
    EmitFallback(index);
    return;
  }
  const int s0 = sc.s0, s1 = sc.s1, s2 = sc.s2;
  EmitAccess(
      index, sc, size, true,
      [this, s0, s1, s2, size] { EmitStackAddress(s1, s2, s0, -static_cast<int32_t>(size)); },
      [this, pin = &in, s0, s1, s2, size, ret] {
        a_.mov(G(s2), ret);
        EmitStoreSized(s1, s2, size);
        if (pin->kind == Kind::kCallInd && size == 8) {
          // After the store, as the host does: a #GP for a non-canonical target leaves the
          // return address written below the unchanged RSP (tests/diff control cases).
          a_.mov(G(s2), Gs(ROVE_CTX(lookup_rip)));
          EmitCanonicalCheck(s2);
        }
        EmitRspCommit(s0, -static_cast<int32_t>(size));
      });
  if (in.kind == Kind::kCallRel) {
    EmitDirectJump(in.next_rip + in.ops[0].imm.value.s, in.rip);
  } else {
    EmitIndirectJump();
  }
}

void BlockEmitter::EmitRet(size_t index) {
  Insn& in = insns_[index];
  uint32_t size =
      mode_.code_bits == 64 ? (in.d.operand_width == 16 ? 2 : 8) : in.d.operand_width / 8;
  int32_t extra = 0;
  if (in.d.operand_count_visible > 0 && in.ops[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE)
    extra = static_cast<int32_t>(in.ops[0].imm.value.u & 0xFFFF);
  Scratch sc;
  if (!Plan(index, true, true, false, false, sc)) {
    EmitFallback(index);
    return;
  }
  MarkInsn(index);
  const int s0 = sc.s0, s1 = sc.s1, s2 = sc.s2;
  EmitAccess(
      index, sc, size, false, [this, s0, s1, s2] { EmitStackAddress(s1, s2, s0, 0); },
      [this, s0, s1, s2, size, extra] {
        if (size == 8)
          a_.mov(G(s2), x86::qword_ptr(G(s1)));
        else if (size == 4)
          a_.mov(G32(s2), x86::dword_ptr(G(s1)));
        else
          a_.movzx(G32(s2), x86::word_ptr(G(s1)));
        a_.mov(Gs(ROVE_CTX(lookup_rip)), G(s2));
        if (size == 8) {
          a_.mov(G(s1), G(s2));
          EmitCanonicalCheck(s1);
        }
        EmitRspCommit(s0, static_cast<int32_t>(size) + extra);
      });
  EmitIndirectJump();
}

void BlockEmitter::EmitJmpInd(size_t index) {
  if (!EmitLoadTarget(index)) return;
  EmitIndirectJump();
}

void BlockEmitter::EmitJcc(size_t index) {
  Insn& in = insns_[index];
  MarkInsn(index);
  RestoreClobbered();
  const uint64_t taken_rip = (in.next_rip + in.ops[0].imm.value.s) & RipMask();
  // Host Jcc with the same condition code: (opcode & 0xF) of the short or near form.
  const int cc = in.d.opcode & 0x0F;
  if (Chainable(taken_rip)) {
    // jcc rel32 straight to the taken target (patched when chained), then the fall-through.
    EmitChainJump(taken_rip, in.rip, cc);
    EmitDirectJump(in.next_rip, in.rip);
    return;
  }
  Label taken = a_.newLabel();
  a_.emit(static_cast<x86::Inst::Id>(x86::Inst::jccFromCond(static_cast<x86::CondCode>(cc))),
          taken);
  EmitDirectJump(in.next_rip, in.rip);
  a_.bind(taken);
  EmitDirectJump(taken_rip, in.rip);
}

void BlockEmitter::EmitLoop(size_t index) {
  Insn& in = insns_[index];
  MarkInsn(index);
  RestoreClobbered();
  uint64_t taken_rip = in.next_rip + in.ops[0].imm.value.s;
  const int addr_bits = in.d.address_width;
  Label taken = a_.newLabel();
  Label fall = a_.newLabel();
  const auto m = in.d.mnemonic;
  bool is_loop =
      m == ZYDIS_MNEMONIC_LOOP || m == ZYDIS_MNEMONIC_LOOPE || m == ZYDIS_MNEMONIC_LOOPNE;
  if (is_loop) {
    if (addr_bits == 64)
      a_.lea(x86::rcx, x86::ptr(x86::rcx, -1));
    else if (addr_bits == 32)
      a_.lea(x86::ecx, x86::ptr(x86::rcx, -1));
    else
      a_.lea(x86::cx, x86::ptr(x86::rcx, -1));
  }
  // Test the count register of the address width without touching flags.
  Label zero = a_.newLabel();
  Label nonzero = a_.newLabel();
  if (addr_bits == 64) {
    a_.jecxz(x86::rcx, zero);
  } else {
    a_.mov(Gs(ROVE_CTX(spill_rcx)), x86::rcx);
    if (addr_bits == 32)
      a_.mov(x86::ecx, x86::ecx);
    else
      a_.movzx(x86::ecx, x86::cx);
    Label z2 = a_.newLabel();
    a_.jecxz(x86::rcx, z2);
    a_.mov(x86::rcx, Gs(ROVE_CTX(spill_rcx)));
    a_.jmp(nonzero);
    a_.bind(z2);
    a_.mov(x86::rcx, Gs(ROVE_CTX(spill_rcx)));
    a_.jmp(zero);
  }
  a_.jmp(nonzero);
  a_.bind(zero);
  // count == 0
  if (is_loop)
    a_.jmp(fall);
  else
    a_.jmp(taken);
  a_.bind(nonzero);
  if (!is_loop)
    a_.jmp(fall);
  else if (m == ZYDIS_MNEMONIC_LOOPE)
    a_.jnz(fall);
  else if (m == ZYDIS_MNEMONIC_LOOPNE)
    a_.jz(fall);
  a_.bind(taken);
  EmitDirectJump(taken_rip, in.rip);
  a_.bind(fall);
  EmitDirectJump(in.next_rip, in.rip);
}

// ------------------------------------------------------------------------------------------
// Counted loops
// ------------------------------------------------------------------------------------------

// Instructions whose only possible fault is their memory access: once the access is known to
// hit mapped RAM with the right permission, they cannot fault at all.
enum class AccessFaults : uint8_t {
  kOther,           // the instruction can fault for other reasons
  kOnlyAccess,      // only its memory access can fault
  kUnlessFpMasked,  // also SIMD floating-point exceptions, unless MXCSR masks them all
};

// SIMD forms by the SDM's exception types (Zydis exception classes): no alignment requirement
// and no floating-point exceptions (types 4-6 with VEX/EVEX; type 5 and the explicit unaligned
// moves in legacy SSE), or floating-point exceptions only (types 2-3 with VEX/EVEX, type 3 in
// legacy SSE). Legacy packed forms need 16-byte alignment and aligned moves fault on it: they
// stay checked, as do x87 forms (their exceptions are delivered at the next x87 instruction).
AccessFaults SimdAccessFaults(const Insn& in) {
  const bool vex = in.d.encoding == ZYDIS_INSTRUCTION_ENCODING_VEX ||
                   in.d.encoding == ZYDIS_INSTRUCTION_ENCODING_EVEX;
  switch (in.d.meta.exception_class) {
    case ZYDIS_EXCEPTION_CLASS_AVX4:
    case ZYDIS_EXCEPTION_CLASS_AVX5:
    case ZYDIS_EXCEPTION_CLASS_AVX6:
    case ZYDIS_EXCEPTION_CLASS_E4:
    case ZYDIS_EXCEPTION_CLASS_E4NF:
    case ZYDIS_EXCEPTION_CLASS_E5:
    case ZYDIS_EXCEPTION_CLASS_E5NF:
    case ZYDIS_EXCEPTION_CLASS_E6:
    case ZYDIS_EXCEPTION_CLASS_E6NF:
      return vex ? AccessFaults::kOnlyAccess : AccessFaults::kOther;
    case ZYDIS_EXCEPTION_CLASS_AVX2:
    case ZYDIS_EXCEPTION_CLASS_AVX3:
    case ZYDIS_EXCEPTION_CLASS_E2:
    case ZYDIS_EXCEPTION_CLASS_E2NF:
    case ZYDIS_EXCEPTION_CLASS_E3:
    case ZYDIS_EXCEPTION_CLASS_E3NF:
      return vex ? AccessFaults::kUnlessFpMasked : AccessFaults::kOther;
    case ZYDIS_EXCEPTION_CLASS_SSE5:
      return vex ? AccessFaults::kOther : AccessFaults::kOnlyAccess;
    case ZYDIS_EXCEPTION_CLASS_SSE3:
      return vex ? AccessFaults::kOther : AccessFaults::kUnlessFpMasked;
    default:
      break;
  }
  switch (in.d.mnemonic) {
    case ZYDIS_MNEMONIC_MOVUPS:
    case ZYDIS_MNEMONIC_MOVUPD:
    case ZYDIS_MNEMONIC_MOVDQU:
    case ZYDIS_MNEMONIC_LDDQU:
      return vex ? AccessFaults::kOther : AccessFaults::kOnlyAccess;
    default:
      return AccessFaults::kOther;
  }
}

AccessFaults FaultsOnlyByAccess(const Insn& in) {
  switch (in.d.mnemonic) {
    case ZYDIS_MNEMONIC_DIV:
    case ZYDIS_MNEMONIC_IDIV:
    // A register bit offset addresses memory beyond the operand.
    case ZYDIS_MNEMONIC_BT:
    case ZYDIS_MNEMONIC_BTS:
    case ZYDIS_MNEMONIC_BTR:
    case ZYDIS_MNEMONIC_BTC:
      return AccessFaults::kOther;
    default:
      break;
  }
  // The categories also hold MMX, SSE and AVX forms (MOVDQA and MOVD/MOVQ are DATAXFER,
  // PAND/PXOR LOGICAL, CVTPI2PS CONVERT) that fault for reasons of their own: a misaligned
  // operand (#GP), a pending x87 exception (#MF), #XM. Only all-GPR forms go by category; forms
  // with vector (and AVX-512 mask) registers go by their exception type; MMX and x87 stay
  // checked.
  bool vector = false;
  for (int i = 0; i < in.d.operand_count; ++i) {
    if (in.ops[i].type != ZYDIS_OPERAND_TYPE_REGISTER) continue;
    switch (ZydisRegisterGetClass(in.ops[i].reg.value)) {
      case ZYDIS_REGCLASS_GPR8:
      case ZYDIS_REGCLASS_GPR16:
      case ZYDIS_REGCLASS_GPR32:
      case ZYDIS_REGCLASS_GPR64:
      case ZYDIS_REGCLASS_FLAGS:
      case ZYDIS_REGCLASS_IP:
        break;
      case ZYDIS_REGCLASS_XMM:
      case ZYDIS_REGCLASS_YMM:
      case ZYDIS_REGCLASS_ZMM:
      case ZYDIS_REGCLASS_MASK:  // AVX-512 write masks
        vector = true;
        break;
      default:
        if (in.ops[i].reg.value == ZYDIS_REGISTER_MXCSR) {  // SIMD FP: a hidden operand
          vector = true;
          break;
        }
        return AccessFaults::kOther;
    }
  }
  if (vector) return SimdAccessFaults(in);
  return NonFaultingCategory(in.d.meta.category) ? AccessFaults::kOnlyAccess : AccessFaults::kOther;
}

bool IsPowerOfTwo(int64_t v) {
  return v > 0 && (v & (v - 1)) == 0;
}

int Log2(int64_t v) {
  int n = 0;
  while ((int64_t{1} << n) < v) ++n;
  return n;
}

// Recognises the counted loop and plans its hoisted address groups. `writes[r]` counts the
// instructions writing register r; `def[r]` is the one that does when there is exactly one.
bool BlockEmitter::PlanLoop() {
  const size_t n = insns_.size();
  if (!impl_.options.counted_loops) return false;
  if (mode_.code_bits != 64 || mode_.single_step || n < 3 || n > 64) return false;
  const Insn& jcc = insns_[n - 1];
  if (jcc.kind != Kind::kJcc) return false;
  if (jcc.next_rip + static_cast<uint64_t>(jcc.ops[0].imm.value.s) != insns_[0].rip) return false;
  // The whole block in one page (a same-page chain target, like any self loop).
  if (((jcc.next_rip - 1 + cs_base_) ^ block_linear_) & kPageMask) return false;

  std::vector<int> writes(16, 0), def(16, -1);
  uint16_t named = 0;
  for (size_t i = 0; i < n; ++i) {
    const Insn& in = insns_[i];
    named |= static_cast<uint16_t>(in.used_regs | in.regs_read | in.regs_written);
    if (i + 1 >= n) continue;
    switch (in.kind) {
      case Kind::kIdent:
      case Kind::kMem:
      case Kind::kLea:
      case Kind::kDrop:
        break;
      default:
        return false;
    }
    if (in.writes_rsp) return false;
    for (int r = 0; r < 16; ++r)
      if (in.regs_written & (1u << r)) {
        ++writes[r];
        def[r] = static_cast<int>(i);
      }
  }
  LoopPlan plan;
  plan.body_end = n - 1;
  // The compare latch: `cmp iv, bound; jb/jne` with iv the induction variable and the bound
  // invariant. Anything else gets the count latch.
  const Insn& cmp = insns_[n - 2];
  if ((jcc.d.mnemonic == ZYDIS_MNEMONIC_JB || jcc.d.mnemonic == ZYDIS_MNEMONIC_JNZ) &&
      cmp.d.mnemonic == ZYDIS_MNEMONIC_CMP && cmp.kind == Kind::kIdent &&
      cmp.d.operand_width == 64 && cmp.ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER) {
    const int iv = GprId(cmp.ops[0].reg.value);
    int bound = -1;
    bool ok = iv >= 0 && iv != kRsp && InductionStep(iv, writes, def) > 0;
    if (cmp.ops[1].type == ZYDIS_OPERAND_TYPE_REGISTER) {
      bound = GprId(cmp.ops[1].reg.value);
      ok = ok && bound >= 0 && bound != kRsp && bound != iv && writes[bound] == 0;
    } else {
      ok = ok && cmp.ops[1].type == ZYDIS_OPERAND_TYPE_IMMEDIATE;
    }
    if (ok) {
      plan.compare_latch = true;
      plan.body_end = n - 2;
      plan.jne = jcc.d.mnemonic == ZYDIS_MNEMONIC_JNZ;
      plan.iv = iv;
      plan.step = InductionStep(iv, writes, def);
      plan.bound = bound;
      if (bound < 0) plan.bound_imm = cmp.ops[1].imm.value.s;
    }
  }

  loop_ = std::move(plan);
  loop_.access.assign(n, LoopAccess{});
  for (size_t i = 0; i < loop_.body_end; ++i)
    if (insns_[i].kind == Kind::kMem && !PlanLoopAccess(i, writes, def)) loop_.access[i].group = -1;
  // Groups spanning a page or more stay checked per access; the others (up to kLoopGroups)
  // get a free register. A group none of whose accesses stays hoisted gives it back.
  uint16_t free_regs = static_cast<uint16_t>(~named & ~(1u << kRsp));
  for (size_t g = 0; g < loop_.groups.size() && g < static_cast<size_t>(bt::kLoopGroups); ++g) {
    LoopGroup& grp = loop_.groups[g];
    if (grp.hi - grp.lo >= static_cast<int64_t>(kPageSize)) continue;
    for (int r : kScratchOrder)
      if (free_regs & (1u << r)) {
        grp.reg = r;
        free_regs &= static_cast<uint16_t>(~(1u << r));
        break;
      }
  }
  int hoisted = 0;
  std::vector<bool> group_used(loop_.groups.size(), false);
  for (size_t i = 0; i < n; ++i) {
    LoopAccess& la = loop_.access[i];
    if (la.group < 0) continue;
    const LoopGroup& grp = loop_.groups[static_cast<size_t>(la.group)];
    const int64_t rel = la.disp - grp.lo;
    if (grp.reg < 0 || rel < INT32_MIN || rel > INT32_MAX) {
      la.group = -1;
      continue;
    }
    ++hoisted;
    group_used[static_cast<size_t>(la.group)] = true;
    if (la.needs_fp_masked) loop_.needs_fp_masked = true;
  }
  for (size_t g = 0; g < loop_.groups.size(); ++g) {
    LoopGroup& grp = loop_.groups[g];
    if (!group_used[g]) grp.reg = -1;
    if (grp.reg >= 0) loop_.pinned |= static_cast<uint16_t>(1u << grp.reg);
  }
  // The count latch costs about as much per iteration as one soft-TLB check (PUSHFQ, a
  // decrement in memory, two branches): it pays from two hoisted accesses on.
  if (hoisted == 0 || (!loop_.compare_latch && hoisted < 2)) return false;
  // The fast version leaves the guest flags behind at its start and in its latch: they must be
  // dead there, with no possible fault before the block rewrites them.
  bool dead = false;
  for (size_t j = 0; j < n && !dead; ++j) {
    const Insn& in = insns_[j];
    if (in.flags_read & kArithFlags) return false;
    const bool hoisted = loop_.access[j].group >= 0;
    if (!hoisted && CanFault(in)) return false;
    dead = (in.flags_written & kArithFlags) == kArithFlags;
  }
  if (!dead) return false;
  loop_.max_iterations = std::max<int64_t>(1, kLoopInsnBudget / static_cast<int64_t>(n));
  return true;
}

// The step of `reg` when the body writes it exactly once, by `inc reg`, `add reg, imm` or
// `lea reg, [reg + imm]` on all 64 bits with 0 < step <= 4096; else 0.
int64_t BlockEmitter::InductionStep(int reg, const std::vector<int>& writes,
                                    const std::vector<int>& def) const {
  if (reg < 0 || writes[static_cast<size_t>(reg)] != 1) return 0;
  const Insn& upd = insns_[static_cast<size_t>(def[static_cast<size_t>(reg)])];
  if (upd.ops[0].type != ZYDIS_OPERAND_TYPE_REGISTER || GprId(upd.ops[0].reg.value) != reg ||
      ZydisRegisterGetWidth(ZYDIS_MACHINE_MODE_LONG_64, upd.ops[0].reg.value) != 64)
    return 0;
  int64_t step = 0;
  if (upd.d.mnemonic == ZYDIS_MNEMONIC_INC) {
    step = 1;
  } else if (upd.d.mnemonic == ZYDIS_MNEMONIC_ADD &&
             upd.ops[1].type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
    step = upd.ops[1].imm.value.s;
  } else if (upd.d.mnemonic == ZYDIS_MNEMONIC_LEA && GprId(upd.ops[1].mem.base) == reg &&
             upd.ops[1].mem.index == ZYDIS_REGISTER_NONE && upd.d.address_width == 64) {
    // Only a 64-bit address: `lea rcx, [ecx + 8]` wraps at 2^32, and the fast version's
    // ranges and limit assume iv grows by `step` without wrapping (a wrapped iv would index
    // far below the checked page, outside guest RAM on the host).
    step = upd.ops[1].mem.disp.has_displacement ? upd.ops[1].mem.disp.value : 0;
  }
  return step > 0 && step <= 4096 ? step : 0;
}

// Classifies the memory operand of instruction `index` for hoisting: the invariant part of its
// address and at most one varying register. Returns false when it stays checked per access.
bool BlockEmitter::PlanLoopAccess(size_t index, const std::vector<int>& writes,
                                  const std::vector<int>& def) {
  const Insn& in = insns_[index];
  const AccessFaults faults = FaultsOnlyByAccess(in);
  if (faults == AccessFaults::kOther) return false;
  const auto& op = in.ops[in.mem_index];
  const auto& mem = op.mem;
  if (mem.type != ZYDIS_MEMOP_TYPE_MEM || in.d.address_width != 64) return false;
  if (mem.segment == ZYDIS_REGISTER_FS || mem.segment == ZYDIS_REGISTER_GS) return false;
  for (int i = 0; i < in.d.operand_count; ++i)
    if (in.ops[i].type == ZYDIS_OPERAND_TYPE_REGISTER && IsRspFamily(in.ops[i].reg.value))
      return false;
  const int64_t size = std::max<int64_t>(1, op.size / 8);
  if (size > 64) return false;
  const bool write = (op.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) != 0;

  LoopGroup key;
  LoopAccess la;
  int64_t disp = mem.disp.has_displacement ? mem.disp.value : 0;
  int64_t var_range = 0;  // bounded register: largest value
  bool var_is_iv = false;
  int64_t var_step = 0;
  auto classify = [&](int reg, uint8_t scale, bool is_base) -> bool {
    if (reg < 0) return true;
    const bool invariant = writes[static_cast<size_t>(reg)] == 0;
    if (invariant) {
      if (is_base)
        key.inv_base = reg;
      else {
        key.inv_index = reg;
        key.inv_scale = scale;
      }
      return true;
    }
    if (la.var >= 0) return false;  // two varying registers
    la.var = reg;
    la.var_scale = scale;
    if ((var_step = InductionStep(reg, writes, def)) > 0) {
      var_is_iv = true;
      return true;
    }
    // Bounded: its last write before the access in this iteration (the block is straight-line
    // code) is a MOVZX from 8/16 bits, or an AND with a non-negative immediate, into 32/64 bits.
    int d = -1;
    for (size_t j = 0; j < index; ++j)
      if (insns_[j].regs_written & (1u << reg)) d = static_cast<int>(j);
    if (d < 0) return false;
    const Insn& dz = insns_[static_cast<size_t>(d)];
    if (dz.ops[0].type != ZYDIS_OPERAND_TYPE_REGISTER || GprId(dz.ops[0].reg.value) != reg ||
        dz.ops[0].size < 32)
      return false;
    if (dz.d.mnemonic == ZYDIS_MNEMONIC_MOVZX) {
      var_range = dz.ops[1].size == 8 ? 0xFF : dz.ops[1].size == 16 ? 0xFFFF : -1;
    } else if (dz.d.mnemonic == ZYDIS_MNEMONIC_AND &&
               dz.ops[1].type == ZYDIS_OPERAND_TYPE_IMMEDIATE && dz.ops[1].imm.value.s >= 0) {
      var_range = dz.ops[1].imm.value.s;
    } else {
      return false;
    }
    return var_range > 0 && var_range < static_cast<int64_t>(kPageSize);
  };
  if (mem.base == ZYDIS_REGISTER_RIP) {
    disp = static_cast<int64_t>(in.next_rip + static_cast<uint64_t>(disp));
  } else if (!classify(GprId(mem.base), 1, true)) {
    return false;
  }
  if (!classify(GprId(mem.index), mem.scale ? mem.scale : 1, false)) return false;
  la.disp = disp;
  if (var_is_iv) {
    key.var = la.var;
    key.var_scale = la.var_scale;
    key.step = var_step;
    // Accesses after the update see the next value: their range at iteration 0 is one step on.
    if (def[static_cast<size_t>(la.var)] < static_cast<int>(index)) disp += var_step * la.var_scale;
    if (!IsPowerOfTwo(var_step * la.var_scale)) return false;
  }
  const int64_t lo = disp;
  const int64_t hi = disp + var_range * (la.var >= 0 && !var_is_iv ? la.var_scale : 0) + size - 1;
  la.needs_fp_masked = faults == AccessFaults::kUnlessFpMasked;
  // Absolute groups of far-apart addresses are separate groups.
  for (size_t g = 0; g < loop_.groups.size(); ++g) {
    LoopGroup& grp = loop_.groups[g];
    if (grp.inv_base != key.inv_base || grp.inv_index != key.inv_index ||
        grp.inv_scale != key.inv_scale || grp.var != key.var || grp.var_scale != key.var_scale)
      continue;
    const int64_t nlo = std::min(grp.lo, lo), nhi = std::max(grp.hi, hi);
    if (nhi - nlo >= static_cast<int64_t>(kPageSize)) continue;
    grp.lo = nlo;
    grp.hi = nhi;
    grp.write = grp.write || write;
    la.group = static_cast<int>(g);
    loop_.access[index] = la;
    return true;
  }
  key.lo = lo;
  key.hi = hi;
  key.write = write;
  la.group = static_cast<int>(loop_.groups.size());
  loop_.groups.push_back(key);
  loop_.access[index] = la;
  return true;
}

// dst = the guest value of `reg` (from its slot when `clobbered` says the host register is in
// use; guest RSP from the context).
void BlockEmitter::LoadGuest(x86::Gp dst, int reg, uint16_t clobbered) {
  if (reg == kRsp)
    a_.mov(dst, Gs(ROVE_CTX(guest_rsp)));
  else if (clobbered & (1u << reg))
    a_.mov(dst, Slot(reg));
  else if (dst.id() != static_cast<uint32_t>(reg))
    a_.mov(dst, G(reg));
}

// dst = linear address of byte `offset` of group `g` at iteration 0 (the induction term
// included for stream groups).
void BlockEmitter::LoadGroupAddress(x86::Gp dst, x86::Gp tmp, const LoopGroup& g, int64_t offset,
                                    uint16_t clobbered) {
  bool first = true;
  auto add_term = [&](int reg, uint8_t scale) {
    if (reg < 0) return;
    if (first && scale == 1) {
      LoadGuest(dst, reg, clobbered);
    } else {
      if (first) a_.xor_(dst.r32(), dst.r32());
      LoadGuest(tmp, reg, clobbered);
      a_.lea(dst, x86::ptr(dst, tmp, static_cast<uint32_t>(Log2(scale))));
    }
    first = false;
  };
  add_term(g.inv_base, 1);
  add_term(g.inv_index, g.inv_scale);
  add_term(g.var, g.var_scale);
  if (first) {
    a_.mov(dst, static_cast<uint64_t>(offset));
  } else if (offset >= INT32_MIN && offset <= INT32_MAX) {
    if (offset != 0) a_.lea(dst, x86::ptr(dst, static_cast<int32_t>(offset)));
  } else {
    a_.mov(tmp, static_cast<uint64_t>(offset));
    a_.add(dst, tmp);
  }
}

// out = host - linear for the page of `addr` when the soft TLB has it with the permission,
// else jumps to `fail`. Clobbers flags and `index`.
void BlockEmitter::EmitLoopTlbCheck(x86::Gp addr, x86::Gp out, x86::Gp index, bool write,
                                    Label fail) {
  const size_t set = ROVE_CTX(tlb) + mode_.view * sizeof(TlbSet) + offsetof(TlbSet, entry);
  const size_t tag =
      set + (write ? offsetof(TlbEntry, write_neg_tag) : offsetof(TlbEntry, read_neg_tag));
  a_.pext(index, addr, Gs(ROVE_CTX(tlb_index_mask)));
  a_.shl(index.r32(), kTlbEntryShift);
  a_.mov(out, addr);
  a_.add(out, GsIndexed(tag, index, 0));
  a_.cmp(out, static_cast<int32_t>(kPageSize - 1));
  a_.ja(fail);
  a_.mov(out, GsIndexed(set + offsetof(TlbEntry, addend), index, 0));
}

// The header (entered at the block start and whenever the fast version has used up its
// checked pages) and the fast version; `generic` is the ordinary translation, which the header
// falls back to when a range is not in the soft TLB, crosses into a page with another host
// mapping, or would fault: that iteration then runs checked (filling the TLB or faulting
// precisely) and its back edge comes here again.
void BlockEmitter::EmitLoopVersion(Label generic) {
  const size_t n = insns_.size();
  Label header = a_.newLabel();
  Label fast = a_.newLabel();
  Label fail = a_.newLabel();
  Label leave = a_.newLabel();
  a_.bind(header);
  a_.bind(unchecked);
  a_.pushfq();
  a_.cmp(Gs(ROVE_CTX(exit_request)), 0);
  a_.jne(leave);
  // Three temporaries: the group registers first, then others. Every group register and every
  // temporary goes to its slot (`temps`); the fail path puts them all back.
  uint16_t temps = loop_.pinned;
  std::vector<int> t;
  for (int r : kScratchOrder)
    if (loop_.pinned & (1u << r)) t.push_back(r);
  for (int r : kScratchOrder)
    if (t.size() < 3 && !(loop_.pinned & (1u << r))) t.push_back(r);
  t.resize(3);
  for (int r : t) temps |= static_cast<uint16_t>(1u << r);
  for (int r = 0; r < 16; ++r)
    if (temps & (1u << r)) Save(r);
  const x86::Gp t0 = G(t[0]), t1 = G(t[1]), t2 = G(t[2]);
  if (loop_.needs_fp_masked) {
    // SIMD floating-point exceptions must all be masked (MXCSR bits 7-12).
    a_.stmxcsr(Gs(ROVE_CTX(loop_mxcsr), 4));
    a_.mov(t1.r32(), Gs(ROVE_CTX(loop_mxcsr), 4));
    a_.and_(t1.r32(), 0x1F80);
    a_.cmp(t1.r32(), 0x1F80);
    a_.jne(fail);
  }
  bool have_k = false;
  for (size_t g = 0; g < loop_.groups.size(); ++g) {
    const LoopGroup& grp = loop_.groups[g];
    if (grp.reg < 0) continue;
    const size_t slot = ROVE_CTX(loop_base) + 8 * g;
    LoadGroupAddress(t0, t1, grp, grp.lo, temps);
    EmitLoopTlbCheck(t0, t1, t2, grp.write, fail);
    a_.mov(Gs(slot), t1);
    if (grp.hi != grp.lo) {
      a_.lea(t0, x86::ptr(t0, static_cast<int32_t>(grp.hi - grp.lo)));
      EmitLoopTlbCheck(t0, t1, t2, grp.write, fail);
      a_.cmp(t1, Gs(slot));
      a_.jne(fail);
    }
    // slot = host - linear + lo: the base register is then the invariant part plus the slot.
    if (grp.lo >= INT32_MIN && grp.lo <= INT32_MAX) {
      if (grp.lo != 0) a_.add(Gs(slot), static_cast<int32_t>(grp.lo));
    } else {
      a_.mov(t1, static_cast<uint64_t>(grp.lo));
      a_.add(Gs(slot), t1);
    }
    if (grp.var >= 0) {
      // Iterations before the group's last byte leaves its page: (bytes left) / D + 1.
      a_.mov(t1, t0);
      a_.not_(t1);
      a_.and_(t1, static_cast<int32_t>(kPageSize - 1));
      const int shift = Log2(grp.step * grp.var_scale);
      if (shift) a_.shr(t1, shift);
      a_.inc(t1);
      if (have_k) {
        Label keep = a_.newLabel();
        a_.cmp(t1, Gs(ROVE_CTX(loop_limit)));
        a_.jae(keep);
        a_.mov(Gs(ROVE_CTX(loop_limit)), t1);
        a_.bind(keep);
      } else {
        a_.mov(Gs(ROVE_CTX(loop_limit)), t1);
        have_k = true;
      }
    }
  }
  // Compare latch: limit = iv + min(k, max) * step, capped by the guest's own bound (for JNE
  // only when the bound is ahead); an overflowing limit takes the generic path. Count latch:
  // min(k, max) iterations.
  a_.mov(t1, static_cast<uint64_t>(loop_.max_iterations));
  if (have_k) {
    Label keep = a_.newLabel();
    a_.cmp(t1, Gs(ROVE_CTX(loop_limit)));
    a_.jbe(keep);
    a_.mov(t1, Gs(ROVE_CTX(loop_limit)));
    a_.bind(keep);
  }
  if (loop_.compare_latch) {
    if (IsPowerOfTwo(loop_.step)) {
      if (loop_.step > 1) a_.shl(t1, Log2(loop_.step));
    } else {
      a_.imul(t1, t1, static_cast<int32_t>(loop_.step));
    }
    LoadGuest(t0, loop_.iv, temps);
    a_.add(t1, t0);
    a_.jc(fail);
    if (loop_.bound >= 0)
      LoadGuest(t2, loop_.bound, temps);
    else
      a_.mov(t2, static_cast<uint64_t>(loop_.bound_imm));
    Label done = a_.newLabel();
    if (loop_.jne) {
      a_.cmp(t2, t0);
      a_.jbe(done);
    }
    a_.cmp(t2, t1);
    a_.cmovb(t1, t2);
    a_.bind(done);
  }
  a_.mov(Gs(ROVE_CTX(loop_limit)), t1);
  // Guest values back in the temporaries that are not group registers; group registers get
  // their bases (their guest values stay in their slots until the fast version ends).
  LoadMask(static_cast<uint16_t>(temps & ~loop_.pinned));
  for (size_t g = 0; g < loop_.groups.size(); ++g) {
    const LoopGroup& grp = loop_.groups[g];
    if (grp.reg < 0) continue;
    const x86::Gp base = G(grp.reg);
    const size_t slot = ROVE_CTX(loop_base) + 8 * g;
    a_.mov(base, Gs(slot));
    auto add_term = [&](int reg, uint8_t scale) {
      if (reg < 0) return;
      if (reg == kRsp) {
        a_.add(base, Gs(ROVE_CTX(guest_rsp)));
        return;
      }
      a_.lea(base, x86::ptr(base, G(reg), static_cast<uint32_t>(Log2(scale))));
    };
    add_term(grp.inv_base, 1);
    add_term(grp.inv_index, grp.inv_scale);
    a_.mov(Gs(slot), base);
  }
  a_.inc(Gs(ROVE_CTX(loop_fast_entries)));
  a_.lea(x86::rsp, x86::ptr(x86::rsp, 8));  // the guest flags are dead in the fast version
  deferred_.push_back([this, fail, leave, temps, generic] {
    a_.bind(fail);
    LoadMask(temps);
    a_.popfq();
    a_.jmp(generic);
    a_.bind(leave);
    a_.popfq();
    EmitExit(insns_[0].rip, bt::kExitRequest);
  });

  // The fast version: group registers reserved, their guest values in their slots.
  a_.bind(fast);
  const int64_t saved_check = check_at_;
  check_at_ = -1;
  fast_ = true;
  reserved_ = loop_.pinned;
  clobbered_ = loop_.pinned;
  for (size_t i = 0; i < loop_.body_end; ++i) {
    EmitInsn(i);
    clobbered_ &= static_cast<uint16_t>(~insns_[i].regs_killed);
  }
  const Insn& jcc = insns_[n - 1];
  if (!loop_.compare_latch) {
    // Count latch: the guest's Jcc leaves the loop with exact flags when not taken; when taken,
    // the flags are saved around the count, and the header gets them back when it runs out.
    const int cc = jcc.d.opcode & 0x0F;
    Label out = a_.newLabel();
    Label exhausted = a_.newLabel();
    MarkInsn(n - 1);
    LoadMask(static_cast<uint16_t>(clobbered_ & ~loop_.pinned));
    clobbered_ = loop_.pinned;
    a_.emit(static_cast<x86::Inst::Id>(x86::Inst::jccFromCond(static_cast<x86::CondCode>(cc ^ 1))),
            out);
    a_.pushfq();
    a_.dec(Gs(ROVE_CTX(loop_limit)));
    a_.jz(exhausted);
    a_.lea(x86::rsp, x86::ptr(x86::rsp, 8));
    a_.jmp(fast);
    a_.bind(exhausted);
    a_.popfq();
    LoadMask(loop_.pinned);
    a_.jmp(header);
    a_.bind(out);
    LoadMask(loop_.pinned);
    clobbered_ = 0;
    fast_ = false;
    reserved_ = 0;
    check_at_ = saved_check;
    EmitDirectJump(jcc.next_rip, jcc.rip);
    return;
  }
  // Compare latch: continue while iv < limit; then the guest's own compare decides between the
  // next header and leaving the loop, with exact flags.
  const Insn& cmp = insns_[n - 2];
  MarkInsn(n - 2);
  LoadMask(static_cast<uint16_t>(clobbered_ & ~loop_.pinned));
  clobbered_ = loop_.pinned;
  a_.cmp(G(loop_.iv), Gs(ROVE_CTX(loop_limit)));
  a_.jb(fast);
  LoadMask(loop_.pinned);
  clobbered_ = 0;
  fast_ = false;
  reserved_ = 0;
  check_at_ = saved_check;
  MarkInsn(n - 2);
  a_.embed(cmp.bytes, cmp.d.length);
  MarkInsn(n - 1);
  a_.emit(static_cast<x86::Inst::Id>(
              x86::Inst::jccFromCond(static_cast<x86::CondCode>(jcc.d.opcode & 0x0F))),
          header);
  EmitDirectJump(jcc.next_rip, jcc.rip);
}

// A hoisted access: its instruction on [group base + varying register * scale + offset].
bool BlockEmitter::EmitHoistedMem(size_t index) {
  const LoopAccess& la = loop_.access[index];
  if (la.group < 0) return false;
  const LoopGroup& grp = loop_.groups[static_cast<size_t>(la.group)];
  Rebase rb;
  rb.base = grp.reg;
  rb.index = la.var;
  rb.scale = la.var_scale;
  rb.disp = la.disp - grp.lo;
  Reencoded enc;
  if (!Reencode(insns_[index], -1, -1, enc, &rb)) return false;
  MarkInsn(index);
  a_.embed(enc.bytes, enc.length);
  return true;
}

}  // namespace

// ------------------------------------------------------------------------------------------

bt::Block* BtCpu::Impl::Translate(const bt::TransMode& mode, uint64_t linear, uint64_t phys,
                                  GuestException* fault) {
  ZydisDecoder* decoder = mode.code_bits == 64   ? &decoder64
                          : mode.code_bits == 32 ? &decoder32
                                                 : &decoder16;
  const uint64_t cs_base = state.seg[kCs].base;
  const uint64_t rip_mask = mode.code_bits == 64   ? ~0ull
                            : mode.code_bits == 32 ? 0xFFFFFFFFull
                                                   : 0xFFFFull;
  std::vector<Insn> insns;
  insns.reserve(static_cast<size_t>(options.max_block_instructions));
  uint64_t rip = state.rip;
  uint64_t second_phys = ~0ull;
  const int max_insns = mode.single_step ? 1 : options.max_block_instructions;
  const uint8_t* page_host = memory.HostPointer(phys & kPageMask);

  for (int n = 0; n < max_insns; ++n) {
    uint64_t lin = (cs_base + rip) & (mode.code_bits == 64 ? ~0ull : 0xFFFFFFFFull);
    if (n > 0 && (lin & kPageMask) != (linear & kPageMask)) break;  // blocks stay in one page
    uint8_t buf[16] = {};
    size_t avail = kPageSize - (lin & (kPageSize - 1));
    size_t first = std::min<size_t>(avail, 15);
    if (page_host) {
      std::memcpy(buf, page_host + (lin & (kPageSize - 1)), first);
    } else {
      memory.Read((phys & kPageMask) + (lin & (kPageSize - 1)), buf, first);
    }
    size_t have = first;
    if (first < 15 && n == 0) {
      // Instruction may straddle into the next page: fetch it (first instruction only).
      uint64_t next_lin = (lin & kPageMask) + kPageSize;
      WalkRequest req;
      req.linear = next_lin;
      req.access = Access::kExecute;
      req.user = mode.view == kTlbUser;
      WalkResult w = PagingEnabled(Paging()) ? WalkPageTables(memory, Paging(), req)
                                             : WalkResult{true, next_lin};
      if (w.ok) {
        memory.Read(w.phys & kPageMask, buf + first, 15 - first);
        have = 15;
        second_phys = w.phys & kPageMask;
      } else {
        // Decode what we have; if it needs more bytes the fetch faults on the next page.
        ZydisDecodedInstruction probe;
        ZydisDecodedOperand probe_ops[ZYDIS_MAX_OPERAND_COUNT];
        if (ZYAN_FAILED(ZydisDecoderDecodeFull(decoder, buf, first, &probe, probe_ops))) {
          fault->vector = kPf;
          fault->has_error_code = true;
          fault->error_code = w.error_code;
          fault->cr2 = next_lin;
          return nullptr;
        }
      }
    }
    Insn in;
    in.rip = rip;
    if (ZYAN_FAILED(ZydisDecoderDecodeFull(decoder, buf, have, &in.d, in.ops))) {
      if (n == 0) {
        // Undecodable: the emulator raises #UD (or decides otherwise).
        in.kind = Kind::kEmulate;
        in.next_rip = rip;
        insns.push_back(in);
      }
      break;
    }
    if (n > 0 && (lin & (kPageSize - 1)) + in.d.length > kPageSize) break;
    std::memcpy(in.bytes, buf, in.d.length);
    in.next_rip = (rip + in.d.length) & rip_mask;
    in.kind = Classify(in, mode);
    if (AccessesEmulatedSegment(in, mode)) in.kind = Kind::kEmulate;
    if (mode.limit_checks && mode.code_bits != 64) {
      // The CS limit: an instruction reaching past it is fetched by the emulator (#GP), and a
      // branch that may leave it is executed there (#GP at the branch, before any effect).
      const uint64_t cs_limit = state.seg[kCs].limit;
      if (rip + in.d.length - 1 > cs_limit) {
        if (n > 0) break;
        in.kind = Kind::kEmulate;
      } else if (BranchMayLeaveLimit(in, cs_limit)) {
        in.kind = Kind::kEmulate;
      }
    }
    ComputeRegisterUse(in);
    // PUSHF stores every arithmetic flag: they are live before it whatever Zydis says.
    if (in.kind == Kind::kPushf) in.flags_read |= kArithFlags;
    insns.push_back(in);
    rip = in.next_rip;
    bool ends = false;
    switch (in.kind) {
      case Kind::kJmpRel:
      case Kind::kJmpInd:
      case Kind::kCallRel:
      case Kind::kCallInd:
      case Kind::kRetNear:
      case Kind::kJcc:
      case Kind::kLoop:
      case Kind::kEmulate:
        ends = true;
        break;
      default:
        break;
    }
    if (ends) break;
  }
  if (insns.empty()) {
    // Could not decode anything (should not happen): let the emulator handle it.
    Insn in;
    in.rip = state.rip;
    in.next_rip = state.rip;
    in.kind = Kind::kEmulate;
    insns.push_back(in);
  }
  // An instruction the emulator handles in the middle of a block: cut the block before it,
  // unless it is the first instruction.
  for (size_t i = 1; i < insns.size(); ++i) {
    if (insns[i].kind == Kind::kEmulate) {
      insns.resize(i);
      break;
    }
  }
  // Flag and register liveness, backwards; everything is live at the block end.
  uint32_t live = kArithFlags;
  uint16_t live_regs = 0xFFFF;
  for (size_t i = insns.size(); i-- > 0;) {
    Insn& in = insns[i];
    in.live_before = (live & ~in.flags_written) | in.flags_read;
    live = in.live_before;
    if (in.kind == Kind::kEmulate) {
      in.live_regs_before = 0xFFFF;  // the emulator may read anything
    } else {
      in.live_regs_before = static_cast<uint16_t>((live_regs & ~in.regs_killed) | in.regs_read);
    }
    live_regs = in.live_regs_before;
  }

  auto block = std::make_unique<bt::Block>();
  block->linear = linear;
  block->rip = state.rip;
  block->cs_base = cs_base;
  block->mode = mode.Pack();
  block->cs_limit = bt::BlockKeyCsLimit(mode, state.seg[kCs].limit);
  block->phys_page[0] = phys & kPageMask;
  block->phys_page[1] = second_phys;
  block->guest_instructions = static_cast<uint32_t>(insns.size());
  block->chainable_target = second_phys == ~0ull;
  block->emulate_only = insns.size() == 1 && insns[0].kind == Kind::kEmulate;

  BlockEmitter emitter(*this, mode, cs_base, insns, linear);
  emitter.Emit();
  CodeHolder& code = emitter.code();
  code.flatten();
  code.resolveUnresolvedLinks();
  size_t size = code.codeSize();
  uint8_t* dest = AllocateCode(size);
  if (!dest) return nullptr;  // caller flushes and retries
  if (code.relocateToBase(reinterpret_cast<uint64_t>(dest)) != kErrorOk)
    throw std::runtime_error("translator: relocation failed");
  size = code.codeSize();
  code.copyFlattenedData(dest, size);
  block->host = dest;
  block->host_size = static_cast<uint32_t>(size);
  if (perf_map) {
    std::fprintf(perf_map, "%llx %zx guest:%llx\n",
                 static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(dest)), size,
                 static_cast<unsigned long long>(state.rip));
    std::fflush(perf_map);
  }
  for (const auto& m : emitter.map_labels) {
    const Insn& in = insns[m.insn];
    bt::InsnMapEntry e{};
    e.host_offset = static_cast<uint32_t>(code.labelOffsetFromBase(m.label));
    e.guest_rip = in.rip;
    e.next_rip = in.next_rip;
    e.saved_regs = m.saved;
    e.flags_on_stack = m.flags_on_stack;
    block->insns.push_back(e);
  }
  std::stable_sort(block->insns.begin(), block->insns.end(),
                   [](const auto& x, const auto& y) { return x.host_offset < y.host_offset; });
  for (const auto& s : emitter.site_labels) {
    const Insn& in = insns[s.insn];
    bt::MemSiteInfo info{};
    info.return_offset = static_cast<uint32_t>(code.labelOffsetFromBase(s.label));
    info.size = s.size;
    info.write = s.access != 0;
    info.post = s.post;
    info.stack = UsesStackSegment(in, info.write);
    info.align = in.kind == Kind::kMem ? RequiredAlignment(in) : 0;
    if (in.kind == Kind::kMem) info.masked = DescribeMask(in);
    info.guest_rip = in.rip;
    info.next_rip = in.next_rip;
    info.view = mode.view;
    block->mem_sites.push_back(info);
  }
  std::sort(block->mem_sites.begin(), block->mem_sites.end(),
            [](const auto& x, const auto& y) { return x.return_offset < y.return_offset; });
  block->unchecked_offset = static_cast<uint32_t>(code.labelOffsetFromBase(emitter.unchecked));
  for (const auto& c : emitter.chain_sites) {
    // Chaining patches the rel32 that ends at `after`: it must be a near jmp or jcc.
    const size_t after = code.labelOffsetFromBase(c.after);
    const bool jmp32 = after >= 5 && dest[after - 5] == 0xE9;
    const bool jcc32 = after >= 6 && dest[after - 6] == 0x0F && (dest[after - 5] & 0xF0) == 0x80;
    if (!jmp32 && !jcc32) throw std::logic_error("translator: chain site is not a rel32 jump");
  }
  stats.blocks_translated++;
  stats.instructions_translated += insns.size();
  bt::Block* raw = block.get();
  block_storage.push_back(std::move(block));
  return raw;
}

}  // namespace rove
