#include "random_gen.h"

#include <fmt/format.h>

#include <array>
#include <cctype>
#include <cstring>
#include <optional>
#include <sstream>

#include "known_failures.h"

namespace rove::difftest {
namespace {

// ---------------------------------------------------------------------------------------------
// Deterministic random numbers (splitmix64: identical on every platform and library).

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t Below(uint64_t n) { return n ? Next() % n : 0; }
  int64_t Range(int64_t lo, int64_t hi) {  // inclusive
    return lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo + 1)));
  }
  bool Chance(unsigned percent) { return Below(100) < percent; }

 private:
  uint64_t s_;
};

// ---------------------------------------------------------------------------------------------
// The instruction table.
//
// Operand tokens (one form = tokens separated by spaces, forms separated by '|'):
//   g g8 g16 g32 g64    general register (g: the instruction's operand size S)
//   e e8 e16 e32 e64    register or memory (r/m)
//   m m8 ... m512 mv    memory (mv: vector length VL)
//   i i8                immediate (i: fits S, at most 32 bits)
//   c                   CL
//   x y z v vh vq       XMM / YMM / ZMM / vector of length VL, VL/2, VL/4
//   xm ym vm vhm vqm    vector register or memory of that size
//   b                   vm, or (EVEX) an element broadcast from memory
//   k kw                opmask register / writemask (k0-k7, maybe zeroing)
//   st0 sti             x87 ST(0) / a random ST(i)
//   one                 the immediate 1

enum EntryFlags : uint32_t {
  kLockable = 1u << 0,
  kDivide = 1u << 1,
  kNoAccess = 1u << 2,   // memory operand is not accessed (LEA, NOP)
  kLegacySse = 1u << 3,  // XMM0-15 only
  kSizes16Up = 1u << 4,  // S in {16, 32, 64}
  kSizes32Up = 1u << 5,  // S in {32, 64}
  kSizes64 = 1u << 6,    // S = 64
  kEvex = 1u << 7,       // prefer ZMM / high registers
  kVex = 1u << 8,        // VL in {128, 256}, registers 0-15
  kMaskDi = 1u << 9,     // implicit [RDI] operand (MASKMOVDQU)
  kAligned = 1u << 10,   // memory operand must be aligned (VEX/EVEX aligned moves)
};

struct Entry {
  ZydisMnemonic mnemonic;
  const char* forms;
  uint32_t flags;
  unsigned weight;
};

#define M(x) ZYDIS_MNEMONIC_##x

