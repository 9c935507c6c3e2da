// Static analysis of a sequence with Zydis: instruction boundaries and which RFLAGS bits are
// architecturally undefined (and so excluded from the comparison) at each point.
#include <Zydis/Zydis.h>
#include <fmt/format.h>

#include <map>
#include <set>

#include "harness.h"

namespace rove::difftest {
namespace {

constexpr uint64_t kFlagBits = 0xFFF;  // ZYDIS_CPUFLAG_* below bit 12 are RFLAGS positions

}  // namespace

bool ShiftCountMayBeZero(const ZydisDecodedInstruction& insn, const ZydisDecodedOperand* ops) {
  switch (insn.mnemonic) {
    case ZYDIS_MNEMONIC_SHL:
    case ZYDIS_MNEMONIC_SHR:
    case ZYDIS_MNEMONIC_SAR:
    case ZYDIS_MNEMONIC_ROL:
    case ZYDIS_MNEMONIC_ROR:
    case ZYDIS_MNEMONIC_RCL:
    case ZYDIS_MNEMONIC_RCR:
    case ZYDIS_MNEMONIC_SHLD:
    case ZYDIS_MNEMONIC_SHRD:
      break;
    default:
      return false;
  }
  const ZydisDecodedOperand& count = ops[insn.operand_count_visible - 1];
  if (count.type == ZYDIS_OPERAND_TYPE_REGISTER) return true;
  if (count.type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
    const uint64_t mask = insn.operand_width == 64 ? 0x3F : 0x1F;
    return (count.imm.value.u & mask) == 0;
  }
  return false;
}

namespace {

struct Decoded {
  uint32_t offset = 0;
  uint32_t length = 0;
  uint64_t defined_writes = 0;  // flags given a defined value
  uint64_t undefined = 0;
  enum class Flow { kNext, kJump, kCondJump, kCall, kRet, kIndirect, kStop } flow = Flow::kNext;
  int64_t target = -1;  // code offset of a direct branch target
};

bool Decode(const std::vector<uint8_t>& code, bool compat32, std::vector<Decoded>* out) {
  ZydisDecoder decoder;
  if (compat32) {
    ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_COMPAT_32, ZYDIS_STACK_WIDTH_32);
  } else {
    ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  }
  size_t offset = 0;
  while (offset < code.size()) {
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder, code.data() + offset, code.size() - offset,
                                             &insn, ops))) {
      return false;
    }
    Decoded d;
    d.offset = static_cast<uint32_t>(offset);
    d.length = insn.length;
    if (insn.cpu_flags) {
      const ZydisAccessedFlags& f = *insn.cpu_flags;
      d.undefined = f.undefined & kFlagBits;
      d.defined_writes = (f.modified | f.set_0 | f.set_1) & kFlagBits & ~d.undefined;
      // A shift or rotate by zero leaves RFLAGS alone: with a CL count (unknown here) or an
      // immediate count that masks to zero, flags undefined before stay undefined.
      if (ShiftCountMayBeZero(insn, ops)) d.defined_writes = 0;
    }
    const uint64_t next = offset + insn.length;
    switch (insn.meta.category) {
      case ZYDIS_CATEGORY_UNCOND_BR:
      case ZYDIS_CATEGORY_COND_BR:
      case ZYDIS_CATEGORY_CALL: {
        const bool cond = insn.meta.category == ZYDIS_CATEGORY_COND_BR;
        const bool call = insn.meta.category == ZYDIS_CATEGORY_CALL;
        if (insn.operand_count_visible > 0 && ops[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE &&
            ops[0].imm.is_relative) {
          d.target = static_cast<int64_t>(next) + ops[0].imm.value.s;
          d.flow = call ? Decoded::Flow::kCall
                        : (cond ? Decoded::Flow::kCondJump : Decoded::Flow::kJump);
        } else {
          d.flow = Decoded::Flow::kIndirect;
        }
        break;
      }
      case ZYDIS_CATEGORY_RET:
        d.flow = Decoded::Flow::kRet;
        break;
      case ZYDIS_CATEGORY_SYSTEM:
      case ZYDIS_CATEGORY_INTERRUPT:
        if (insn.mnemonic == ZYDIS_MNEMONIC_HLT || insn.mnemonic == ZYDIS_MNEMONIC_UD2 ||
            insn.mnemonic == ZYDIS_MNEMONIC_UD0 || insn.mnemonic == ZYDIS_MNEMONIC_UD1) {
          d.flow = Decoded::Flow::kStop;
        }
        break;
      default:
        break;
    }
    out->push_back(d);
    offset = next;
  }
  return true;
}

}  // namespace

