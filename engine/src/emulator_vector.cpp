// Vector instructions the translator hands over: AVX2 gathers and AVX-512 gathers/scatters
// (VSIB addressing), and MASKMOVDQU (its [RDI] operand is hidden). They work on the vector
// registers in CpuState::xsave (standard format).
#include <algorithm>
#include <cstring>

#include "emulator_impl.h"

namespace rove {
namespace {

constexpr uint32_t kXstateBv = 512;

// Vector and opmask registers inside the XSAVE image. A component whose XSTATE_BV bit is clear
// is in its initial state (zeros) whatever bytes the image holds.
class VectorFile {
 public:
  VectorFile(uint8_t* area, const CpuModel& model) : area_(area), model_(model) {}

  void Read(int r, uint8_t out[64]) {
    for (int lane = 0; lane < 4; ++lane) {
      int comp = Component(r, lane);
      uint8_t* p = Lane(r, lane);
      if (p && (Bv() >> comp) & 1) {
        std::memcpy(out + 16 * lane, p, 16);
      } else {
        std::memset(out + 16 * lane, 0, 16);
      }
    }
  }
  // Writes the first `bytes` bytes of register r and zeroes the rest up to 512 bits.
  void Write(int r, const uint8_t in[64], int bytes) {
    for (int lane = 0; lane < 4; ++lane) {
      uint8_t* p = Lane(r, lane);
      if (!p) continue;
      Touch(Component(r, lane));
      if (16 * lane < bytes) {
        std::memcpy(p, in + 16 * lane, 16);
      } else {
        std::memset(p, 0, 16);
      }
    }
  }
  uint64_t ReadK(int k) {
    if (!model_.xsave_offset(5) || !((Bv() >> 5) & 1)) return 0;
    uint64_t v;
    std::memcpy(&v, area_ + model_.xsave_offset(5) + 8 * k, 8);
    return v;
  }
  void WriteK(int k, uint64_t v) {
    if (!model_.xsave_offset(5)) return;
    Touch(5);
    std::memcpy(area_ + model_.xsave_offset(5) + 8 * k, &v, 8);
  }

 private:
  uint64_t Bv() {
    uint64_t v;
    std::memcpy(&v, area_ + kXstateBv, 8);
    return v;
  }
  // Marks component `c` in use, zeroing its stale bytes first if it was in its initial state.
  void Touch(int c) {
    uint64_t bv = Bv();
    if ((bv >> c) & 1) return;
    if (c == 1) {
      std::memset(area_ + 160, 0, 256);
    } else if (model_.xsave_offset(c)) {
      std::memset(area_ + model_.xsave_offset(c), 0, model_.xsave_size(c));
    }
    bv |= 1ull << c;
    std::memcpy(area_ + kXstateBv, &bv, 8);
  }
  static int Component(int r, int lane) {
    if (r >= 16) return 7;
    return lane == 0 ? 1 : lane == 1 ? 2 : 6;
  }
  uint8_t* Lane(int r, int lane) {
    int c = Component(r, lane);
    if (c == 1) return area_ + 160 + 16 * r;
    uint32_t off = model_.xsave_offset(c);
    if (!off) return nullptr;
    if (c == 2) return area_ + off + 16 * r;
    if (c == 6) return area_ + off + 32 * r + 16 * (lane - 2);
    return area_ + off + 64 * (r - 16) + 16 * lane;
  }