// clang-format off
const Entry kTable[] = {
    // Integer ALU.
    {M(ADD), "e g|g e|e i", kLockable, 6}, {M(OR), "e g|g e|e i", kLockable, 4},
    {M(ADC), "e g|g e|e i", kLockable, 4}, {M(SBB), "e g|g e|e i", kLockable, 4},
    {M(AND), "e g|g e|e i", kLockable, 4}, {M(SUB), "e g|g e|e i", kLockable, 5},
    {M(XOR), "e g|g e|e i", kLockable, 4}, {M(CMP), "e g|g e|e i", 0, 5},
    {M(TEST), "e g|e i", 0, 4},
    {M(INC), "e", kLockable, 2}, {M(DEC), "e", kLockable, 2},
    {M(NEG), "e", kLockable, 2}, {M(NOT), "e", kLockable, 2},
    {M(MOV), "e g|g e|g i|e i", 0, 6},
    {M(MOVZX), "g16 e8|g32 e8|g32 e16|g64 e8|g64 e16", 0, 2},
    {M(MOVSX), "g16 e8|g32 e8|g32 e16|g64 e8|g64 e16", 0, 2},
    {M(MOVSXD), "g64 e32", 0, 1},
    {M(XCHG), "e g", 0, 2}, {M(XADD), "e g", kLockable, 2}, {M(CMPXCHG), "e g", kLockable, 2},
    {M(BSWAP), "g", kSizes32Up, 1},
    // Shifts and rotates.
    {M(SHL), "e i8|e c|e one", 0, 3}, {M(SHR), "e i8|e c|e one", 0, 3},
    {M(SAR), "e i8|e c|e one", 0, 3}, {M(ROL), "e i8|e c|e one", 0, 2},
    {M(ROR), "e i8|e c|e one", 0, 2}, {M(RCL), "e i8|e c|e one", 0, 2},
    {M(RCR), "e i8|e c|e one", 0, 2},
    {M(SHLD), "e g i8|e g c", kSizes16Up, 2}, {M(SHRD), "e g i8|e g c", kSizes16Up, 2},
    // Multiply and divide.
    {M(MUL), "e", 0, 2}, {M(IMUL), "e|g e|g e i", 0, 3},
    {M(DIV), "e", kDivide, 2}, {M(IDIV), "e", kDivide, 2},
    // Bit operations.
    {M(BT), "g g|e i8", kSizes16Up, 2}, {M(BTS), "g g|e i8", kSizes16Up | kLockable, 2},
    {M(BTR), "g g|e i8", kSizes16Up | kLockable, 2},
    {M(BTC), "g g|e i8", kSizes16Up | kLockable, 2},
    {M(BSF), "g e", kSizes16Up, 1}, {M(BSR), "g e", kSizes16Up, 1},
    {M(TZCNT), "g e", kSizes16Up, 1}, {M(LZCNT), "g e", kSizes16Up, 1},
    {M(POPCNT), "g e", kSizes16Up, 1},
    // Conditional moves and sets.
    {M(CMOVO), "g e", kSizes16Up, 1}, {M(CMOVNO), "g e", kSizes16Up, 1},
    {M(CMOVB), "g e", kSizes16Up, 1}, {M(CMOVNB), "g e", kSizes16Up, 1},
    {M(CMOVZ), "g e", kSizes16Up, 1}, {M(CMOVNZ), "g e", kSizes16Up, 1},
    {M(CMOVBE), "g e", kSizes16Up, 1}, {M(CMOVNBE), "g e", kSizes16Up, 1},
    {M(CMOVS), "g e", kSizes16Up, 1}, {M(CMOVNS), "g e", kSizes16Up, 1},
    {M(CMOVP), "g e", kSizes16Up, 1}, {M(CMOVNP), "g e", kSizes16Up, 1},
    {M(CMOVL), "g e", kSizes16Up, 1}, {M(CMOVNL), "g e", kSizes16Up, 1},
    {M(CMOVLE), "g e", kSizes16Up, 1}, {M(CMOVNLE), "g e", kSizes16Up, 1},
    {M(SETO), "e8", 0, 1}, {M(SETNO), "e8", 0, 1}, {M(SETB), "e8", 0, 1},
    {M(SETNB), "e8", 0, 1}, {M(SETZ), "e8", 0, 1}, {M(SETNZ), "e8", 0, 1},
    {M(SETBE), "e8", 0, 1}, {M(SETNBE), "e8", 0, 1}, {M(SETS), "e8", 0, 1},
    {M(SETNS), "e8", 0, 1}, {M(SETP), "e8", 0, 1}, {M(SETNP), "e8", 0, 1},
    {M(SETL), "e8", 0, 1}, {M(SETNL), "e8", 0, 1}, {M(SETLE), "e8", 0, 1},
    {M(SETNLE), "e8", 0, 1},
    // Address arithmetic and miscellaneous.
    {M(LEA), "g m", kSizes16Up | kNoAccess, 3},
    {M(NOP), "|e", kSizes16Up | kNoAccess, 1},
    {M(CBW), "", 0, 1}, {M(CWDE), "", 0, 1}, {M(CDQE), "", 0, 1},
    {M(CWD), "", 0, 1}, {M(CDQ), "", 0, 1}, {M(CQO), "", 0, 1},
    {M(CLC), "", 0, 1}, {M(STC), "", 0, 1}, {M(CMC), "", 0, 1},
    {M(LAHF), "", 0, 1}, {M(SAHF), "", 0, 1},
    {M(MOVBE), "g m|m g", kSizes16Up, 1},
    {M(CRC32), "g32 e8|g32 e16|g32 e32|g64 e8|g64 e64", 0, 1},
    {M(ADCX), "g e", kSizes32Up, 1}, {M(ADOX), "g e", kSizes32Up, 1},
    // Locked 8/16-byte compare-exchange.
    {M(CMPXCHG8B), "m64", kLockable, 1}, {M(CMPXCHG16B), "m128", kLockable | kAligned, 1},
    // x87 (all exceptions masked: results are NaNs and flags in FSW, never faults).
    {M(FLD), "m32|m64|sti", 0, 2}, {M(FILD), "m16|m32|m64", 0, 1},
    {M(FSTP), "m32|m64|sti", 0, 2}, {M(FST), "m32|m64", 0, 1},
    {M(FISTP), "m16|m32|m64", 0, 1}, {M(FXCH), "sti", 0, 1},
    {M(FADD), "st0 sti|sti st0|m32|m64", 0, 1}, {M(FMUL), "st0 sti|sti st0|m32|m64", 0, 1},
    {M(FSUB), "st0 sti|m64", 0, 1}, {M(FDIVR), "st0 sti|m32", 0, 1},
    {M(FLDZ), "", 0, 1}, {M(FLD1), "", 0, 1}, {M(FLDPI), "", 0, 1},
    {M(FCHS), "", 0, 1}, {M(FABS), "", 0, 1}, {M(FSQRT), "", 0, 1},
    {M(FRNDINT), "", 0, 1}, {M(FCOMI), "st0 sti", 0, 1}, {M(FUCOMIP), "st0 sti", 0, 1},
    {M(FCMOVB), "st0 sti", 0, 1}, {M(FCMOVNE), "st0 sti", 0, 1},
    {M(FNSTSW), "m16", 0, 1},
    // BMI1/BMI2.
    {M(ANDN), "g g e", kSizes32Up, 1}, {M(BEXTR), "g e g", kSizes32Up, 1},
    {M(BLSI), "g e", kSizes32Up, 1}, {M(BLSMSK), "g e", kSizes32Up, 1},
    {M(BLSR), "g e", kSizes32Up, 1}, {M(BZHI), "g e g", kSizes32Up, 1},
    {M(PDEP), "g g e", kSizes32Up, 1}, {M(PEXT), "g g e", kSizes32Up, 1},
    {M(SARX), "g e g", kSizes32Up, 1}, {M(SHLX), "g e g", kSizes32Up, 1},
    {M(SHRX), "g e g", kSizes32Up, 1}, {M(RORX), "g e i8", kSizes32Up, 1},
    {M(MULX), "g g e", kSizes32Up, 1},

    // SSE/SSE2 moves.
    {M(MOVAPS), "x xm|m128 x", kLegacySse, 2}, {M(MOVUPS), "x xm|m128 x", kLegacySse, 2},
    {M(MOVDQA), "x xm|m128 x", kLegacySse, 2}, {M(MOVDQU), "x xm|m128 x", kLegacySse, 2},
    {M(MOVSS), "x x|x m32|m32 x", kLegacySse, 1}, {M(MOVSD), "x x|x m64|m64 x", kLegacySse, 1},
    {M(MOVD), "x e32|e32 x", kLegacySse, 1}, {M(MOVQ), "x e64|e64 x|x x", kLegacySse, 1},
    {M(MOVHPS), "x m64|m64 x", kLegacySse, 1}, {M(MOVLPD), "x m64|m64 x", kLegacySse, 1},
    {M(MOVHLPS), "x x", kLegacySse, 1}, {M(MOVLHPS), "x x", kLegacySse, 1},
    {M(MASKMOVDQU), "x x", kLegacySse | kMaskDi, 1},
    // SSE floating point.
    {M(ADDPS), "x xm", kLegacySse, 1}, {M(ADDSD), "x xm", kLegacySse, 1},
    {M(SUBPD), "x xm", kLegacySse, 1}, {M(MULPS), "x xm", kLegacySse, 1},
    {M(DIVPD), "x xm", kLegacySse, 1}, {M(SQRTPS), "x xm", kLegacySse, 1},
    {M(MINPS), "x xm", kLegacySse, 1}, {M(MAXSD), "x xm", kLegacySse, 1},
    {M(RCPPS), "x xm", kLegacySse, 1}, {M(ANDPS), "x xm", kLegacySse, 1},
    {M(XORPD), "x xm", kLegacySse, 1}, {M(SHUFPS), "x xm i8", kLegacySse, 1},
    {M(UNPCKLPS), "x xm", kLegacySse, 1}, {M(CMPPS), "x xm i8", kLegacySse, 1},
    {M(COMISS), "x xm", kLegacySse, 1}, {M(UCOMISD), "x xm", kLegacySse, 1},
    {M(CVTSI2SD), "x e32|x e64", kLegacySse, 1}, {M(CVTTSD2SI), "g32 xm|g64 xm", kLegacySse, 1},
    {M(CVTPS2PD), "x xm", kLegacySse, 1}, {M(CVTDQ2PS), "x xm", kLegacySse, 1},
    {M(CVTTPS2DQ), "x xm", kLegacySse, 1}, {M(ROUNDPS), "x xm i8", kLegacySse, 1},
    {M(DPPS), "x xm i8", kLegacySse, 1}, {M(HADDPS), "x xm", kLegacySse, 1},
    {M(BLENDVPS), "x xm", kLegacySse, 1},
    // SSE integer.
    {M(PADDB), "x xm", kLegacySse, 1}, {M(PADDW), "x xm", kLegacySse, 1},
    {M(PADDD), "x xm", kLegacySse, 1}, {M(PADDQ), "x xm", kLegacySse, 1},
    {M(PSUBUSB), "x xm", kLegacySse, 1}, {M(PADDSW), "x xm", kLegacySse, 1},
    {M(PMULLW), "x xm", kLegacySse, 1}, {M(PMULHUW), "x xm", kLegacySse, 1},
    {M(PMULUDQ), "x xm", kLegacySse, 1}, {M(PMADDWD), "x xm", kLegacySse, 1},
    {M(PAVGB), "x xm", kLegacySse, 1}, {M(PMINUB), "x xm", kLegacySse, 1},
    {M(PMAXSW), "x xm", kLegacySse, 1}, {M(PSADBW), "x xm", kLegacySse, 1},
    {M(PAND), "x xm", kLegacySse, 1}, {M(PANDN), "x xm", kLegacySse, 1},
    {M(POR), "x xm", kLegacySse, 1}, {M(PXOR), "x xm", kLegacySse, 1},
    {M(PCMPEQB), "x xm", kLegacySse, 1}, {M(PCMPGTD), "x xm", kLegacySse, 1},
    {M(PUNPCKLBW), "x xm", kLegacySse, 1}, {M(PUNPCKHQDQ), "x xm", kLegacySse, 1},
    {M(PACKSSWB), "x xm", kLegacySse, 1}, {M(PACKUSWB), "x xm", kLegacySse, 1},
    {M(PSLLW), "x xm|x i8", kLegacySse, 1}, {M(PSRLD), "x xm|x i8", kLegacySse, 1},
    {M(PSRAW), "x xm|x i8", kLegacySse, 1}, {M(PSLLQ), "x xm|x i8", kLegacySse, 1},
    {M(PSLLDQ), "x i8", kLegacySse, 1}, {M(PSRLDQ), "x i8", kLegacySse, 1},
    {M(PSHUFD), "x xm i8", kLegacySse, 1}, {M(PSHUFLW), "x xm i8", kLegacySse, 1},
    {M(PMOVMSKB), "g32 x", kLegacySse, 1}, {M(PEXTRW), "g32 x i8", kLegacySse, 1},
    {M(PINSRW), "x g32 i8|x m16 i8", kLegacySse, 1},
    {M(PSHUFB), "x xm", kLegacySse, 1}, {M(PALIGNR), "x xm i8", kLegacySse, 1},
    {M(PABSD), "x xm", kLegacySse, 1}, {M(PHADDW), "x xm", kLegacySse, 1},
    {M(PMULHRSW), "x xm", kLegacySse, 1}, {M(PMADDUBSW), "x xm", kLegacySse, 1},
    {M(PMULLD), "x xm", kLegacySse, 1}, {M(PMINSD), "x xm", kLegacySse, 1},
    {M(PMAXUD), "x xm", kLegacySse, 1}, {M(PBLENDW), "x xm i8", kLegacySse, 1},
    {M(PTEST), "x xm", kLegacySse, 1}, {M(PMOVZXBW), "x x|x m64", kLegacySse, 1},
    {M(PMOVSXDQ), "x x|x m64", kLegacySse, 1}, {M(PEXTRD), "e32 x i8", kLegacySse, 1},
    {M(PEXTRQ), "e64 x i8", kLegacySse, 1}, {M(PINSRB), "x g32 i8|x m8 i8", kLegacySse, 1},
    {M(PINSRQ), "x e64 i8", kLegacySse, 1}, {M(INSERTPS), "x x i8|x m32 i8", kLegacySse, 1},
    {M(PCMPEQQ), "x xm", kLegacySse, 1}, {M(PCMPGTQ), "x xm", kLegacySse, 1},
    {M(PACKUSDW), "x xm", kLegacySse, 1}, {M(PCMPISTRI), "x xm i8", kLegacySse, 1},
    {M(AESENC), "x xm", kLegacySse, 1}, {M(AESDECLAST), "x xm", kLegacySse, 1},
    {M(PCLMULQDQ), "x xm i8", kLegacySse, 1},

    // AVX/AVX2/FMA/F16C.
    {M(VMOVDQU), "v vm|mv v", kVex, 2}, {M(VMOVAPS), "v vm|mv v", kVex | kAligned, 1},
    {M(VMOVUPD), "v vm|mv v", kVex, 1},
    {M(VADDPS), "v v vm", kVex, 1}, {M(VMULPD), "v v vm", kVex, 1},
    {M(VSUBPS), "v v vm", kVex, 1}, {M(VDIVPD), "v v vm", kVex, 1},
    {M(VMINPS), "v v vm", kVex, 1}, {M(VANDPS), "v v vm", kVex, 1},
    {M(VSQRTPS), "v vm", kVex, 1}, {M(VPADDB), "v v vm", kVex, 1},
    {M(VPADDD), "v v vm", kVex, 1}, {M(VPSUBQ), "v v vm", kVex, 1},
    {M(VPMULLD), "v v vm", kVex, 1}, {M(VPMULUDQ), "v v vm", kVex, 1},
    {M(VPAND), "v v vm", kVex, 1}, {M(VPXOR), "v v vm", kVex, 1},
    {M(VPCMPEQD), "v v vm", kVex, 1}, {M(VPCMPGTQ), "v v vm", kVex, 1},
    {M(VPMINUB), "v v vm", kVex, 1}, {M(VPSHUFB), "v v vm", kVex, 1},
    {M(VPUNPCKLDQ), "v v vm", kVex, 1}, {M(VPACKUSWB), "v v vm", kVex, 1},
    {M(VPERMD), "y y ym", kVex, 1}, {M(VPERMQ), "y ym i8", kVex, 1},
    {M(VPERM2I128), "y y ym i8", kVex, 1}, {M(VINSERTI128), "y y xm i8", kVex, 1},
    {M(VEXTRACTI128), "xm y i8", kVex, 1}, {M(VPSLLVD), "v v vm", kVex, 1},
    {M(VPSRAVD), "v v vm", kVex, 1}, {M(VPSRLVQ), "v v vm", kVex, 1},
    {M(VPSLLD), "v v i8|v v xm", kVex, 1}, {M(VPSRAW), "v v i8|v v xm", kVex, 1},
    {M(VPSHUFD), "v vm i8", kVex, 1}, {M(VPBLENDD), "v v vm i8", kVex, 1},
    {M(VPBLENDVB), "v v vm v", kVex, 1}, {M(VBLENDVPS), "v v vm v", kVex, 1},
    {M(VPBROADCASTD), "v x|v m32", kVex, 1}, {M(VPBROADCASTB), "v x|v m8", kVex, 1},
    {M(VBROADCASTSS), "v x|v m32", kVex, 1}, {M(VPTEST), "v vm", kVex, 1},
    {M(VTESTPS), "v vm", kVex, 1}, {M(VFMADD132PS), "v v vm", kVex, 1},
    {M(VFMADD231PD), "v v vm", kVex, 1}, {M(VFNMSUB213SS), "x x xm|x x m32", kVex, 1},
    {M(VCVTPS2PH), "xm v i8", kVex, 1}, {M(VCVTPH2PS), "v vhm", kVex, 1},
    {M(VPMASKMOVD), "v v mv|mv v v", kVex, 1}, {M(VMASKMOVPS), "v v mv|mv v v", kVex, 1},
    {M(VZEROUPPER), "", kVex, 1},
    {M(VPCLMULQDQ), "v v vm i8", kVex, 1}, {M(VAESENC), "v v vm", kVex, 1},

    // AVX-512.
    {M(VMOVDQU32), "v kw vm|mv kw v", kEvex, 2}, {M(VMOVDQU8), "v kw vm|mv kw v", kEvex, 2},
    {M(VMOVDQA64), "v kw vm|mv kw v", kEvex | kAligned, 1}, {M(VMOVUPS), "v kw vm|mv kw v", kEvex, 1},
    {M(VPADDD), "v kw v b", kEvex, 2}, {M(VPADDQ), "v kw v b", kEvex, 1},
    {M(VPSUBD), "v kw v b", kEvex, 1}, {M(VPMULLQ), "v kw v b", kEvex, 1},
    {M(VPANDQ), "v kw v b", kEvex, 1}, {M(VPORD), "v kw v b", kEvex, 1},
    {M(VPXORQ), "v kw v b", kEvex, 1}, {M(VPANDND), "v kw v b", kEvex, 1},
    {M(VPMAXUQ), "v kw v b", kEvex, 1}, {M(VPSLLVD), "v kw v b", kEvex, 1},
    {M(VPRORVQ), "v kw v b", kEvex, 1}, {M(VPROLD), "v kw b i8", kEvex, 1},
    {M(VPERMD), "v kw v b", kEvex, 1}, {M(VPERMT2D), "v kw v b", kEvex, 1},
    {M(VPERMI2Q), "v kw v b", kEvex, 1}, {M(VPTERNLOGD), "v kw v b i8", kEvex, 2},
    {M(VADDPS), "v kw v b", kEvex, 1}, {M(VMULPD), "v kw v b", kEvex, 1},
    {M(VDIVPS), "v kw v b", kEvex, 1}, {M(VMAXPD), "v kw v b", kEvex, 1},
    {M(VSCALEFPS), "v kw v b", kEvex, 1}, {M(VFMADD231PS), "v kw v b", kEvex, 1},
    {M(VPMADD52LUQ), "v kw v b", kEvex, 1}, {M(VPDPBUSD), "v kw v b", kEvex, 1},
    {M(VPCONFLICTD), "v kw b", kEvex, 1}, {M(VPLZCNTQ), "v kw b", kEvex, 1},
    {M(VPOPCNTD), "v kw b", kEvex, 1}, {M(VPOPCNTB), "v kw vm", kEvex, 1},
    {M(VPABSQ), "v kw b", kEvex, 1}, {M(VRCP14PS), "v kw b", kEvex, 1},
    {M(VGETEXPPD), "v kw b", kEvex, 1}, {M(VRNDSCALEPS), "v kw b i8", kEvex, 1},
    {M(VGETMANTPD), "v kw b i8", kEvex, 1}, {M(VRANGEPS), "v kw v b i8", kEvex, 1},
    {M(VCVTDQ2PS), "v kw b", kEvex, 1}, {M(VCVTQQ2PD), "v kw b", kEvex, 1},
    {M(VPADDB), "v kw v vm", kEvex, 1}, {M(VPMULLW), "v kw v vm", kEvex, 1},
    {M(VPSHUFB), "v kw v vm", kEvex, 1}, {M(VPERMB), "v kw v vm", kEvex, 1},
    {M(VPMULTISHIFTQB), "v kw v b", kEvex, 1}, {M(VPAVGW), "v kw v vm", kEvex, 1},
    {M(VPCMPD), "k k v b i8", kEvex, 1}, {M(VPCMPUQ), "k k v b i8", kEvex, 1},
    {M(VPCMPB), "k k v vm i8", kEvex, 1}, {M(VPCMPEQD), "k k v b", kEvex, 1},
    {M(VPTESTMD), "k k v b", kEvex, 1}, {M(VPTESTNMQ), "k k v b", kEvex, 1},
    {M(VCMPPS), "k k v b i8", kEvex, 1}, {M(VFPCLASSPS), "k k b i8", kEvex, 1},
    {M(VPMOVD2M), "k v", kEvex, 1}, {M(VPMOVM2Q), "v k", kEvex, 1},
    {M(VPCOMPRESSD), "vm kw v", kEvex, 1}, {M(VCOMPRESSPD), "vm kw v", kEvex, 1},
    {M(VPEXPANDD), "v kw vm", kEvex, 1}, {M(VEXPANDPS), "v kw vm", kEvex, 1},
    {M(VPMOVQD), "vhm kw v", kEvex, 1}, {M(VPMOVDB), "vqm kw v", kEvex, 1},
    {M(VPMOVUSDW), "vhm kw v", kEvex, 1}, {M(VPMOVZXBD), "v kw vqm", kEvex, 1},
    {M(VBROADCASTSS), "v kw x|v kw m32", kEvex, 1},
    {M(VPBROADCASTQ), "v kw x|v kw m64|v kw g64", kEvex, 1},
    {M(VSHUFI64X2), "v kw v b i8", kEvex, 1}, {M(VALIGND), "v kw v b i8", kEvex, 1},
    {M(VEXTRACTI32X4), "xm kw v i8", kEvex, 1}, {M(VINSERTI64X4), "z kw z ym i8", kEvex, 1},
    {M(KANDW), "k k k", kEvex, 1}, {M(KORD), "k k k", kEvex, 1},
    {M(KXORQ), "k k k", kEvex, 1}, {M(KXNORB), "k k k", kEvex, 1},
    {M(KANDNW), "k k k", kEvex, 1}, {M(KADDD), "k k k", kEvex, 1},
    {M(KUNPCKBW), "k k k", kEvex, 1}, {M(KNOTQ), "k k", kEvex, 1},
    {M(KSHIFTLW), "k k i8", kEvex, 1}, {M(KSHIFTRQ), "k k i8", kEvex, 1},
    {M(KMOVW), "k k|k g32|g32 k|k m16|m16 k", kEvex, 1},
    {M(KMOVQ), "k k|k g64|g64 k|k m64|m64 k", kEvex, 1},
    {M(KMOVB), "k k|k g32|g32 k|k m8|m8 k", kEvex, 1},
    {M(KORTESTW), "k k", kEvex, 1}, {M(KORTESTQ), "k k", kEvex, 1},
    {M(KTESTD), "k k", kEvex, 1},
};
// clang-format on
#undef M

