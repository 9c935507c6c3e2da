; AVX-512 (EVEX): ZMM0-31, opmask merge and zero masking, embedded broadcast, compressed disp8*N
; displacements, masked loads and stores (masked-off lanes beyond the mapped region must not
; fault), opmask instructions (KORTEST/KTEST set RFLAGS), compares into masks, compress/expand,
; down-converting stores, gathers and scatters, embedded rounding and SAE, and instructions from
; the DQ, BW, CD, VBMI, IFMA, VNNI, BITALG, VPOPCNTDQ, BF16 and FP16 extensions.
%include "prelude.inc"

%define V DATA(0x1000)
%define OUT DATA(0x2000)
%define REGION_END DATA(DATA_SIZE)

CASE avx512_moves
  vmovdqu64 zmm0, [V]
  vmovdqa32 zmm1, [V + 64]
  vmovdqu8 zmm2, [V + 3]
  vmovups zmm16, [V + 128]
  vmovapd zmm31, zmm0
  vmovdqu32 [OUT], zmm1
  vmovdqu16 [OUT + 65], zmm2
  vmovntdq [OUT + 192], zmm16
  vmovdqu64 ymm17, [V + 32]
  vmovdqu32 xmm18, xmm31
  vmovq xmm19, rax
  vmovd ebx, xmm31
  vpextrq rcx, xmm16, 1
  vextracti64x4 ymm20, zmm0, 1
  vinserti32x4 zmm21, zmm1, [V + 16], 3
  vextractf32x4 [OUT + 256], zmm16, 2
  vshufi64x2 zmm22, zmm0, zmm1, 0x4E
CASE avx512_disp8n_compression
  lea rax, [V]
  vmovdqu32 zmm0, [rax + 64]
  vmovdqu32 zmm1, [rax + 128 * 3 - 64]
  vmovdqu64 ymm2, [rax + 32 * 5]
  vpaddd zmm3, zmm0, [rax + 64 * 2]
  vpaddd zmm4, zmm0, [rax + 4 * 7]{1to16}
  vpaddq zmm5, zmm0, [rax - 8 * 3]{1to8}
  vmovdqu32 zmm6, [rax + 65]
  vmovdqu32 [rax + 64 * 20], zmm1
CASE avx512_masking
  vmovdqu64 zmm0, [V]
  vmovdqu64 zmm1, [V + 64]
  mov eax, 0xA5C3
  kmovw k1, eax
  mov eax, 0x3C
  kmovb k2, eax
  vpaddd zmm2{k1}, zmm0, zmm1
  vpaddd zmm3{k1}{z}, zmm0, zmm1
  vpsubq zmm4{k2}, zmm0, [V + 128]
  vpsubq zmm5{k2}{z}, zmm0, [V + 128]{1to8}
  vmovdqu32 zmm6{k1}{z}, [V + 4]
  vmovdqu8 zmm7{k1}, [V + 9]
  vmovdqu32 [OUT]{k1}, zmm0
  vmovdqu16 [OUT + 64]{k1}, zmm1
  vmovdqu64 [OUT + 128]{k2}, zmm0
  vblendmps zmm8{k1}, zmm0, zmm1
  vpternlogd zmm9{k1}, zmm0, zmm1, 0x96
CASE avx512_masked_store_beyond_region
  ; Only the lanes inside the data region are enabled; the rest lie in unmapped memory.
  vmovdqu64 zmm0, [V]
  mov eax, 0x000F
  kmovw k1, eax
  vmovdqu32 [REGION_END - 16]{k1}, zmm0
  vmovdqu32 zmm1{k1}{z}, [REGION_END - 16]
  mov rax, 0x0000000000000001
  kmovq k2, rax
  vmovdqu8 [REGION_END - 1]{k2}, zmm0
  vmovdqu8 zmm2{k2}, [REGION_END - 1]
CASE avx512_masked_store_beyond_region_faults
  vmovdqu64 zmm0, [V]
  mov eax, 0x001F
  kmovw k1, eax
  vmovdqu32 [REGION_END - 16]{k1}, zmm0
CASE avx512_zero_mask_load_unmapped
  ; Every element masked off: nothing is read, no fault, even from an unmapped address.
  kxorw k3, k3, k3
  mov rax, 0x50000000
  vbroadcastss zmm1{k3}, [rax]
  vmovdqu32 zmm2{k3}{z}, [rax + 64]
  vpaddd zmm3{k3}, zmm3, [rax + 128]
  vmovdqu32 [rax + 192]{k3}, zmm4
CASE avx512_masked_expand_compress_beyond_region
  ; VPEXPAND/VPCOMPRESS access the first popcount(k) elements only.
  vmovdqu64 zmm0, [V]
  mov eax, 0x8181             ; 4 elements: [REGION_END - 16, REGION_END)
  kmovw k1, eax
  vpexpandd zmm1{k1}{z}, [REGION_END - 16]
  vpcompressd [REGION_END - 16]{k1}, zmm0
