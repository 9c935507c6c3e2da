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
  kPopReg,
  kCallRel,
  kCallInd,
  kRetNear,
  kJmpRel,
  kJmpInd,
  kJcc,
  kLoop,  // LOOP/LOOPE/LOOPNE/JCXZ/JECXZ/JRCXZ
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
  uint32_t used_regs = 0;  // bit per host GPR id
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

Kind Classify(Insn& in, int code_bits) {
  const auto& d = in.d;
  const auto cat = d.meta.category;
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
      if (op0->type == ZYDIS_OPERAND_TYPE_IMMEDIATE) return Kind::kJmpRel;
      if (op0->type == ZYDIS_OPERAND_TYPE_REGISTER || op0->type == ZYDIS_OPERAND_TYPE_MEMORY)
        return Kind::kJmpInd;
      return Kind::kEmulate;
    case ZYDIS_CATEGORY_CALL:
      if (op0->type == ZYDIS_OPERAND_TYPE_IMMEDIATE) return Kind::kCallRel;
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
      return Kind::kEmulate;
    case ZYDIS_CATEGORY_POP:
      if (d.mnemonic == ZYDIS_MNEMONIC_POP && op0->type == ZYDIS_OPERAND_TYPE_REGISTER &&
          GprId(op0->reg.value) >= 0)
        return Kind::kPopReg;
      return Kind::kEmulate;
    case ZYDIS_CATEGORY_NOP:
    case ZYDIS_CATEGORY_WIDENOP:
    case ZYDIS_CATEGORY_PREFETCH:
    case ZYDIS_CATEGORY_CLFLUSHOPT:
    case ZYDIS_CATEGORY_CLWB:
    case ZYDIS_CATEGORY_CLDEMOTE:
      return Kind::kDrop;
    case ZYDIS_CATEGORY_MISC:
      if (d.mnemonic == ZYDIS_MNEMONIC_LEA) return Kind::kLea;
      if (d.mnemonic == ZYDIS_MNEMONIC_PAUSE) return Kind::kIdent;
      if (d.mnemonic == ZYDIS_MNEMONIC_CLFLUSH) return Kind::kDrop;
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
  if (mem_ops == 1) {
    const auto& mem = in.ops[in.mem_index].mem;
    if (mem.type != ZYDIS_MEMOP_TYPE_MEM) return Kind::kEmulate;  // VSIB gathers, MIB
    return Kind::kMem;
  }
  (void)code_bits;
  return Kind::kIdent;
}

// Register use, for picking scratch registers the instruction does not touch.
void ComputeRegisterUse(Insn& in) {
  for (int i = 0; i < in.d.operand_count; ++i) {
    const auto& op = in.ops[i];
    if (op.type == ZYDIS_OPERAND_TYPE_REGISTER) {
      int id = GprId(op.reg.value);
      if (id >= 0) {
        in.used_regs |= 1u << id;
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
      if (b == kRsp || x == kRsp) in.uses_rsp = true;
    }
  }
  if (in.d.cpu_flags) {
    in.flags_read = in.d.cpu_flags->tested & kArithFlags;
    in.flags_written = (in.d.cpu_flags->modified | in.d.cpu_flags->set_0 | in.d.cpu_flags->set_1 |
                        in.d.cpu_flags->undefined) &
                       kArithFlags;
  }
  // An instruction that can fault shows the flags as they were before it to the exception
  // handler (precise exceptions), so for liveness it reads them all: inserted code before it
  // must not clobber them. Memory operands can #PF/#GP; DIV/IDIV can #DE.
  {
    bool may_fault = in.d.mnemonic == ZYDIS_MNEMONIC_DIV || in.d.mnemonic == ZYDIS_MNEMONIC_IDIV;
    for (int i = 0; i < in.d.operand_count_visible; ++i)
      if (in.ops[i].type == ZYDIS_OPERAND_TYPE_MEMORY &&
          in.ops[i].mem.type != ZYDIS_MEMOP_TYPE_AGEN)
        may_fault = true;
    if (may_fault) in.flags_read |= kArithFlags;
  }
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
      for (int i = 0; i < in.d.operand_count_visible; ++i)
        if (in.ops[i].type == ZYDIS_OPERAND_TYPE_REGISTER &&
            in.ops[i].reg.value == ZYDIS_REGISTER_CL)
          in.flags_read |= in.flags_written;
      break;
    default:
      break;
  }
}