std::string ToUpper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

struct ParsedEntry {
  const Entry* entry;
  std::vector<std::vector<std::string>> forms;
};

const std::vector<ParsedEntry>& Table() {
  static const std::vector<ParsedEntry> table = [] {
    std::vector<ParsedEntry> t;
    const KnownFailures& known = GetKnownFailures();
    for (const Entry& e : kTable) {
      if (known.mnemonics.count(ZydisMnemonicGetString(e.mnemonic)) ||
          known.mnemonics.count(ToUpper(ZydisMnemonicGetString(e.mnemonic)))) {
        continue;  // left out until fixed (tests/diff/known_failures.txt)
      }
      ParsedEntry p{&e, {}};
      std::string forms = e.forms;
      size_t start = 0;
      for (;;) {
        const size_t bar = forms.find('|', start);
        const std::string form = forms.substr(start, bar == std::string::npos ? bar : bar - start);
        std::vector<std::string> tokens;
        std::istringstream in(form);
        for (std::string tok; in >> tok;) tokens.push_back(tok);
        p.forms.push_back(tokens);
        if (bar == std::string::npos) break;
        start = bar + 1;
      }
      t.push_back(std::move(p));
    }
    return t;
  }();
  return table;
}

unsigned TotalWeight() {
  static const unsigned total = [] {
    unsigned w = 0;
    for (const ParsedEntry& e : Table()) w += e.entry->weight;
    return w;
  }();
  return total;
}