SequenceInfo AnalyzeSequence(const std::vector<uint8_t>& code, bool compat32) {
  SequenceInfo info;
  std::vector<Decoded> insns;
  if (!Decode(code, compat32, &insns)) {
    info.decode_error = true;
    info.undefined_flags = rflags::kArith;
  }
  const size_t n = insns.size();
  // in[i]: flags possibly undefined entering instruction i; in[n]: at the end.
  std::vector<uint64_t> in(n + 1, 0);
  std::map<uint32_t, size_t> index_of;
  for (size_t i = 0; i < n; ++i) index_of[insns[i].offset] = i;
  index_of[static_cast<uint32_t>(code.size())] = n;
  std::vector<size_t> return_sites;
  for (size_t i = 0; i < n; ++i) {
    if (insns[i].flow == Decoded::Flow::kCall) return_sites.push_back(i + 1);
  }
  // Monotone fixed point over the (small) control-flow graph. Unknown targets (indirect
  // branches, targets outside the sequence) make everything conservative.
  uint64_t everywhere = 0;
  for (int round = 0; round < 64; ++round) {
    std::vector<uint64_t> next_in = in;
    for (size_t i = 0; i < n; ++i) {
      const Decoded& d = insns[i];
      const uint64_t out = (in[i] & ~d.defined_writes) | d.undefined;
      auto flow_to = [&](int64_t target) {
        auto it = target >= 0 ? index_of.find(static_cast<uint32_t>(target)) : index_of.end();
        if (it == index_of.end()) {
          everywhere |= out;
        } else {
          next_in[it->second] |= out;
        }
      };
      switch (d.flow) {
        case Decoded::Flow::kNext:
          next_in[i + 1] |= out;
          break;
        case Decoded::Flow::kJump:
          flow_to(d.target);
          break;
        case Decoded::Flow::kCondJump:
          next_in[i + 1] |= out;
          flow_to(d.target);
          break;
        case Decoded::Flow::kCall:
          flow_to(d.target);
          break;
        case Decoded::Flow::kRet:
          for (size_t site : return_sites) next_in[site] |= out;
          if (return_sites.empty()) everywhere |= out;
          break;
        case Decoded::Flow::kIndirect:
          everywhere |= out;
          break;
        case Decoded::Flow::kStop:
          break;
      }
    }
    for (uint64_t& v : next_in) v |= everywhere;
    if (next_in == in) break;
    in = std::move(next_in);
  }
  for (const Decoded& d : insns) info.offsets.push_back(d.offset);
  info.undefined_before.assign(in.begin(), in.begin() + static_cast<ptrdiff_t>(n));
  info.undefined_flags |= in[n];
  return info;
}

int InstructionIndexAt(const SequenceInfo& info, uint64_t offset) {
  for (size_t i = 0; i < info.offsets.size(); ++i) {
    if (info.offsets[i] == offset) return static_cast<int>(i);
  }
  return -1;
}

std::string Disassemble(const std::vector<uint8_t>& code, bool compat32) {
  std::string text;
  size_t offset = 0;
  int index = 0;
  while (offset < code.size()) {
    ZydisDisassembledInstruction insn;
    if (!ZYAN_SUCCESS(ZydisDisassembleIntel(
            compat32 ? ZYDIS_MACHINE_MODE_LONG_COMPAT_32 : ZYDIS_MACHINE_MODE_LONG_64,
            kCodeVa + offset, code.data() + offset, code.size() - offset, &insn))) {
      text += fmt::format("  {:4} +{:04x}  {:02x}{:<28} (undecodable)\n", index, offset,
                          code[offset], "");
      ++offset;
      ++index;
      continue;
    }
    std::string bytes;
    for (unsigned i = 0; i < insn.info.length; ++i) {
      bytes += fmt::format("{:02x}", code[offset + i]);
    }
    text += fmt::format("  {:4} +{:04x}  {:<30} {}\n", index, offset, bytes, insn.text);
    offset += insn.info.length;
    ++index;
  }
  return text;
}

}  // namespace rove::difftest