CASE avx512_masked_scalar_and_broadcast_unmapped
  mov eax, 0xFFFE             ; bit 0 clear: the scalar and broadcast accesses below are off
  kmovw k2, eax
  mov rax, 0x50000000
  vmovss xmm1{k2}, [rax]
  kxorw k3, k3, k3
  vpaddd zmm2{k3}, zmm2, [rax]{1to16}
  vbroadcasti32x4 zmm3{k3}, [rax]
  mov eax, 0x0F0F             ; lanes 0-3 and 8-11: the first 16 bytes of the 32-byte tuple
  kmovw k4, eax
  vbroadcasti32x8 zmm4{k4}, [REGION_END - 16]
CASE avx512_masked_second_page_mapped
  ; Enabled lanes in one page, masked-off lanes in the next (mapped) page: merged correctly.
  vmovdqu64 zmm0, [V]
  vmovdqu64 zmm5, [V + 64]
  mov eax, 0x00FF
  kmovw k1, eax
  vmovdqu32 zmm5{k1}, [DATA(0x1FE0)]
  vmovdqu32 [DATA(0x2FE0)]{k1}, zmm0
  mov eax, 0xFF00
  kmovw k2, eax
  vmovdqu32 [DATA(0x2FE0)]{k2}, zmm5
CASE avx512_permute_masked_off_still_faults
  ; VPERMD has no fault suppression (class E4NF): the whole operand is read.
  kxorw k1, k1, k1
  vpermd zmm1{k1}, zmm2, [REGION_END - 16]
CASE avx512_opmask_ops
  mov eax, 0xF0F0
  kmovw k1, eax
  mov eax, 0x3C3C
  kmovw k2, eax
  kandw k3, k1, k2
  korw k4, k1, k2
  kxorw k5, k1, k2
  kxnorw k6, k1, k2
  knotw k7, k1
  kandnw k3, k3, k4
  kshiftlw k4, k1, 3
  kshiftrq k5, k2, 60
  kaddw k6, k1, k2
  kunpckbw k7, k1, k2
  mov rax, 0x123456789ABCDEF0
  kmovq k1, rax
  kmovd k2, [V]
  kmovq [OUT], k1
  kmovw ebx, k4
  kmovq rcx, k5
  kmovb k3, [V + 8]
CASE avx512_kortest_ktest_flags
  mov eax, 0xFFFF
  kmovw k1, eax
  kxorw k2, k2, k2
  SETFLAGS FLAGS_SET
  kortestw k1, k2
  setz al
  setc bl
  kortestw k2, k2
  setz cl
  setc dl
  ktestw k1, k1
  setz sil
  setc dil
  kortestq k1, k1
CASE avx512_compare_to_mask
  vmovdqu64 zmm0, [V]
  vmovdqu64 zmm1, [V + 64]
  vpcmpd k1, zmm0, zmm1, 1
  vpcmpud k2, zmm0, zmm1, 6
  vpcmpeqb k3, zmm0, zmm0
  vpcmpgtq k4{k1}, zmm0, [V + 128]
  vcmpps k5, zmm0, zmm1, 0x11
  vptestmd k6, zmm0, zmm1
  vptestnmb k7, zmm0, zmm1
  vpmovd2m k1, zmm0
  vpmovm2b zmm2, k2
  kmovq rax, k3
CASE avx512_compress_expand
  vmovdqu64 zmm0, [V]
  mov eax, 0x5A5A
  kmovw k1, eax
  vpcompressd zmm1{k1}{z}, zmm0
  vpcompressd [OUT]{k1}, zmm0
  vpexpandd zmm2{k1}{z}, [V + 64]
  vcompressps zmm3{k1}, zmm0
  vexpandpd zmm4{k1}, zmm0
CASE avx512_down_convert
  vmovdqu64 zmm0, [V]
  vpmovdb xmm1, zmm0
  vpmovqw [OUT], zmm0
  vpmovsdw ymm2, zmm0
  vpmovusqb xmm3, zmm0
  mov eax, 0x00FF
  kmovw k1, eax
  vpmovdb [OUT + 64]{k1}, zmm0
CASE avx512_gather_scatter
  vmovdqu64 zmm0, [V]
  jmp .go
  align 64
.idx:
  dd 0, 3, 7, 1, -2, 100, 9, 31, 2, 4, 6, 8, 10, 12, 14, 16
.go:
  vmovdqu32 zmm1, [.idx]
  lea rbx, [V + 256]
  kxnorw k1, k1, k1
  vpgatherdd zmm2{k1}, [rbx + zmm1 * 4]
  mov eax, 0x0F0F
  kmovw k2, eax
  vpgatherdd zmm3{k2}, [rbx + zmm1 * 8]
  kxnorw k3, k3, k3
  vpscatterdd [rbx + zmm1 * 4 + 0x400]{k3}, zmm0
  mov eax, 0x00FF
  kmovw k4, eax
  vpscatterdq [rbx + ymm1 * 8 + 0x800]{k4}, zmm0