// ---------------------------------------------------------------------------------------------
// Mode of the sequence being generated: 64-bit, or 32-bit code for compatibility mode (set for
// the duration of one Generate() call; the generator is single-threaded).
bool g_compat32 = false;

int GprCount() {
  return g_compat32 ? 8 : 16;
}

// ---------------------------------------------------------------------------------------------
// Registers.

const ZydisRegister kGpr64[16] = {
    ZYDIS_REGISTER_RAX, ZYDIS_REGISTER_RCX, ZYDIS_REGISTER_RDX, ZYDIS_REGISTER_RBX,
    ZYDIS_REGISTER_RSP, ZYDIS_REGISTER_RBP, ZYDIS_REGISTER_RSI, ZYDIS_REGISTER_RDI,
    ZYDIS_REGISTER_R8,  ZYDIS_REGISTER_R9,  ZYDIS_REGISTER_R10, ZYDIS_REGISTER_R11,
    ZYDIS_REGISTER_R12, ZYDIS_REGISTER_R13, ZYDIS_REGISTER_R14, ZYDIS_REGISTER_R15};
const ZydisRegister kGpr32[16] = {
    ZYDIS_REGISTER_EAX,  ZYDIS_REGISTER_ECX,  ZYDIS_REGISTER_EDX,  ZYDIS_REGISTER_EBX,
    ZYDIS_REGISTER_ESP,  ZYDIS_REGISTER_EBP,  ZYDIS_REGISTER_ESI,  ZYDIS_REGISTER_EDI,
    ZYDIS_REGISTER_R8D,  ZYDIS_REGISTER_R9D,  ZYDIS_REGISTER_R10D, ZYDIS_REGISTER_R11D,
    ZYDIS_REGISTER_R12D, ZYDIS_REGISTER_R13D, ZYDIS_REGISTER_R14D, ZYDIS_REGISTER_R15D};
const ZydisRegister kGpr16[16] = {
    ZYDIS_REGISTER_AX,   ZYDIS_REGISTER_CX,   ZYDIS_REGISTER_DX,   ZYDIS_REGISTER_BX,
    ZYDIS_REGISTER_SP,   ZYDIS_REGISTER_BP,   ZYDIS_REGISTER_SI,   ZYDIS_REGISTER_DI,
    ZYDIS_REGISTER_R8W,  ZYDIS_REGISTER_R9W,  ZYDIS_REGISTER_R10W, ZYDIS_REGISTER_R11W,
    ZYDIS_REGISTER_R12W, ZYDIS_REGISTER_R13W, ZYDIS_REGISTER_R14W, ZYDIS_REGISTER_R15W};
const ZydisRegister kGpr8[16] = {
    ZYDIS_REGISTER_AL,   ZYDIS_REGISTER_CL,   ZYDIS_REGISTER_DL,   ZYDIS_REGISTER_BL,
    ZYDIS_REGISTER_SPL,  ZYDIS_REGISTER_BPL,  ZYDIS_REGISTER_SIL,  ZYDIS_REGISTER_DIL,
    ZYDIS_REGISTER_R8B,  ZYDIS_REGISTER_R9B,  ZYDIS_REGISTER_R10B, ZYDIS_REGISTER_R11B,
    ZYDIS_REGISTER_R12B, ZYDIS_REGISTER_R13B, ZYDIS_REGISTER_R14B, ZYDIS_REGISTER_R15B};
const ZydisRegister kHighByte[4] = {ZYDIS_REGISTER_AH, ZYDIS_REGISTER_CH, ZYDIS_REGISTER_DH,
                                    ZYDIS_REGISTER_BH};

ZydisRegister Gpr(int index, unsigned bytes) {
  switch (bytes) {
    case 1:
      return kGpr8[index];
    case 2:
      return kGpr16[index];
    case 4:
      return kGpr32[index];
    default:
      return kGpr64[index];
  }
}

int GprIndex(ZydisRegister reg) {
  const ZydisRegister full = ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, reg);
  for (int i = 0; i < 16; ++i) {
    if (kGpr64[i] == full) return i;
  }
  return -1;
}

ZydisRegister VectorReg(unsigned bytes, int index) {
  const ZydisRegister base = bytes >= 64   ? ZYDIS_REGISTER_ZMM0
                             : bytes == 32 ? ZYDIS_REGISTER_YMM0
                                           : ZYDIS_REGISTER_XMM0;
  return static_cast<ZydisRegister>(base + index);
}

// ---------------------------------------------------------------------------------------------
// Generator state.

constexpr uint64_t kRegionLo = kDataVa + 64;
constexpr uint64_t kRegionHi = kStackTop - 0x200;  // data accesses stay below the stack area
constexpr uint64_t kStackLimitLo = kStackTop - 0x180;
constexpr uint64_t kStackLimitHi = kStackTop + 0x180;

struct State {
  std::array<std::optional<uint64_t>, 16> known;
  uint64_t undef = 0;      // RFLAGS bits possibly undefined
  std::optional<bool> df;  // DF, if known
};

State Merge(const State& a, const State& b) {
  State m;
  for (int i = 0; i < 16; ++i) {
    if (a.known[i] && b.known[i] && *a.known[i] == *b.known[i]) m.known[i] = a.known[i];
  }
  m.undef = a.undef | b.undef;
  if (a.df && b.df && *a.df == *b.df) m.df = a.df;
  return m;
}

struct Decoded {
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
};

bool EncodeAt(const ZydisEncoderRequest& request, uint64_t address, uint8_t* buf, size_t* len) {
  ZydisEncoderRequest copy = request;
  ZyanUSize n = ZYDIS_MAX_INSTRUCTION_LENGTH;
  if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstructionAbsolute(&copy, buf, &n, address))) return false;
  *len = n;
  return true;
}

bool DecodeBytes(const uint8_t* buf, size_t len, Decoded* d) {
  ZydisDecoder decoder;
  if (g_compat32) {
    ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_COMPAT_32, ZYDIS_STACK_WIDTH_32);
  } else {
    ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  }
  return ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder, buf, len, &d->insn, d->ops));
}

ZydisEncoderRequest NewRequest(ZydisMnemonic m) {
  ZydisEncoderRequest r;
  std::memset(&r, 0, sizeof(r));
  r.machine_mode = g_compat32 ? ZYDIS_MACHINE_MODE_LONG_COMPAT_32 : ZYDIS_MACHINE_MODE_LONG_64;
  // Not MVEX (Knights Corner), 3DNow! or XOP: this host cannot run them.
  r.allowed_encodings = static_cast<ZydisEncodableEncoding>(ZYDIS_ENCODABLE_ENCODING_LEGACY |
                                                            ZYDIS_ENCODABLE_ENCODING_VEX |
                                                            ZYDIS_ENCODABLE_ENCODING_EVEX);
  r.mnemonic = m;
  return r;
}

ZydisEncoderOperand RegOp(ZydisRegister reg) {
  ZydisEncoderOperand op;
  std::memset(&op, 0, sizeof(op));
  op.type = ZYDIS_OPERAND_TYPE_REGISTER;
  op.reg.value = reg;
  return op;
}

ZydisEncoderOperand ImmOp(int64_t v) {
  ZydisEncoderOperand op;
  std::memset(&op, 0, sizeof(op));
  op.type = ZYDIS_OPERAND_TYPE_IMMEDIATE;
  op.imm.s = v;
  return op;
}

// mov r64, imm64 (or mov r32, imm32 when it fits: zero-extends).
ZydisEncoderRequest MovImm(int reg, uint64_t value) {
  ZydisEncoderRequest r = NewRequest(ZYDIS_MNEMONIC_MOV);
  r.operand_count = 2;
  if (value <= 0xFFFFFFFFull || g_compat32) {
    // The encoder wants 32-bit immediates in their sign-extended form.
    r.operands[0] = RegOp(kGpr32[reg]);
    r.operands[1] = ImmOp(static_cast<int32_t>(static_cast<uint32_t>(value)));
  } else {
    r.operands[0] = RegOp(kGpr64[reg]);
    r.operands[1] = ImmOp(static_cast<int64_t>(value));
  }
  return r;
}