// Host scratch registers in order of preference; RCX is kept for JRCXZ-based tests.
constexpr std::array<int, 13> kScratchOrder = {kRbx, kRsi, kRdi, kRbp, kRdx, kRax, kR8,
                                               kR9,  kR10, kR11, kR12, kR13, kR14};

int PickScratch(uint32_t& taken, bool low_only) {
  for (int r : kScratchOrder) {
    if (low_only && r >= 8) continue;
    if (taken & (1u << r)) continue;
    taken |= 1u << r;
    return r;
  }
  if (!low_only && !(taken & (1u << kR15))) {
    taken |= 1u << kR15;
    return kR15;
  }
  return -1;
}

struct Reencoded {
  uint8_t bytes[ZYDIS_MAX_INSTRUCTION_LENGTH];
  ZyanUSize length = 0;
};

// Re-encodes a decoded guest instruction for 64-bit execution, optionally replacing its memory
// operand by [mem_base] and RSP references by `rsp_subst`.
bool Reencode(const Insn& in, int mem_base, int rsp_subst, Reencoded& out) {
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
      if (rsp_subst >= 0 && IsRspFamily(op.reg.value))
        op.reg.value = SubstituteGpr(op.reg.value, rsp_subst);
    } else if (op.type == ZYDIS_OPERAND_TYPE_MEMORY) {
      if (mem_base >= 0) {
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

}  // namespace

// ------------------------------------------------------------------------------------------
// Emission
// ------------------------------------------------------------------------------------------

namespace {

struct MemSite {
  Label ret_label;  // label right after the call to the slow-path thunk
  uint32_t size;
  bool write;
  bool post;  // label after the post-thunk call
  size_t insn_index;
};

struct ChainSite {
  Label after;  // end of the patchable jmp/jcc rel32
  uint64_t target;
};

class BlockEmitter {
 public:
  BlockEmitter(BtCpu::Impl& impl, const bt::TransMode& mode, uint64_t cs_base,
               std::vector<Insn>& insns, uint64_t block_linear)
      : impl_(impl), mode_(mode), cs_base_(cs_base), insns_(insns), block_linear_(block_linear) {
    code_.init(Environment::host());
    code_.attach(&a_);
  }

  // Emits the block; returns false when an instruction could not be emitted (the block is
  // then cut before it by the caller).
  void Emit();

  CodeHolder& code() { return code_; }

  struct MapLabel {
    Label label;
    size_t insn;
    uint8_t spilled[3];
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

 private:
  x86::Gp G(int id) const { return bt::Reg64(static_cast<unsigned>(id)); }
  x86::Gp G32(int id) const { return x86::gpd(static_cast<unsigned>(id)); }
  x86::Gp G16(int id) const { return x86::gpw(static_cast<unsigned>(id)); }

  void MarkInsn(size_t index, int s0 = -1, int s1 = -1, int s2 = -1) {
    MapLabel m{a_.newLabel(), index, {0xFF, 0xFF, 0xFF}};
    if (s1 >= 0) m.spilled[0] = static_cast<uint8_t>(s1);
    if (s2 >= 0) m.spilled[1] = static_cast<uint8_t>(s2);
    if (s0 >= 0) m.spilled[2] = static_cast<uint8_t>(s0);
    a_.bind(m.label);
    map_labels.push_back(m);
  }

  void Spill(int reg, int slot) { a_.mov(Gs(ROVE_CTX(spill) + 8 * slot), G(reg)); }
  void Unspill(int reg, int slot) { a_.mov(G(reg), Gs(ROVE_CTX(spill) + 8 * slot)); }

  uint64_t RipMask() const {
    return mode_.code_bits == 64 ? ~0ull : (mode_.code_bits == 32 ? 0xFFFFFFFFull : 0xFFFFull);
  }

  // Exit to the dispatcher with `rip` in lookup_rip and the given internal reason.
  void EmitExit(uint64_t rip, bt::InternalExit reason) {
    a_.mov(Gs(ROVE_CTX(tmp_rax)), x86::rax);
    a_.mov(x86::rax, rip);
    a_.mov(Gs(ROVE_CTX(lookup_rip)), x86::rax);
    a_.mov(Gs(ROVE_CTX(exit_reason)), static_cast<int32_t>(reason));
    a_.jmp(impl_.runtime.exit_common);
  }

  // Direct transfer to a known guest RIP: a patchable jump when chaining is possible,
  // otherwise an inline jump-cache lookup.
  void EmitDirectJump(uint64_t target) {
    target &= RipMask();
    uint64_t target_linear = target + cs_base_;
    bool same_page = (target_linear & kPageMask) == (block_linear_ & kPageMask);
    if (same_page && !mode_.single_step) {
      Label stub = a_.newLabel();
      a_.long_().jmp(stub);
      Label after = a_.newLabel();
      a_.bind(after);
      deferred_.push_back([this, stub, after, target] {
        a_.bind(stub);
        a_.mov(Gs(ROVE_CTX(tmp_rax)), x86::rax);
        a_.mov(x86::rax, target);
        a_.mov(Gs(ROVE_CTX(lookup_rip)), x86::rax);
        a_.lea(x86::rax, x86::ptr(after));
        a_.mov(Gs(ROVE_CTX(chain_site)), x86::rax);
        a_.mov(Gs(ROVE_CTX(exit_reason)), static_cast<int32_t>(bt::kExitChain));
        a_.jmp(impl_.runtime.exit_common);
      });
      chain_sites.push_back({after, target});
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
    if (mode_.single_step) {
      a_.mov(Gs(ROVE_CTX(tmp_rax)), x86::rax);
      a_.mov(Gs(ROVE_CTX(exit_reason)), static_cast<int32_t>(bt::kExitLookup));
      a_.jmp(impl_.runtime.exit_common);
      return;
    }
    const int s1 = kRbx, s2 = kRsi;
    const size_t jc = ROVE_CTX(jump_cache) + (mode_.view == kTlbUser ? sizeof(bt::JumpCache) : 0);
    a_.mov(Gs(ROVE_CTX(spill_rcx)), x86::rcx);
    Spill(s1, 0);
    Spill(s2, 1);
    a_.mov(G(s1), Gs(ROVE_CTX(lookup_rip)));
    a_.pext(G(s2), G(s1), Gs(ROVE_CTX(jc_index_mask)));
    a_.mov(x86::rcx, GsIndexed(jc + offsetof(bt::JumpCache, neg_rip), G(s2), 3));
    a_.lea(x86::rcx, x86::ptr(x86::rcx, G(s1)));
    Label hit = a_.newLabel();
    a_.jecxz(x86::rcx, hit);
    a_.mov(x86::rcx, Gs(ROVE_CTX(spill_rcx)));
    Unspill(s1, 0);
    Unspill(s2, 1);
    a_.jmp(impl_.runtime.exit_lookup_miss);
    a_.bind(hit);
    a_.mov(x86::rcx, GsIndexed(jc + offsetof(bt::JumpCache, host), G(s2), 3));
    a_.mov(Gs(ROVE_CTX(jump_target)), x86::rcx);
    a_.mov(x86::rcx, Gs(ROVE_CTX(spill_rcx)));
    Unspill(s1, 0);
    Unspill(s2, 1);
    a_.jmp(Gs(ROVE_CTX(jump_target)));
  }

  // Computes the linear address of a memory operand into s1 (64-bit register), using s2 as a
  // temporary and s0 as the holder of guest RSP (or -1 when RSP is not referenced).
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
    EmitSegmentBase(in, SegmentOf(in, mem.segment), s1, s2);
  }

  SegReg SegmentOf(const Insn& in, ZydisRegister seg) const {
    (void)in;
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

  void EmitSegmentBase(const Insn& in, SegReg seg, int s1, int s2) {
    (void)in;
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
    if (mode_.code_bits != 64 && mode_.add_seg_base) {
      a_.mov(G(s2), Gs(ROVE_CTX(seg_base) + 8 * kSs));
      a_.lea(G32(s1), x86::ptr(G(s1), G(s2)));
    }
  }

  // Updates guest RSP by `delta` in the stack width.
  void EmitRspAdjust(int tmp, int32_t delta) {
    a_.mov(G(tmp), Gs(ROVE_CTX(guest_rsp)));
    if (mode_.stack_bits == 64) {
      a_.lea(G(tmp), x86::ptr(G(tmp), delta));
      a_.mov(Gs(ROVE_CTX(guest_rsp)), G(tmp));
    } else if (mode_.stack_bits == 32) {
      a_.lea(G32(tmp), x86::ptr(G(tmp), delta));
      a_.mov(Gs(ROVE_CTX(guest_rsp), 4), G32(tmp));
    } else {
      a_.lea(G32(tmp), x86::ptr(G(tmp), delta));
      a_.mov(Gs(ROVE_CTX(guest_rsp), 2), G16(tmp));
    }
  }

  // The memory access core. `address` emits the linear address into s1 (may clobber s2).
  // `access` emits the operation on [s1] (host address). On a TLB hit the operation runs
  // inline; otherwise the C++ slow path returns a host or bounce pointer and the same
  // operation runs out of line. Flags: the lookup itself is flag-free (uses RCX, which must
  // not be used by the operation; callers guarantee it by using the flagged variant).
  void EmitAccess(size_t insn_index, int s0, int s1, int s2, uint32_t size, bool write,
                  const std::function<void()>& address, const std::function<void()>& access,
                  bool rcx_free, uint32_t flags_live) {
    const size_t view = mode_.view;
    const size_t set = ROVE_CTX(tlb) + view * sizeof(TlbSet);
    const size_t tag =
        set + (write ? offsetof(TlbSet, write_neg_tag) : offsetof(TlbSet, read_neg_tag));
    const size_t addend = set + offsetof(TlbSet, addend);
    Label slow = a_.newLabel();
    Label resume = a_.newLabel();
    Spill(s1, 0);
    Spill(s2, 1);
    address();
    a_.pext(G(s2), G(s1), Gs(ROVE_CTX(tlb_index_mask)));
    bool pushed = false;
    if (rcx_free) {
      a_.mov(Gs(ROVE_CTX(spill_rcx)), x86::rcx);
      a_.mov(x86::rcx, GsIndexed(tag, G(s2), 3));
      a_.lea(x86::rcx, x86::ptr(x86::rcx, G(s1), 0, static_cast<int32_t>(size - 1)));
      a_.pext(x86::rcx, x86::rcx, Gs(ROVE_CTX(page_hi_mask)));
      Label hit = a_.newLabel();
      a_.jecxz(x86::rcx, hit);
      a_.mov(x86::rcx, Gs(ROVE_CTX(spill_rcx)));
      a_.jmp(slow);
      a_.bind(hit);
      a_.mov(x86::rcx, GsIndexed(addend, G(s2), 3));
      a_.lea(G(s1), x86::ptr(G(s1), x86::rcx));
      a_.mov(x86::rcx, Gs(ROVE_CTX(spill_rcx)));
    } else {
      // RCX belongs to the operation: use a flag-based compare, preserving live flags.
      if (flags_live) {
        a_.pushfq();
        pushed = true;
      }
      // s2 = index; compute (last byte) + neg_tag into s2's partner: reuse the spill slot
      // trick: s1 += size-1 + neg_tag, check, then undo.
      a_.add(G(s1), GsIndexed(tag, G(s2), 3));
      a_.add(G(s1), static_cast<int32_t>(size - 1));
      a_.cmp(G(s1), static_cast<int32_t>(kPageSize - 1));
      Label hit = a_.newLabel();
      a_.jbe(hit);
      if (pushed) a_.popfq();
      a_.jmp(slow);
      a_.bind(hit);
      a_.sub(G(s1), static_cast<int32_t>(size - 1));
      a_.sub(G(s1), GsIndexed(tag, G(s2), 3));
      a_.add(G(s1), GsIndexed(addend, G(s2), 3));
      if (pushed) a_.popfq();
    }
    MarkInsn(insn_index, s0, s1, s2);
    access();
    if (s0 >= 0) Unspill(s0, 2);
    Unspill(s2, 1);
    Unspill(s1, 0);
    a_.bind(resume);

    deferred_.push_back([=, this] {
      a_.bind(slow);
      address();
      a_.mov(Gs(ROVE_CTX(mem_va)), G(s1));
      if (s0 >= 0) Unspill(s0, 2);
      Unspill(s2, 1);
      Unspill(s1, 0);
      a_.call(impl_.runtime.thunk_mem_slow);
      Label ret = a_.newLabel();
      a_.bind(ret);
      site_labels.push_back({ret, size, static_cast<uint8_t>(write ? 1 : 0), insn_index, false});
      Spill(s1, 0);
      Spill(s2, 1);
      if (s0 >= 0) {
        Spill(s0, 2);
        a_.mov(G(s0), Gs(ROVE_CTX(guest_rsp)));
      }
      a_.mov(G(s1), Gs(ROVE_CTX(mem_host)));
      MarkInsn(insn_index, s0, s1, s2);
      access();
      if (s0 >= 0) Unspill(s0, 2);
      Unspill(s2, 1);
      Unspill(s1, 0);
      if (write) {
        a_.call(impl_.runtime.thunk_mem_post);
        Label post = a_.newLabel();
        a_.bind(post);
        site_labels.push_back({post, size, 1, insn_index, true});
      }
      a_.jmp(resume);
    });
  }

  void EmitInsn(size_t index);
  void EmitMem(size_t index);
  void EmitLea(size_t index);
  void EmitPush(size_t index);
  void EmitPop(size_t index);
  void EmitCall(size_t index);
  void EmitRet(size_t index);
  void EmitJmpInd(size_t index);
  void EmitJcc(size_t index);
  void EmitLoop(size_t index);
  void EmitIdent(size_t index);

  // Loads an indirect branch target (register or memory operand) into ctx.lookup_rip.
  void EmitLoadTarget(size_t index);

  BtCpu::Impl& impl_;
  bt::TransMode mode_;
  uint64_t cs_base_;
  std::vector<Insn>& insns_;
  uint64_t block_linear_;
  CodeHolder code_;
  x86::Assembler a_;
  std::vector<std::function<void()>> deferred_;
};

void BlockEmitter::Emit() {
  // Exit-request check at block entry, flag-free.
  MarkInsn(0);
  {
    Label go = a_.newLabel();
    a_.mov(Gs(ROVE_CTX(spill_rcx)), x86::rcx);
    a_.mov(x86::rcx, Gs(ROVE_CTX(exit_request)));
    a_.jecxz(x86::rcx, go);
    a_.mov(x86::rcx, Gs(ROVE_CTX(spill_rcx)));
    EmitExit(insns_[0].rip, bt::kExitRequest);
    a_.bind(go);
    a_.mov(x86::rcx, Gs(ROVE_CTX(spill_rcx)));
  }
  for (size_t i = 0; i < insns_.size(); ++i) EmitInsn(i);
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
      EmitDirectJump(last.next_rip);
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
      EmitDirectJump(in.next_rip + in.ops[0].imm.value.s);
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
    case Kind::kEmulate:
      MarkInsn(index);
      EmitExit(in.rip, bt::kExitEmulate);
      break;
  }
}

void BlockEmitter::EmitIdent(size_t index) {
  Insn& in = insns_[index];
  if (mode_.code_bits == 64 && !in.uses_rsp) {
    MarkInsn(index);
    a_.embed(in.bytes, in.d.length);
    return;
  }
  uint32_t taken = in.used_regs | (1u << kRsp) | (1u << kRcx);
  int s0 = in.uses_rsp ? PickScratch(taken, in.uses_high_byte) : -1;
  Reencoded enc;
  if (!Reencode(in, -1, s0, enc)) {
    MarkInsn(index);
    EmitExit(in.rip, bt::kExitEmulate);
    return;
  }
  if (s0 >= 0) {
    Spill(s0, 2);
    a_.mov(G(s0), Gs(ROVE_CTX(guest_rsp)));
  }
  MarkInsn(index, s0);
  a_.embed(enc.bytes, enc.length);
  if (s0 >= 0) {
    if (in.writes_rsp) a_.mov(Gs(ROVE_CTX(guest_rsp)), G(s0));
    Unspill(s0, 2);
  }
}

void BlockEmitter::EmitMem(size_t index) {
  Insn& in = insns_[index];
  const auto& op = in.ops[in.mem_index];
  uint32_t taken = in.used_regs | (1u << kRsp) | (1u << kRcx);
  bool low = in.uses_high_byte;
  int s0 = in.uses_rsp ? PickScratch(taken, low) : -1;
  int s1 = PickScratch(taken, low);
  int s2 = PickScratch(taken, low);
  bool rcx_free = !(in.used_regs & (1u << kRcx));
  Reencoded enc;
  if (s1 < 0 || s2 < 0 || !Reencode(in, s1, s0, enc)) {
    MarkInsn(index);
    EmitExit(in.rip, bt::kExitEmulate);
    return;
  }
  bool write = (op.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) != 0;
  uint32_t size = std::max<uint32_t>(1, op.size / 8);
  if (size > bt::kBounceBytes) {
    MarkInsn(index);
    EmitExit(in.rip, bt::kExitEmulate);
    return;
  }
  if (s0 >= 0) {
    Spill(s0, 2);
    a_.mov(G(s0), Gs(ROVE_CTX(guest_rsp)));
  }
  const Insn* pin = &in;
  EmitAccess(
      index, s0, s1, s2, size, write,
      [this, pin, s0, s1, s2] { EmitLinearAddress(*pin, pin->ops[pin->mem_index], s1, s2, s0); },
      [this, enc, pin, s0] {
        a_.embed(enc.bytes, enc.length);
        if (s0 >= 0 && pin->writes_rsp) a_.mov(Gs(ROVE_CTX(guest_rsp)), G(s0));
      },
      rcx_free, in.live_before);
}

void BlockEmitter::EmitLea(size_t index) {
  Insn& in = insns_[index];
  const auto& op = in.ops[1];
  int dst = GprId(in.ops[0].reg.value);
  uint32_t taken = in.used_regs | (1u << kRsp) | (1u << kRcx);
  int s0 = in.uses_rsp ? PickScratch(taken, false) : -1;
  int s1 = PickScratch(taken, false);
  if (mode_.code_bits == 64 && !in.uses_rsp && op.mem.base != ZYDIS_REGISTER_RIP) {
    MarkInsn(index);
    a_.embed(in.bytes, in.d.length);
    return;
  }
  if (s0 >= 0) {
    Spill(s0, 2);
    a_.mov(G(s0), Gs(ROVE_CTX(guest_rsp)));
  }
  Spill(s1, 0);
  MarkInsn(index, s0, s1);
  // Effective address only (LEA ignores segments): compute with a copy of the operand that
  // has no segment base added.
  ZydisDecodedOperand plain = op;
  plain.mem.segment = ZYDIS_REGISTER_DS;
  bt::TransMode saved = mode_;
  mode_.add_seg_base = false;
  int code_bits = mode_.code_bits;
  mode_.code_bits = 64;  // suppress any FS/GS base addition
  EmitLinearAddress(in, plain, s1, s1, s0);
  mode_.code_bits = static_cast<uint8_t>(code_bits);
  mode_ = saved;
  switch (in.ops[0].size) {
    case 64:
      a_.mov(G(dst == kRsp ? s0 : dst), G(s1));
      break;
    case 32:
      a_.mov(G32(dst == kRsp ? s0 : dst), G32(s1));
      break;
    default:
      a_.mov(G16(dst == kRsp ? s0 : dst), G16(s1));
      break;
  }
  if (dst == kRsp) a_.mov(Gs(ROVE_CTX(guest_rsp)), G(s0));
  Unspill(s1, 0);
  if (s0 >= 0) Unspill(s0, 2);
}

void BlockEmitter::EmitPush(size_t index) {
  Insn& in = insns_[index];
  uint32_t size = in.d.operand_width / 8;
  uint32_t taken = in.used_regs | (1u << kRsp) | (1u << kRcx);
  int s0 = PickScratch(taken, false);
  int s1 = PickScratch(taken, false);
  int s2 = PickScratch(taken, false);
  Spill(s0, 2);
  a_.mov(G(s0), Gs(ROVE_CTX(guest_rsp)));
  const Insn* pin = &in;
  EmitAccess(
      index, s0, s1, s2, size, true,
      [this, s0, s1, s2, size] { EmitStackAddress(s1, s2, s0, -static_cast<int32_t>(size)); },
      [this, pin, s0, s1, s2, size] {
        if (pin->kind == Kind::kPushImm) {
          int64_t v = pin->ops[0].imm.value.s;
          if (size == 8) {
            a_.mov(G(s2), static_cast<uint64_t>(v));
            a_.mov(x86::qword_ptr(G(s1)), G(s2));
          } else if (size == 4) {
            a_.mov(x86::dword_ptr(G(s1)), static_cast<int32_t>(v));
          } else {
            a_.mov(x86::word_ptr(G(s1)), static_cast<int32_t>(v & 0xFFFF));
          }
        } else {
          int r = GprId(pin->ops[0].reg.value);
          if (r == kRsp) r = s0;
          if (size == 8)
            a_.mov(x86::qword_ptr(G(s1)), G(r));
          else if (size == 4)
            a_.mov(x86::dword_ptr(G(s1)), G32(r));
          else
            a_.mov(x86::word_ptr(G(s1)), G16(r));
        }
      },
      true, in.live_before);
  // EmitAccess restored s0..s2; now commit the new RSP.
  Spill(s0, 2);
  EmitRspAdjust(s0, -static_cast<int32_t>(size));
  Unspill(s0, 2);
}

void BlockEmitter::EmitPop(size_t index) {
  Insn& in = insns_[index];
  uint32_t size = in.d.operand_width / 8;
  int dst = GprId(in.ops[0].reg.value);
  uint32_t taken = in.used_regs | (1u << kRsp) | (1u << kRcx);
  int s0 = PickScratch(taken, false);
  int s1 = PickScratch(taken, false);
  int s2 = PickScratch(taken, false);
  Spill(s0, 2);
  a_.mov(G(s0), Gs(ROVE_CTX(guest_rsp)));
  EmitAccess(
      index, s0, s1, s2, size, false, [this, s0, s1, s2] { EmitStackAddress(s1, s2, s0, 0); },
      [this, s1, s2, size] {
        // Value to ctx.jump_target for now: dst may be one of the spilled registers' peers.
        if (size == 8)
          a_.mov(G(s2), x86::qword_ptr(G(s1)));
        else if (size == 4)
          a_.mov(G32(s2), x86::dword_ptr(G(s1)));
        else
          a_.movzx(G32(s2), x86::word_ptr(G(s1)));
        a_.mov(Gs(ROVE_CTX(jump_target)), G(s2));
      },
      true, in.live_before);
  if (dst == kRsp) {
    // POP RSP: RSP = value read (the increment is overwritten).
    Spill(s0, 2);
    a_.mov(G(s0), Gs(ROVE_CTX(jump_target)));
    if (size == 8)
      a_.mov(Gs(ROVE_CTX(guest_rsp)), G(s0));
    else if (size == 4)
      a_.mov(Gs(ROVE_CTX(guest_rsp), 4), G32(s0));
    else
      a_.mov(Gs(ROVE_CTX(guest_rsp), 2), G16(s0));
    Unspill(s0, 2);
    return;
  }
  Spill(s0, 2);
  EmitRspAdjust(s0, static_cast<int32_t>(size));
  Unspill(s0, 2);
  if (size == 8)
    a_.mov(G(dst), Gs(ROVE_CTX(jump_target)));
  else if (size == 4)
    a_.mov(G32(dst), Gs(ROVE_CTX(jump_target), 4));
  else
    a_.mov(G16(dst), Gs(ROVE_CTX(jump_target), 2));
}

void BlockEmitter::EmitLoadTarget(size_t index) {
  Insn& in = insns_[index];
  const auto& op = in.ops[0];
  uint32_t width = in.d.operand_width;
  if (op.type == ZYDIS_OPERAND_TYPE_REGISTER) {
    int r = GprId(op.reg.value);
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
    return;
  }
  uint32_t taken = in.used_regs | (1u << kRsp) | (1u << kRcx);
  int s0 = in.uses_rsp ? PickScratch(taken, false) : -1;
  int s1 = PickScratch(taken, false);
  int s2 = PickScratch(taken, false);
  if (s0 >= 0) {
    Spill(s0, 2);
    a_.mov(G(s0), Gs(ROVE_CTX(guest_rsp)));
  }
  const Insn* pin = &in;
  EmitAccess(
      index, s0, s1, s2, width / 8, false,
      [this, pin, s0, s1, s2] { EmitLinearAddress(*pin, pin->ops[0], s1, s2, s0); },
      [this, s1, s2, width] {
        if (width == 64)
          a_.mov(G(s2), x86::qword_ptr(G(s1)));
        else if (width == 32)
          a_.mov(G32(s2), x86::dword_ptr(G(s1)));
        else
          a_.movzx(G32(s2), x86::word_ptr(G(s1)));
        a_.mov(Gs(ROVE_CTX(lookup_rip)), G(s2));
      },
      true, in.live_before);
}

void BlockEmitter::EmitCall(size_t index) {
  Insn& in = insns_[index];
  if (in.kind == Kind::kCallInd)
    EmitLoadTarget(index);
  else
    MarkInsn(index);
  // Push the return address.
  uint32_t size = mode_.code_bits == 64 ? 8 : in.d.operand_width / 8;
  uint64_t ret = in.next_rip;
  uint32_t taken = in.used_regs | (1u << kRsp) | (1u << kRcx);
  int s0 = PickScratch(taken, false);
  int s1 = PickScratch(taken, false);
  int s2 = PickScratch(taken, false);
  Spill(s0, 2);
  a_.mov(G(s0), Gs(ROVE_CTX(guest_rsp)));
  EmitAccess(
      index, s0, s1, s2, size, true,
      [this, s0, s1, s2, size] { EmitStackAddress(s1, s2, s0, -static_cast<int32_t>(size)); },
      [this, s1, s2, size, ret] {
        a_.mov(G(s2), ret);
        if (size == 8)
          a_.mov(x86::qword_ptr(G(s1)), G(s2));
        else if (size == 4)
          a_.mov(x86::dword_ptr(G(s1)), G32(s2));
        else
          a_.mov(x86::word_ptr(G(s1)), G16(s2));
      },
      true, kArithFlags);
  Spill(s0, 2);
  EmitRspAdjust(s0, -static_cast<int32_t>(size));
  Unspill(s0, 2);
  if (in.kind == Kind::kCallRel) {
    EmitDirectJump(in.next_rip + in.ops[0].imm.value.s);
  } else {
    if (mode_.code_bits != 64 && in.d.operand_width == 16) {
      // 16-bit indirect targets were zero-extended when loaded.
    }
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
  uint32_t taken = (1u << kRsp) | (1u << kRcx);
  int s0 = PickScratch(taken, false);
  int s1 = PickScratch(taken, false);
  int s2 = PickScratch(taken, false);
  MarkInsn(index);
  Spill(s0, 2);
  a_.mov(G(s0), Gs(ROVE_CTX(guest_rsp)));
  EmitAccess(
      index, s0, s1, s2, size, false, [this, s0, s1, s2] { EmitStackAddress(s1, s2, s0, 0); },
      [this, s1, s2, size] {
        if (size == 8)
          a_.mov(G(s2), x86::qword_ptr(G(s1)));
        else if (size == 4)
          a_.mov(G32(s2), x86::dword_ptr(G(s1)));
        else
          a_.movzx(G32(s2), x86::word_ptr(G(s1)));
        a_.mov(Gs(ROVE_CTX(lookup_rip)), G(s2));
      },
      true, kArithFlags);
  Spill(s0, 2);
  EmitRspAdjust(s0, static_cast<int32_t>(size) + extra);
  Unspill(s0, 2);
  EmitIndirectJump();
}

void BlockEmitter::EmitJmpInd(size_t index) {
  EmitLoadTarget(index);
  EmitIndirectJump();
}

void BlockEmitter::EmitJcc(size_t index) {
  Insn& in = insns_[index];
  MarkInsn(index);
  uint64_t taken_rip = in.next_rip + in.ops[0].imm.value.s;
  Label taken = a_.newLabel();
  // Host Jcc with the same condition code: (opcode & 0xF) of the short or near form.
  uint8_t cc = in.d.opcode & 0x0F;
  a_.emit(static_cast<x86::Inst::Id>(x86::Inst::jccFromCond(static_cast<x86::CondCode>(cc))),
          taken);
  EmitDirectJump(in.next_rip);
  a_.bind(taken);
  EmitDirectJump(taken_rip);
}

void BlockEmitter::EmitLoop(size_t index) {
  Insn& in = insns_[index];
  MarkInsn(index);
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
  EmitDirectJump(taken_rip);
  a_.bind(fall);
  EmitDirectJump(in.next_rip);
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
    in.kind = Classify(in, mode.code_bits);
    ComputeRegisterUse(in);
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
  // Flag liveness, backwards; everything is live at the block end.
  uint32_t live = kArithFlags;
  for (size_t i = insns.size(); i-- > 0;) {
    Insn& in = insns[i];
    in.live_before = (live & ~in.flags_written) | in.flags_read;
    live = in.live_before;
  }

  auto block = std::make_unique<bt::Block>();
  block->linear = linear;
  block->rip = state.rip;
  block->cs_base = cs_base;
  block->mode = mode.Pack();
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
  for (const auto& m : emitter.map_labels) {
    const Insn& in = insns[m.insn];
    bt::InsnMapEntry e{};
    e.host_offset = static_cast<uint32_t>(code.labelOffsetFromBase(m.label));
    e.guest_rip = in.rip;
    e.next_rip = in.next_rip;
    std::memcpy(e.spilled, m.spilled, 3);
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
    info.guest_rip = in.rip;
    info.next_rip = in.next_rip;
    info.view = mode.view;
    block->mem_sites.push_back(info);
  }
  std::sort(block->mem_sites.begin(), block->mem_sites.end(),
            [](const auto& x, const auto& y) { return x.return_offset < y.return_offset; });
  for (const auto& c : emitter.chain_sites) {
    (void)c;
  }
  stats.blocks_translated++;
  stats.instructions_translated += insns.size();
  bt::Block* raw = block.get();
  block_storage.push_back(std::move(block));
  return raw;
}

}  // namespace rove