  uint8_t* area_;
  const CpuModel& model_;
};

int VectorIndex(ZydisRegister r) {
  if (r >= ZYDIS_REGISTER_XMM0 && r <= ZYDIS_REGISTER_XMM31) return r - ZYDIS_REGISTER_XMM0;
  if (r >= ZYDIS_REGISTER_YMM0 && r <= ZYDIS_REGISTER_YMM31) return r - ZYDIS_REGISTER_YMM0;
  if (r >= ZYDIS_REGISTER_ZMM0 && r <= ZYDIS_REGISTER_ZMM31) return r - ZYDIS_REGISTER_ZMM0;
  return -1;
}

}  // namespace

void SystemEmulator::Impl::DoGatherScatter() {
  bool evex = in.encoding == ZYDIS_INSTRUCTION_ENCODING_EVEX;
  bool vex = in.encoding == ZYDIS_INSTRUCTION_ENCODING_VEX;
  if (!evex && !vex) UD();
  // Availability: CR4.OSXSAVE and the XCR0 components, then CR0.TS.
  uint64_t need = xfeature::kSse | xfeature::kAvx | (evex ? xfeature::kAvx512 : 0);
  if (!(s.cr4 & cr4::kOsxsave) || (s.xcr0 & need) != need) UD();
  if (s.cr0 & cr0::kTs) RaiseNoError(kNm);

  int mem_i = -1;
  for (int i = 0; i < in.operand_count_visible; ++i)
    if (op[i].type == ZYDIS_OPERAND_TYPE_MEMORY && op[i].mem.type == ZYDIS_MEMOP_TYPE_VSIB)
      mem_i = i;
  if (mem_i < 0) UD();
  const ZydisDecodedOperand& m = op[mem_i];
  bool scatter = mem_i == 0;
  unsigned elem_bytes = m.size / 8;
  int idx_reg = VectorIndex(m.mem.index);
  bool idx64 = false;
  switch (in.mnemonic) {
    case ZYDIS_MNEMONIC_VPGATHERQD:
    case ZYDIS_MNEMONIC_VPGATHERQQ:
    case ZYDIS_MNEMONIC_VGATHERQPS:
    case ZYDIS_MNEMONIC_VGATHERQPD:
    case ZYDIS_MNEMONIC_VPSCATTERQD:
    case ZYDIS_MNEMONIC_VPSCATTERQQ:
    case ZYDIS_MNEMONIC_VSCATTERQPS:
    case ZYDIS_MNEMONIC_VSCATTERQPD:
      idx64 = true;
      break;
    case ZYDIS_MNEMONIC_VPGATHERDD:
    case ZYDIS_MNEMONIC_VPGATHERDQ:
    case ZYDIS_MNEMONIC_VGATHERDPS:
    case ZYDIS_MNEMONIC_VGATHERDPD:
    case ZYDIS_MNEMONIC_VPSCATTERDD:
    case ZYDIS_MNEMONIC_VPSCATTERDQ:
    case ZYDIS_MNEMONIC_VSCATTERDPS:
    case ZYDIS_MNEMONIC_VSCATTERDPD:
      break;
    default:
      UD();  // prefetch gathers (AVX-512PF) and anything else with VSIB
  }
  unsigned idx_bytes = idx64 ? 8 : 4;
  unsigned vl = in.avx.vector_length;  // bits
  unsigned n = vl / 8 / std::max(idx_bytes, elem_bytes);
  int data_i = scatter ? in.operand_count_visible - 1 : 0;
  int data_reg = VectorIndex(op[data_i].reg.value);
  if (idx_reg < 0 || data_reg < 0) UD();

  VectorFile vf(s.xsave, model);
  uint8_t data[64], index[64], mask_vec[64];
  vf.Read(data_reg, data);
  vf.Read(idx_reg, index);
  int kreg = 0, mask_reg = -1;
  uint64_t kmask = 0;
  if (evex) {
    kreg = in.avx.mask.reg - ZYDIS_REGISTER_K0;
    if (kreg <= 0 || kreg > 7) UD();
    if (!scatter && data_reg == idx_reg) UD();
    kmask = vf.ReadK(kreg);
  } else {
    mask_reg = VectorIndex(op[in.operand_count_visible - 1].reg.value);
    if (mask_reg < 0 || mask_reg == data_reg || mask_reg == idx_reg || data_reg == idx_reg) UD();
    vf.Read(mask_reg, mask_vec);
  }

  SegReg seg = OperandSeg(m);
  uint64_t base = m.mem.base != ZYDIS_REGISTER_NONE ? GetReg(m.mem.base) : 0;
  uint64_t disp = m.mem.disp.has_displacement ? static_cast<uint64_t>(m.mem.disp.value) : 0;
  unsigned data_bytes = n * elem_bytes;
  auto element_active = [&](unsigned j) {
    if (evex) return ((kmask >> j) & 1) != 0;
    return (mask_vec[j * elem_bytes + elem_bytes - 1] & 0x80) != 0;
  };
  auto clear_mask = [&](unsigned j) {
    if (evex) {
      kmask &= ~(1ull << j);
    } else {
      std::memset(mask_vec + j * elem_bytes, 0, elem_bytes);
    }
  };
  auto commit = [&]() {
    if (evex) {
      vf.WriteK(kreg, kmask);
    } else {
      vf.Write(mask_reg, mask_vec, static_cast<int>(data_bytes));
    }
    if (!scatter) vf.Write(data_reg, data, static_cast<int>(data_bytes));
  };
  try {
    for (unsigned j = 0; j < n; ++j) {
      if (!element_active(j)) continue;
      int64_t ix;
      if (idx64) {
        std::memcpy(&ix, index + j * 8, 8);
      } else {
        int32_t i32;
        std::memcpy(&i32, index + j * 4, 4);
        ix = i32;
      }
      uint64_t ea = (base + static_cast<uint64_t>(ix) * m.mem.scale + disp) & AddrMask();
      if (scatter) {
        Write(seg, ea, data + j * elem_bytes, elem_bytes);
      } else {
        Read(seg, ea, data + j * elem_bytes, elem_bytes);
      }
      clear_mask(j);
    }
  } catch (const GuestFault&) {
    commit();  // completed elements stay done, as on hardware
    throw;
  }
  if (!evex) std::memset(mask_vec, 0, sizeof(mask_vec));  // the whole mask ends cleared
  commit();
}

// MASKMOVDQU / VMASKMOVDQU xmm1, xmm2: the bytes of xmm1 whose byte in xmm2 has its high bit
// set go to DS:[RDI] (EDI/DI by address size, segment override allowed). Every page that
// receives a byte is checked for writing first, so a fault writes nothing; with an all-zero
// mask nothing is accessed.
void SystemEmulator::Impl::DoMaskMovdqu() {
  const bool vex = in.encoding == ZYDIS_INSTRUCTION_ENCODING_VEX;
  if (vex) {
    const uint64_t need = xfeature::kSse | xfeature::kAvx;
    if (!(s.cr4 & cr4::kOsxsave) || (s.xcr0 & need) != need) UD();
  } else {
    if ((s.cr0 & cr0::kEm) || !(s.cr4 & cr4::kOsfxsr)) UD();
  }
  if (s.cr0 & cr0::kTs) RaiseNoError(kNm);
  int mem_i = -1;
  for (int i = 0; i < in.operand_count; ++i)
    if (op[i].type == ZYDIS_OPERAND_TYPE_MEMORY) mem_i = i;
  const int data_reg = VectorIndex(op[0].reg.value);
  const int mask_reg = VectorIndex(op[1].reg.value);
  if (mem_i < 0 || data_reg < 0 || mask_reg < 0) UD();

  VectorFile vf(s.xsave, model);
  uint8_t data[64], mask[64];
  vf.Read(data_reg, data);
  vf.Read(mask_reg, mask);
  int first = -1, last = -1;
  for (int i = 0; i < 16; ++i) {
    if (!(mask[i] & 0x80)) continue;
    if (first < 0) first = i;
    last = i;
  }
  const uint64_t base =
      SegLinear(OperandSeg(op[mem_i]), EffectiveAddress(op[mem_i]), 16, MemAccess::kWrite);
  if (first < 0) return;
  auto linear_of = [&](int i) { return TruncLinear(base + static_cast<uint64_t>(i)); };
  if (PagingEnabled(Paging())) {
    uint64_t checked_page = ~0ull;
    for (int i = first; i <= last; ++i) {
      if (!(mask[i] & 0x80) || (linear_of(i) & kPageMask) == checked_page) continue;
      checked_page = linear_of(i) & kPageMask;
      ProbeWrite(linear_of(i));
    }
  }
  for (int i = first; i <= last; ++i) {
    if (!(mask[i] & 0x80)) continue;
    int end = i;
    while (end + 1 <= last && (mask[end + 1] & 0x80)) ++end;
    LinWrite(linear_of(i), data + i, static_cast<size_t>(end - i + 1));
    i = end;
  }
}

}  // namespace rove