class Builder {
 public:
  Builder(Rng& rng, GeneratedSequence& seq, State& state) : rng_(rng), seq_(seq), st_(state) {}

  // Appends one instruction (with the prologue it needs). Returns false if nothing could be
  // generated this time (the caller tries again).
  bool AddTableInstruction(bool allow_stack_ops);
  bool AddStringOp();
  bool AddStackOp();
  // Appends a forward jump (JMP or a Jcc whose flags are defined); returns its item index.
  std::optional<size_t> AddJump();

  uint64_t& rsp() { return rsp_; }

 private:
  struct Pending {
    std::vector<ZydisEncoderRequest> prologue;
    State state;  // state after the prologue
  };

  bool BuildMemory(unsigned size, bool allow_rsp_base, Pending& p, ZydisEncoderOperand* op,
                   ZydisEncoderRequest& req, bool strict_alignment = false);
  uint64_t PickTarget(unsigned size, bool strict_alignment = false);
  int PickScratchReg(const Pending& p);
  bool Commit(const Pending& p, const ZydisEncoderRequest& req, uint32_t entry_flags);
  void ApplyEffects(const Decoded& d, State& s);

  Rng& rng_;
  GeneratedSequence& seq_;
  State& st_;
  uint64_t rsp_ = kStackTop;
};

uint64_t Builder::PickTarget(unsigned size, bool strict_alignment) {
  const unsigned span = std::max(size, 1u);
  uint64_t off = rng_.Below(kRegionHi - kRegionLo - span);
  const unsigned align = std::min(span, 64u);
  // Misaligned operands are tested, but rarely where they fault (legacy SSE), since a fault
  // ends the sequence.
  static const bool sse_misaligned_off =
      GetKnownFailures().generator.count("sse-misaligned-memory") != 0;
  const unsigned aligned_percent = strict_alignment ? (sse_misaligned_off ? 100 : 99) : 90;
  if (rng_.Chance(aligned_percent)) off &= ~static_cast<uint64_t>(align - 1);
  return kRegionLo + off;
}

int Builder::PickScratchReg(const Pending& p) {
  (void)p;
  for (;;) {
    const int r = static_cast<int>(rng_.Below(GprCount()));
    if (r != kRsp) return r;
  }
}

// Builds a memory operand of `size` bytes that addresses the data region, adding prologue
// moves to `p` when no register holds a usable value.
bool Builder::BuildMemory(unsigned size, bool allow_rsp_base, Pending& p, ZydisEncoderOperand* op,
                          ZydisEncoderRequest& req, bool strict_alignment) {
  std::memset(op, 0, sizeof(*op));
  op->type = ZYDIS_OPERAND_TYPE_MEMORY;
  op->mem.size = static_cast<ZyanU16>(size);
  const uint64_t linear_target = PickTarget(size, strict_alignment);
  const unsigned mode = static_cast<unsigned>(rng_.Below(100));
  auto fits32 = [](int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; };
  // Sometimes through a GS override: the effective address is then the target minus the GS
  // base (64-bit code only; GS is a null selector in 32-bit code).
  const bool use_gs = !g_compat32 && rng_.Chance(10);
  if (use_gs) req.prefixes |= ZYDIS_ATTRIB_HAS_SEGMENT_GS;
  const uint64_t target = use_gs ? linear_target - kDefaultGsBase : linear_target;

  if (mode < 12 && !g_compat32) {  // RIP-relative
    op->mem.base = ZYDIS_REGISTER_RIP;
    op->mem.displacement = static_cast<int64_t>(target);
    return true;
  }
  if (mode < 17) {  // absolute disp32 (in 32-bit code also the ModRM disp32 form)
    op->mem.displacement = static_cast<int64_t>(target);
    return true;
  }
  const bool a32 = mode >= 90 || g_compat32;
  // With a 32-bit address size the offset wraps at 4 GiB before the GS base is added: it must
  // be a non-negative 32-bit value.
  if (use_gs && a32 && linear_target < kDefaultGsBase) return false;
  auto usable_base = [&](int r) {
    if (!p.state.known[r]) return false;
    const uint64_t v = *p.state.known[r];
    if (a32 && v > 0xFFFFFFFFull) return false;
    return fits32(static_cast<int64_t>(target - v));
  };
  // Base register.
  int base = -1;
  if (mode >= 17 && mode < 25) {
    base = -1;  // index only
  } else if (allow_rsp_base && (!a32 || g_compat32) && rng_.Chance(12)) {
    base = kRsp;
  } else {
    std::vector<int> candidates;
    for (int r = 0; r < GprCount(); ++r) {
      if (r != kRsp && usable_base(r)) candidates.push_back(r);
    }
    if (!candidates.empty() && rng_.Chance(75)) {
      base = candidates[rng_.Below(candidates.size())];
    } else {
      base = PickScratchReg(p);
      const int64_t bias = rng_.Chance(30) ? 0 : rng_.Range(-0x300, 0x300);
      const uint64_t value = target - static_cast<uint64_t>(bias);
      p.prologue.push_back(MovImm(base, value));
      p.state.known[base] = value;
    }
  }
  const uint64_t base_value = base < 0 ? 0 : (base == kRsp ? rsp_ : *p.state.known[base]);
  // Index register (not RSP).
  int index = -1;
  unsigned scale = 0;
  if (base < 0 || rng_.Chance(45)) {
    scale = 1u << rng_.Below(4);
    std::vector<int> candidates;
    for (int r = 0; r < GprCount(); ++r) {
      if (r == kRsp || !p.state.known[r]) continue;
      const uint64_t v = *p.state.known[r];
      if (a32 && v > 0xFFFFFFFFull) continue;
      const int64_t disp = static_cast<int64_t>(target - base_value - v * scale);
      if (fits32(disp)) candidates.push_back(r);
    }
    if (!candidates.empty() && rng_.Chance(70)) {
      index = candidates[rng_.Below(candidates.size())];
    } else {
      index = PickScratchReg(p);
      const uint64_t value = base < 0
                                 ? target / scale - rng_.Below(0x40)
                                 : static_cast<uint64_t>(rng_.Range(-0x40, 0x40)) & 0xFFFFFFFFull;
      p.prologue.push_back(MovImm(index, value));
      p.state.known[index] = value;
      if (base == index) return false;  // the base's value just changed
    }
  }
  const uint64_t index_value = index < 0 ? 0 : *p.state.known[index];
  if (base >= 0 && base != kRsp && !p.state.known[base]) return false;
  const uint64_t base_now = base < 0 ? 0 : (base == kRsp ? rsp_ : *p.state.known[base]);
  uint64_t ea = base_now + index_value * scale;
  if (a32) ea &= 0xFFFFFFFFull;
  const int64_t disp = static_cast<int64_t>(target - ea);
  if (!fits32(disp)) return false;
  if (a32) {
    op->mem.base = base < 0 ? ZYDIS_REGISTER_NONE : kGpr32[base];
    op->mem.index = index < 0 ? ZYDIS_REGISTER_NONE : kGpr32[index];
    if (!g_compat32) req.address_size_hint = ZYDIS_ADDRESS_SIZE_HINT_32;
  } else {
    op->mem.base = base < 0 ? ZYDIS_REGISTER_NONE : kGpr64[base];
    op->mem.index = index < 0 ? ZYDIS_REGISTER_NONE : kGpr64[index];
  }
  op->mem.scale = static_cast<ZyanU8>(index < 0 ? 0 : scale);
  op->mem.displacement = disp;
  return true;
}

void Builder::ApplyEffects(const Decoded& d, State& s) {
  // Zydis 4.0 does not list the implicit RSI/RDI updates of every string instruction (CMPS,
  // SCAS...): treat every register a string instruction can touch as changed.
  if (d.insn.meta.category == ZYDIS_CATEGORY_STRINGOP) {
    for (int r : {kRax, kRcx, kRsi, kRdi}) s.known[r].reset();
  }
  for (unsigned i = 0; i < d.insn.operand_count; ++i) {
    const ZydisDecodedOperand& o = d.ops[i];
    if (o.type != ZYDIS_OPERAND_TYPE_REGISTER || !(o.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE)) {
      continue;
    }
    const int g = GprIndex(o.reg.value);
    if (g >= 0 && g != kRsp) s.known[g].reset();
  }
  if (d.insn.cpu_flags) {
    const ZydisAccessedFlags& f = *d.insn.cpu_flags;
    const uint64_t undefined = f.undefined & 0xFFF;
    uint64_t defined = (f.modified | f.set_0 | f.set_1) & 0xFFF & ~undefined;
    if (ShiftCountMayBeZero(d.insn, d.ops)) defined = 0;
    s.undef = (s.undef & ~defined) | undefined;
    if (f.set_0 & ZYDIS_CPUFLAG_DF) s.df = false;
    if (f.set_1 & ZYDIS_CPUFLAG_DF) s.df = true;
  }
}