CASE avx512_rounding_sae
  vmovups zmm0, [V]
  vpsrld zmm0, zmm0, 2
  vmovups zmm1, [V + 64]
  vpsrld zmm1, zmm1, 2
  vaddps zmm2, zmm0, zmm1, {rn-sae}
  vaddps zmm3, zmm0, zmm1, {rd-sae}
  vmulpd zmm4, zmm0, zmm1, {ru-sae}
  vdivps zmm5, zmm0, zmm1, {rz-sae}
  vcvtps2dq zmm6, zmm0, {rz-sae}
  vcmpps k1, zmm0, zmm1, {sae}, 0
  vmaxps zmm7, zmm0, zmm1, {sae}
  vsqrtss xmm8, xmm0, xmm1, {ru-sae}
  vstmxcsr [OUT]
CASE avx512_float_misc
  vmovups zmm0, [V]
  vpsrld zmm0, zmm0, 2
  vmovups zmm1, [V + 64]
  vscalefps zmm2, zmm0, zmm1
  vgetexpps zmm3, zmm0
  vgetmantpd zmm4, zmm0, 0x5
  vrndscaleps zmm5, zmm0, 0x13
  vrcp14ps zmm6, zmm0
  vrsqrt14pd zmm7, zmm0
  vfixupimmps zmm8, zmm0, zmm1, 0x22
  vrangeps zmm9, zmm0, zmm1, 0x5
  vreducepd zmm10, zmm0, 0x14
  vfpclassps k1, zmm0, 0x81
  vfmadd231ps zmm11{k1}, zmm0, [V + 128]{1to16}
  vstmxcsr [OUT]
CASE avx512_integer_extensions
  vmovdqu64 zmm0, [V]
  vmovdqu64 zmm1, [V + 64]
  vmovdqu64 zmm2, [V + 128]
  vpmullq zmm3, zmm0, zmm1
  vcvtqq2pd zmm4, zmm0
  vpconflictd zmm5, zmm0
  vplzcntq zmm6, zmm1
  vpermb zmm7, zmm0, zmm1
  vpermt2d zmm8, zmm0, zmm1
  vpermi2q zmm9, zmm0, zmm2
  vpmultishiftqb zmm10, zmm0, zmm1
  vpmadd52luq zmm11, zmm0, zmm1
  vpmadd52huq zmm12, zmm0, [V + 192]
  vpdpbusd zmm13, zmm0, zmm1
  vpdpwssds zmm14, zmm0, zmm2
  vpopcntd zmm15, zmm0
  vpopcntq zmm16, zmm1
  vpopcntb zmm17, zmm2
  vpshufbitqmb k1, zmm0, zmm1
  vpsllvw zmm18, zmm0, zmm1
  vpsravq zmm19, zmm0, zmm1
  vprold zmm20, zmm0, 13
  vprorvq zmm21, zmm0, zmm1
  vpabsq zmm22, zmm0
  vpminuq zmm23, zmm0, zmm1
  vpsadbw zmm24, zmm0, zmm1
  vdbpsadbw zmm25, zmm0, zmm1, 0x39
  valignd zmm26, zmm0, zmm1, 5
  vpshufb zmm27, zmm0, zmm1
  vgf2p8affineqb zmm28, zmm0, zmm1, 0x11
CASE avx512_bf16
  vmovups zmm0, [V]
  vpsrld zmm0, zmm0, 2
  vmovups zmm1, [V + 64]
  vpsrld zmm1, zmm1, 2
  vcvtne2ps2bf16 zmm2, zmm0, zmm1
  db 0x62, 0xF2, 0x7E, 0x48, 0x72, 0xD8  ; vcvtneps2bf16 ymm3, zmm0
  vdpbf16ps zmm4, zmm2, zmm2
CASE avx512_fp16
  vmovdqu64 zmm0, [V]
  vpsrlw zmm0, zmm0, 2
  vmovdqu64 zmm1, [V + 64]
  vpsrlw zmm1, zmm1, 2
  vaddph zmm2, zmm0, zmm1
  vmulph zmm3, zmm0, zmm1
  vcvtph2psx zmm4, ymm0
  vstmxcsr [OUT]
CASE avx512_high_registers_evex_only
  vmovdqu64 zmm16, [V]
  vmovdqu64 zmm31, [V + 64]
  vpaddq zmm24, zmm16, zmm31
  vpxorq xmm25, xmm16, xmm31
  vpandq ymm26, ymm16, [V + 128]
  vmovdqu64 [OUT], zmm24
  vmovq rax, xmm25
CASE avx512_evex128_zeroes_upper
  vmovdqu64 zmm0, [V]
  vmovdqu64 zmm1, [V + 64]
  vpaddd xmm0, xmm0, xmm1
  vpaddd ymm1, ymm1, ymm1
END_CASES