// Checks the encoded instruction and, if it is acceptable, appends prologue + instruction.
bool Builder::Commit(const Pending& p, const ZydisEncoderRequest& req, uint32_t entry_flags) {
  uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
  size_t len = 0;
  if (!EncodeAt(req, kCodeVa, buf, &len)) return false;
  Decoded d;
  if (!DecodeBytes(buf, len, &d)) return false;
  const bool stack_op =
      d.insn.mnemonic == ZYDIS_MNEMONIC_PUSH || d.insn.mnemonic == ZYDIS_MNEMONIC_POP;
  for (unsigned i = 0; i < d.insn.operand_count; ++i) {
    const ZydisDecodedOperand& o = d.ops[i];
    if (o.type == ZYDIS_OPERAND_TYPE_REGISTER && (o.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE)) {
      if (GprIndex(o.reg.value) == kRsp && !stack_op) return false;
    }
    if (o.type == ZYDIS_OPERAND_TYPE_MEMORY && o.visibility == ZYDIS_OPERAND_VISIBILITY_HIDDEN &&
        !(entry_flags & kNoAccess)) {
      const int b = GprIndex(o.mem.base);
      if (b == kRsp) continue;
      if (b < 0 || !p.state.known[b]) return false;
      const uint64_t addr = *p.state.known[b] + static_cast<uint64_t>(o.mem.disp.value);
      if (addr < kRegionLo || addr + 64 > kRegionHi) return false;
    }
    if (o.type == ZYDIS_OPERAND_TYPE_MEMORY && o.mem.type == ZYDIS_MEMOP_TYPE_VSIB) return false;
  }
  if (d.insn.cpu_flags && (d.insn.cpu_flags->tested & p.state.undef)) return false;
  for (const ZydisEncoderRequest& pro : p.prologue) {
    if (!EncodeAt(pro, kCodeVa, buf, &len)) return false;
  }
  // Accepted.
  for (const ZydisEncoderRequest& pro : p.prologue) seq_.items.push_back(SeqItem{pro, false, 0});
  seq_.items.push_back(SeqItem{req, false, 0});
  st_ = p.state;
  ApplyEffects(d, st_);
  if (d.insn.mnemonic == ZYDIS_MNEMONIC_PUSH) rsp_ -= d.insn.operand_width / 8;
  if (d.insn.mnemonic == ZYDIS_MNEMONIC_POP) rsp_ += d.insn.operand_width / 8;
  return true;
}

bool Builder::AddTableInstruction(bool allow_stack_ops) {
  (void)allow_stack_ops;
  const std::vector<ParsedEntry>& table = Table();
  uint64_t pick = rng_.Below(TotalWeight());
  const ParsedEntry* pe = &table[0];
  for (const ParsedEntry& e : table) {
    if (pick < e.entry->weight) {
      pe = &e;
      break;
    }
    pick -= e.entry->weight;
  }
  const Entry& entry = *pe->entry;
  if (g_compat32 &&
      GetKnownFailures().mnemonics32.count(ToUpper(ZydisMnemonicGetString(entry.mnemonic)))) {
    return false;  // left out of 32-bit sequences until fixed
  }
  for (int attempt = 0; attempt < 24; ++attempt) {
    const std::vector<std::string>& form = pe->forms[rng_.Below(pe->forms.size())];
    unsigned S;
    if (entry.flags & kSizes64) {
      S = 8;
    } else if (entry.flags & kSizes32Up) {
      S = rng_.Chance(50) ? 4 : 8;
    } else if (entry.flags & kSizes16Up) {
      S = 2u << rng_.Below(3);
    } else {
      S = 1u << rng_.Below(4);
    }
    if (g_compat32 && S == 8) S = 4;
    unsigned VL = 16;
    if (entry.flags & kVex) VL = rng_.Chance(50) ? 16 : 32;
    if (entry.flags & kEvex) VL = 16u << rng_.Below(3);
    const bool high_regs = (entry.flags & kEvex) && rng_.Chance(35);
    auto vec_index = [&]() {
      if (g_compat32) return static_cast<int>(rng_.Below(8));
      if (entry.flags & kLegacySse || entry.flags & kVex) return static_cast<int>(rng_.Below(16));
      return static_cast<int>(rng_.Below(high_regs ? 32 : 16));
    };

    Pending p;
    p.state = st_;
    ZydisEncoderRequest req = NewRequest(entry.mnemonic);
    if (entry.flags & kDivide) {
      // Make the dividend's high part small so most divisions do not overflow (before the
      // operands are built, so a memory operand's registers stay valid).
      if (rng_.Chance(85)) {
        ZydisEncoderRequest pre;
        if (S == 1) {
          pre = NewRequest(ZYDIS_MNEMONIC_MOVZX);
          pre.operand_count = 2;
          pre.operands[0] = RegOp(ZYDIS_REGISTER_EAX);
          pre.operands[1] = RegOp(ZYDIS_REGISTER_AL);
          p.state.known[kRax].reset();
        } else {
          pre = NewRequest(ZYDIS_MNEMONIC_XOR);
          pre.operand_count = 2;
          pre.operands[0] = RegOp(ZYDIS_REGISTER_EDX);
          pre.operands[1] = RegOp(ZYDIS_REGISTER_EDX);
          p.state.known[kRdx] = 0;
          p.state.undef = 0;
        }
        p.prologue.push_back(pre);
      }
    }
    bool ok = true;
    bool has_mem_dest = false;
    for (size_t i = 0; i < form.size() && ok; ++i) {
      const std::string& t = form[i];
      ZydisEncoderOperand op;
      std::memset(&op, 0, sizeof(op));
      auto size_of = [&](const std::string& tok, size_t prefix) -> unsigned {
        if (tok.size() == prefix) return S;
        return static_cast<unsigned>(std::stoi(tok.substr(prefix))) / 8;
      };
      auto gpr_operand = [&](unsigned bytes) {
        int r = static_cast<int>(rng_.Below(GprCount()));
        if (i == 0 && r == kRsp) r = kRax;
        if (bytes == 1 && rng_.Chance(12)) return RegOp(kHighByte[rng_.Below(4)]);
        return RegOp(Gpr(r, bytes));
      };
      auto vec_mem = [&](unsigned bytes) {
        if (!BuildMemory(bytes, true, p, &op, req, (entry.flags & (kLegacySse | kAligned)) != 0)) {
          ok = false;
        }
        if (i == 0) has_mem_dest = true;
      };
      if (t[0] == 'g') {
        op = gpr_operand(size_of(t, 1));
      } else if (t[0] == 'e') {
        const unsigned bytes = size_of(t, 1);
        if (rng_.Chance(55)) {
          op = gpr_operand(bytes);
        } else {
          vec_mem(bytes);
        }
      } else if (t == "mv") {
        vec_mem(VL);
      } else if (t[0] == 'm') {
        vec_mem(size_of(t, 1));
      } else if (t == "i" || t == "i8") {
        const unsigned bytes = t == "i8" ? 1 : std::min(S, 4u);
        int64_t v;
        switch (rng_.Below(5)) {
          case 0:
            v = rng_.Range(-2, 2);
            break;
          case 1:
            v = rng_.Range(-128, 127);
            break;
          default: {
            const uint64_t bits = rng_.Next() & (bytes == 8 ? ~0ull : ((1ull << (8 * bytes)) - 1));
            v = static_cast<int64_t>(bits << (64 - 8 * bytes)) >> (64 - 8 * bytes);
          }
        }
        op = ImmOp(v);
      } else if (t == "one") {
        op = ImmOp(1);
      } else if (t == "c") {
        op = RegOp(ZYDIS_REGISTER_CL);
      } else if (t == "x" || t == "y" || t == "z" || t == "v" || t == "vh" || t == "vq") {
        const unsigned bytes = t == "x"    ? 16
                               : t == "y"  ? 32
                               : t == "z"  ? 64
                               : t == "v"  ? VL
                               : t == "vh" ? std::max(16u, VL / 2)
                                           : std::max(16u, VL / 4);
        op = RegOp(VectorReg(bytes, vec_index()));
      } else if (t == "xm" || t == "ym" || t == "vm" || t == "vhm" || t == "vqm" || t == "b") {
        const unsigned bytes = t == "xm"                 ? 16
                               : t == "ym"               ? 32
                               : (t == "vm" || t == "b") ? VL
                               : t == "vhm"              ? VL / 2
                                                         : VL / 4;
        if (rng_.Chance(55)) {
          op = RegOp(VectorReg(std::max(16u, bytes), vec_index()));
        } else if (t == "b" && rng_.Chance(40)) {
          const unsigned elem = rng_.Chance(50) ? 4 : 8;
          vec_mem(elem);
          const unsigned n = VL / elem;
          req.evex.broadcast = n == 2   ? ZYDIS_BROADCAST_MODE_1_TO_2
                               : n == 4 ? ZYDIS_BROADCAST_MODE_1_TO_4
                               : n == 8 ? ZYDIS_BROADCAST_MODE_1_TO_8
                                        : ZYDIS_BROADCAST_MODE_1_TO_16;
        } else {
          vec_mem(bytes);
        }
      } else if (t == "st0") {
        op = RegOp(ZYDIS_REGISTER_ST0);
      } else if (t == "sti") {
        op = RegOp(static_cast<ZydisRegister>(ZYDIS_REGISTER_ST0 + rng_.Below(8)));
      } else if (t == "k") {
        op = RegOp(static_cast<ZydisRegister>(ZYDIS_REGISTER_K0 + rng_.Below(8)));
      } else if (t == "kw") {
        const unsigned k = rng_.Chance(30) ? 0 : static_cast<unsigned>(rng_.Range(1, 7));
        op = RegOp(static_cast<ZydisRegister>(ZYDIS_REGISTER_K0 + k));
        if (k != 0 && rng_.Chance(40)) req.evex.zeroing_mask = ZYAN_TRUE;
      } else {
        ok = false;
      }
      req.operands[req.operand_count++] = op;
    }
    if (!ok) continue;
    if ((entry.flags & kLockable) && has_mem_dest && rng_.Chance(30)) {
      req.prefixes |= ZYDIS_ATTRIB_HAS_LOCK;
    }
    if ((entry.flags & kEvex) && VL == 64 && rng_.Chance(5) && req.operand_count >= 3 &&
        req.operands[req.operand_count - 1].type == ZYDIS_OPERAND_TYPE_REGISTER) {
      req.evex.rounding =
          static_cast<ZydisRoundingMode>(ZYDIS_ROUNDING_MODE_RN + static_cast<int>(rng_.Below(4)));
    }
    if (entry.flags & kMaskDi) {
      const uint64_t target = PickTarget(16);
      p.prologue.push_back(MovImm(kRdi, target));
      p.state.known[kRdi] = target;
    }
    if (Commit(p, req, entry.flags)) return true;
  }
  return false;
}

bool Builder::AddStringOp() {
  static const ZydisMnemonic kOps[5][4] = {
      {ZYDIS_MNEMONIC_MOVSB, ZYDIS_MNEMONIC_MOVSW, ZYDIS_MNEMONIC_MOVSD, ZYDIS_MNEMONIC_MOVSQ},
      {ZYDIS_MNEMONIC_STOSB, ZYDIS_MNEMONIC_STOSW, ZYDIS_MNEMONIC_STOSD, ZYDIS_MNEMONIC_STOSQ},
      {ZYDIS_MNEMONIC_LODSB, ZYDIS_MNEMONIC_LODSW, ZYDIS_MNEMONIC_LODSD, ZYDIS_MNEMONIC_LODSQ},
      {ZYDIS_MNEMONIC_CMPSB, ZYDIS_MNEMONIC_CMPSW, ZYDIS_MNEMONIC_CMPSD, ZYDIS_MNEMONIC_CMPSQ},
      {ZYDIS_MNEMONIC_SCASB, ZYDIS_MNEMONIC_SCASW, ZYDIS_MNEMONIC_SCASD, ZYDIS_MNEMONIC_SCASQ}};
  const unsigned op = static_cast<unsigned>(rng_.Below(5));
  const unsigned size_log = static_cast<unsigned>(rng_.Below(4));
  const unsigned size = 1u << size_log;
  const bool rep = rng_.Chance(70);
  const uint64_t count = rep ? rng_.Below(40) : 1;
  Pending p;
  p.state = st_;
  // Direction.
  if (!p.state.df || rng_.Chance(20)) {
    const bool down = rng_.Chance(30);
    ZydisEncoderRequest r = NewRequest(down ? ZYDIS_MNEMONIC_STD : ZYDIS_MNEMONIC_CLD);
    p.prologue.push_back(r);
    p.state.df = down;
  }
  const bool down = *p.state.df;
  const uint64_t span = (count + 1) * size;
  static const bool down_straddle_off =
      GetKnownFailures().generator.count("string-down-straddle") != 0;
  auto pick = [&]() {
    uint64_t a = kRegionLo + 64 + rng_.Below(kRegionHi - kRegionLo - 2 * span - 128);
    if (rng_.Chance(70) || (down && down_straddle_off)) a &= ~static_cast<uint64_t>(size - 1);
    return down ? a + span : a;
  };
  const bool a32 = rng_.Chance(15);
  const uint64_t src = pick(), dst = pick();
  p.prologue.push_back(MovImm(kRsi, src));
  p.prologue.push_back(MovImm(kRdi, dst));
  p.state.known[kRsi] = src;
  p.state.known[kRdi] = dst;
  if (rep) {
    p.prologue.push_back(MovImm(kRcx, count));
    p.state.known[kRcx] = count;
  }
  ZydisEncoderRequest req = NewRequest(kOps[op][size_log]);
  if (rep) {
    if (op >= 3) {
      req.prefixes = rng_.Chance(50) ? ZYDIS_ATTRIB_HAS_REPE : ZYDIS_ATTRIB_HAS_REPNE;
    } else {
      req.prefixes = ZYDIS_ATTRIB_HAS_REP;
    }
  }
  if (a32) req.address_size_hint = ZYDIS_ADDRESS_SIZE_HINT_32;
  return Commit(p, req, kNoAccess);
}

bool Builder::AddStackOp() {
  Pending p;
  p.state = st_;
  const unsigned kind = static_cast<unsigned>(rng_.Below(6));
  const bool can_pop = rsp_ + 8 <= kStackLimitHi;
  const bool can_push = rsp_ - 8 >= kStackLimitLo;
  ZydisEncoderRequest req;
  if (kind <= 2 && can_push) {
    req = NewRequest(ZYDIS_MNEMONIC_PUSH);
    req.operand_count = 1;
    if (kind == 0) {
      const int r = static_cast<int>(rng_.Below(GprCount()));
      req.operands[0] = RegOp(rng_.Chance(15) ? kGpr16[r] : (g_compat32 ? kGpr32[r] : kGpr64[r]));
    } else if (kind == 1) {
      req.operands[0] =
          ImmOp(rng_.Chance(50) ? rng_.Range(-128, 127) : rng_.Range(INT32_MIN, INT32_MAX));
    } else {
      ZydisEncoderOperand op;
      if (!BuildMemory(8, false, p, &op, req)) return false;
      req.operands[0] = op;
    }
  } else if (kind <= 4 && can_pop) {
    req = NewRequest(ZYDIS_MNEMONIC_POP);
    req.operand_count = 1;
    if (kind == 3) {
      int r = static_cast<int>(rng_.Below(GprCount()));
      if (r == kRsp) r = kRbx;
      req.operands[0] = RegOp(g_compat32 ? kGpr32[r] : kGpr64[r]);
    } else {
      ZydisEncoderOperand op;
      if (!BuildMemory(8, false, p, &op, req)) return false;
      req.operands[0] = op;
    }
  } else if (kind == 5 && can_push) {
    // call next ; pop reg: pushes the (guest) return address, identical in both runs.
    ZydisEncoderRequest call = NewRequest(ZYDIS_MNEMONIC_CALL);
    call.operand_count = 1;
    call.operands[0] = ImmOp(0);
    call.branch_width = ZYDIS_BRANCH_WIDTH_32;
    for (const ZydisEncoderRequest& pro : p.prologue) seq_.items.push_back(SeqItem{pro, false, 0});
    seq_.items.push_back(SeqItem{call, true, 0});
    int r = static_cast<int>(rng_.Below(GprCount()));
    if (r == kRsp) r = kRbp;
    ZydisEncoderRequest pop = NewRequest(ZYDIS_MNEMONIC_POP);
    pop.operand_count = 1;
    pop.operands[0] = RegOp(g_compat32 ? kGpr32[r] : kGpr64[r]);
    seq_.items.push_back(SeqItem{pop, false, 0});
    st_ = p.state;
    st_.known[r].reset();
    return true;
  } else {
    return false;
  }
  return Commit(p, req, 0);
}

std::optional<size_t> Builder::AddJump() {
  static const ZydisMnemonic kJumps[] = {
      ZYDIS_MNEMONIC_JMP,  ZYDIS_MNEMONIC_JO,    ZYDIS_MNEMONIC_JNO,  ZYDIS_MNEMONIC_JB,
      ZYDIS_MNEMONIC_JNB,  ZYDIS_MNEMONIC_JZ,    ZYDIS_MNEMONIC_JNZ,  ZYDIS_MNEMONIC_JBE,
      ZYDIS_MNEMONIC_JNBE, ZYDIS_MNEMONIC_JS,    ZYDIS_MNEMONIC_JNS,  ZYDIS_MNEMONIC_JP,
      ZYDIS_MNEMONIC_JNP,  ZYDIS_MNEMONIC_JL,    ZYDIS_MNEMONIC_JNL,  ZYDIS_MNEMONIC_JLE,
      ZYDIS_MNEMONIC_JNLE, ZYDIS_MNEMONIC_JRCXZ, ZYDIS_MNEMONIC_JECXZ};
  for (int attempt = 0; attempt < 8; ++attempt) {
    ZydisEncoderRequest req = NewRequest(kJumps[rng_.Below(std::size(kJumps))]);
    if (g_compat32 && req.mnemonic == ZYDIS_MNEMONIC_JRCXZ) continue;
    req.operand_count = 1;
    req.operands[0] = ImmOp(static_cast<int64_t>(kCodeVa + 0x40));
    const bool short_only =
        req.mnemonic == ZYDIS_MNEMONIC_JRCXZ || req.mnemonic == ZYDIS_MNEMONIC_JECXZ;
    req.branch_width = short_only || rng_.Chance(60) ? ZYDIS_BRANCH_WIDTH_8 : ZYDIS_BRANCH_WIDTH_32;
    uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
    size_t len;
    if (!EncodeAt(req, kCodeVa, buf, &len)) continue;
    Decoded d;
    if (!DecodeBytes(buf, len, &d)) continue;
    if (d.insn.cpu_flags && (d.insn.cpu_flags->tested & st_.undef)) continue;
    seq_.items.push_back(SeqItem{req, true, 0});
    return seq_.items.size() - 1;
  }
  return std::nullopt;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

GeneratedSequence SequenceGenerator::Generate(uint64_t index) const {
  Rng rng(seed_ * 0x9E3779B97F4A7C15ull ^ (index + 1) * 0xD1B54A32D192ED03ull);
  // Every fifth sequence is 32-bit code for compatibility mode.
  const bool compat32 = index % 5 == 4;
  struct ModeScope {
    explicit ModeScope(bool compat) { g_compat32 = compat; }
    ~ModeScope() { g_compat32 = false; }
  } mode_scope(compat32);
  GeneratedSequence seq;
  seq.input = MakeDefaultInput(
      fmt::format("random seed={} index={}{}", seed_, index, compat32 ? " (32-bit)" : ""), {},
      rng.Next());
  DiffInput& in = seq.input;
  in.compat32 = compat32;
  // Some registers start as pointers into the data region, some as small numbers.
  const int pointers = static_cast<int>(rng.Range(2, 6));
  for (int i = 0; i < pointers; ++i) {
    int r = static_cast<int>(rng.Below(16));
    if (r == kRsp) continue;
    in.init.gpr[r] = kRegionLo + (rng.Below(kRegionHi - kRegionLo - 64) & ~7ull);
  }
  for (int i = 0; i < 2; ++i) {
    int r = static_cast<int>(rng.Below(16));
    if (r != kRsp) in.init.gpr[r] = rng.Below(64);
  }
  in.init.rflags = rflags::kFixed1 | (rng.Next() & rflags::kArith);
  if (rng.Chance(15)) in.init.rflags |= rflags::kDf;
  // Sometimes other rounding modes, DAZ/FTZ, x87 precision control (exceptions stay masked).
  if (rng.Chance(30)) {
    uint32_t mxcsr = 0x1F80 | static_cast<uint32_t>(rng.Below(4) << 13);
    if (rng.Chance(50)) mxcsr |= 0x0040;  // DAZ
    if (rng.Chance(50)) mxcsr |= 0x8000;  // FTZ
    testing::WriteMxcsr(in.init.xsave, mxcsr);
    const uint16_t fcw = static_cast<uint16_t>(0x037F & ~0x0F00) |
                         static_cast<uint16_t>(rng.Below(4) << 10) |
                         static_cast<uint16_t>((rng.Chance(50) ? 3 : rng.Below(4)) << 8);
    std::memcpy(in.init.xsave + testing::kFcwOffset, &fcw, 2);
  }

  State st;
  for (int i = 0; i < GprCount(); ++i) {
    // 32-bit code sees (and addresses with) the low halves only.
    if (i != kRsp) st.known[i] = compat32 ? in.init.gpr[i] & 0xFFFFFFFFull : in.init.gpr[i];
  }
  st.df = (in.init.rflags & rflags::kDf) != 0;
  Builder b(rng, seq, st);

  const int length = static_cast<int>(rng.Range(4, 40));
  struct Region {
    size_t jump_item;
    int remaining;
    State at_jump;
  };
  std::optional<Region> region;
  for (int n = 0; n < length; ++n) {
    const unsigned what = static_cast<unsigned>(rng.Below(100));
    bool added = false;
    if (what < 7 && !region && n + 2 < length) {
      if (auto j = b.AddJump()) {
        region = Region{*j, static_cast<int>(rng.Range(1, 4)), st};
        continue;
      }
    } else if (what < 12) {
      added = b.AddStringOp();
    } else if (what < 18 && !region) {
      added = b.AddStackOp();
    }
    for (int tries = 0; !added && tries < 16; ++tries) added = b.AddTableInstruction(!region);
    if (region && --region->remaining == 0) {
      seq.items[region->jump_item].skip =
          static_cast<int>(seq.items.size() - region->jump_item - 1);
      st = Merge(st, region->at_jump);
      region.reset();
    }
  }
  if (region) {
    seq.items[region->jump_item].skip = static_cast<int>(seq.items.size() - region->jump_item - 1);
  }
  if (!Layout(seq.items, &in.code, &seq.layout_error)) in.code.clear();
  return seq;
}

bool Layout(const std::vector<SeqItem>& items, std::vector<uint8_t>* code, std::string* error) {
  auto fail = [&](size_t i, const char* what) {
    if (error) {
      *error = fmt::format("item {} ({}, {} operands, jump={} skip={}): {}", i,
                           ZydisMnemonicGetString(items[i].request.mnemonic),
                           items[i].request.operand_count, items[i].is_jump, items[i].skip, what);
    }
    return false;
  };
  const size_t n = items.size();
  std::vector<ZydisEncoderRequest> reqs(n);
  for (size_t i = 0; i < n; ++i) reqs[i] = items[i].request;
  std::vector<uint64_t> addr(n + 1, kCodeVa);
  // Lengths do not depend on addresses (RIP-relative displacements are always 32 bits), except
  // for jumps whose width may have to grow; iterate until stable.
  for (int round = 0; round < 8; ++round) {
    uint64_t a = kCodeVa;
    for (size_t i = 0; i < n; ++i) {
      addr[i] = a;
      uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
      size_t len = 0;
      ZydisEncoderRequest r = reqs[i];
      if (items[i].is_jump) r.operands[0].imm.u = a;  // placeholder target: always encodable
      if (!EncodeAt(r, a, buf, &len)) return fail(i, "does not encode");
      a += len;
    }
    addr[n] = a;
    bool changed = false;
    for (size_t i = 0; i < n; ++i) {
      if (!items[i].is_jump) continue;
      const size_t target = std::min(n, i + 1 + static_cast<size_t>(items[i].skip));
      reqs[i].operands[0].imm.u = addr[target];
      uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
      size_t len = 0;
      if (!EncodeAt(reqs[i], addr[i], buf, &len)) {
        if (reqs[i].branch_width == ZYDIS_BRANCH_WIDTH_8 &&
            reqs[i].mnemonic != ZYDIS_MNEMONIC_JRCXZ && reqs[i].mnemonic != ZYDIS_MNEMONIC_JECXZ) {
          reqs[i].branch_width = ZYDIS_BRANCH_WIDTH_32;
          changed = true;
        } else {
          return fail(i, "jump target out of range");
        }
      }
    }
    if (!changed) break;
  }
  code->clear();
  for (size_t i = 0; i < n; ++i) {
    uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
    size_t len = 0;
    if (!EncodeAt(reqs[i], addr[i], buf, &len)) return fail(i, "does not encode at its address");
    code->insert(code->end(), buf, buf + len);
  }
  if (code->size() > kMaxSequenceBytes) return fail(0, "sequence too long");
  return true;
}

namespace {

// What kind of difference a report shows: the native outcome plus the first differing item
// ("outcome", "rflags", "rax", "zmm3", "mem"...). Minimization keeps this fixed, so that it does
// not wander off to an unrelated difference created by removing a register setup.
std::string FailureSignature(const DiffInput& in, const RoveRunOptions& options) {
  Outcome native, rove;
  const std::string report = RunDifferential(in, options, &native, &rove);
  if (report.empty()) return "";
  std::string key;
  const size_t nl = report.find('\n');
  if (nl != std::string::npos) {
    std::istringstream line(report.substr(nl + 1));
    line >> key;
    if (key.rfind("mem[", 0) == 0) key = "mem";
  }
  return (native.exception ? "vector " + std::to_string(native.vector) : "completed") + " " + key;
}

}  // namespace

std::vector<SeqItem> MinimizeFailure(const GeneratedSequence& seq, const RoveRunOptions& options,
                                     int max_runs) {
  std::vector<SeqItem> best = seq.items;
  const std::string signature = FailureSignature(seq.input, options);
  if (signature.empty()) return best;
  int runs = 0;
  auto fails = [&](const std::vector<SeqItem>& items) {
    DiffInput in = seq.input;
    if (!Layout(items, &in.code)) return false;
    ++runs;
    return FailureSignature(in, options) == signature;
  };
  bool progress = true;
  while (progress && runs < max_runs) {
    progress = false;
    for (size_t i = 0; i < best.size() && runs < max_runs; ++i) {
      std::vector<SeqItem> candidate = best;
      // Keep jump distances pointing at the same items.
      for (size_t j = 0; j < i; ++j) {
        if (candidate[j].is_jump && static_cast<size_t>(candidate[j].skip) + j >= i) {
          candidate[j].skip = std::max(0, candidate[j].skip - 1);
        }
      }
      candidate.erase(candidate.begin() + static_cast<ptrdiff_t>(i));
      if (fails(candidate)) {
        best = std::move(candidate);
        progress = true;
        --i;
      }
    }
  }
  return best;
}

}  // namespace rove::difftest
