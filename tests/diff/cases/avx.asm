; AVX/AVX2/FMA/F16C (VEX): 3-operand forms at 128 and 256 bits with memory operands (VEX.128
; zeroes bits 255:128, legacy SSE does not), broadcasts, permutes, inserts/extracts, masked
; loads and stores (VPMASKMOV/VMASKMOVPS, including masked-off lanes beyond the mapped region),
; gathers, variable shifts, FMA, half-float conversion, VZEROUPPER/VZEROALL, VPTEST/VTESTPS.
%include "prelude.inc"

%define V DATA(0x1000)
%define OUT DATA(0x2000)
%define REGION_END DATA(DATA_SIZE)

CASE avx_moves_zero_upper
  vmovdqu ymm0, [V]
  vmovdqa ymm1, [V + 32]
  vmovups ymm2, [V + 7]
  vmovaps xmm3, [V + 16]
  vmovdqu xmm4, xmm0
  movdqa xmm5, [V]
  vmovq xmm6, [V + 8]
  vmovd xmm7, [V + 12]
  vmovss xmm8, xmm9, xmm10
  vmovsd xmm9, [V + 16]
  vmovdqu [OUT], ymm0
  vmovups [OUT + 33], ymm2
  vmovaps [OUT + 64], xmm3
  vmovntdq [OUT + 96], ymm1
  vmovq rax, xmm0
  vmovd ebx, xmm1
  vpextrq rcx, xmm2, 1
  vpinsrq xmm11, xmm2, rdx, 1
  vextracti128 xmm12, ymm0, 1
  vinserti128 ymm13, ymm1, [V + 48], 1
  vextractf128 [OUT + 128], ymm2, 1
  vinsertf128 ymm14, ymm14, xmm0, 0
CASE avx_vmovdqa_misaligned_gp
  vmovdqa ymm0, [V + 16]
CASE avx_int_arith
  vmovdqu ymm0, [V]
  vmovdqu ymm1, [V + 32]
  vpaddd ymm2, ymm0, ymm1
  vpaddb ymm3, ymm0, [V + 64]
  vpsubq ymm4, ymm1, ymm0
  vpmulld ymm5, ymm0, ymm1
  vpmuludq ymm6, ymm0, [V + 96]
  vpmaddwd ymm7, ymm0, ymm1
  vpminsb ymm8, ymm0, ymm1
  vpmaxuw ymm9, ymm0, [V + 128]
  vpabsd ymm10, ymm0
  vpavgw ymm11, ymm0, ymm1
  vpsadbw ymm12, ymm0, ymm1
  vphaddd ymm13, ymm0, ymm1
  vpcmpeqd ymm14, ymm0, ymm0
  vpcmpgtq ymm15, ymm0, ymm1
  vpand ymm0, ymm1, ymm2
  vpxor xmm1, xmm2, xmm3
  vpandn ymm2, ymm3, [V + 160]
CASE avx_shifts
  vmovdqu ymm0, [V]
  vmovdqu ymm1, [V + 32]
  vpsllw ymm2, ymm0, 3
  vpsrad ymm3, ymm0, 7
  vpsrlq ymm4, ymm0, xmm1
  vpslldq ymm5, ymm0, 3
  vpsrldq ymm6, ymm0, 13
  vpsllvd ymm7, ymm0, ymm1
  vpsrlvq ymm8, ymm0, [V + 64]
  vpsravd ymm9, ymm0, ymm1
  mov eax, 0x1F0F0703
  vmovd xmm10, eax
  vpbroadcastb ymm10, xmm10
  vpsllvd ymm11, ymm0, ymm10
CASE avx_permute_broadcast
  vmovdqu ymm0, [V]
  vmovdqu ymm1, [V + 32]
  vpermd ymm2, ymm1, ymm0
  vpermq ymm3, ymm0, 0x1B
  vperm2i128 ymm4, ymm0, ymm1, 0x21
  vperm2f128 ymm5, ymm0, [V + 64], 0x88
  vpermilps ymm6, ymm0, 0xB1
  vpermilpd ymm7, ymm0, ymm1
  vpermps ymm8, ymm1, [V + 96]
  vbroadcastss ymm9, [V + 4]
  vbroadcastsd ymm10, xmm0
  vbroadcasti128 ymm11, [V + 16]
  vpbroadcastd ymm12, xmm1
  vpbroadcastq xmm13, [V + 8]
  vpbroadcastw ymm14, xmm0
  vpshufb ymm15, ymm0, ymm1
  vpalignr ymm0, ymm1, ymm2, 9
  vpunpckhbw ymm1, ymm2, ymm3
  vshufps ymm2, ymm3, ymm4, 0x4E
  vpblendd ymm3, ymm4, ymm5, 0x5A
  vpblendvb ymm4, ymm5, ymm6, ymm7
  vblendvps ymm5, ymm6, [V + 128], ymm8
CASE avx_masked_load_store
  vmovdqu ymm0, [V]
  mov rax, 0x8000000080000000
  mov rbx, 0x0000000080000000
  mov [OUT + 0x200], rax
  mov [OUT + 0x208], rbx
  mov [OUT + 0x210], rbx
  mov [OUT + 0x218], rax
  vmovdqu ymm1, [OUT + 0x200]
  vpmaskmovd ymm2, ymm1, [V + 32]
  vpmaskmovd [OUT], ymm1, ymm0
  vpmaskmovq xmm3, xmm1, [V + 64]
  vmaskmovps ymm4, ymm1, [V + 96]
  vmaskmovpd [OUT + 64], ymm1, ymm0
CASE avx_masked_load_beyond_region
  ; Only the first dword is enabled: the masked-off lanes lie beyond the data region, which is
  ; unmapped. No fault.
  mov eax, 0x80000000
  vmovd xmm1, eax
  vpmaskmovd ymm2, ymm1, [REGION_END - 4]
  vpmaskmovd [REGION_END - 4], ymm1, ymm2
  vmaskmovps xmm3, xmm1, [REGION_END - 4]
CASE avx_masked_load_beyond_region_faults
  ; Lane 1 enabled and beyond the region: #PF.
  mov rax, 0x8000000000000000
  vmovq xmm1, rax
  vpmaskmovd xmm2, xmm1, [REGION_END - 4]
CASE avx_gather
  vmovdqu ymm0, [V]
  jmp .go
  align 32
.idx:
  dd 0, 3, 7, 1, -2, 100, 9, 31
.go:
  vmovdqu ymm1, [.idx]
  lea rbx, [V + 64]
  vpcmpeqd ymm2, ymm2, ymm2
  vpgatherdd ymm3, [rbx + ymm1 * 4], ymm2
  vpcmpeqd ymm2, ymm2, ymm2
  vpsrlq ymm2, ymm2, 32
  vpgatherdq ymm4, [rbx + xmm1 * 8], ymm2
  vpcmpeqd xmm2, xmm2, xmm2
  vgatherdps xmm5, [rbx + xmm1 * 2 + 8], xmm2
CASE avx_fma
  vmovups ymm0, [V]
  vmovups ymm1, [V + 32]
  vpsrld ymm0, ymm0, 2
  vpsrld ymm1, ymm1, 2
  vmovaps ymm2, ymm0
  vfmadd132ps ymm2, ymm1, ymm0
  vmovaps ymm3, ymm1
  vfmadd213ps ymm3, ymm0, [V + 64]
  vmovaps ymm4, ymm0
  vfmadd231pd ymm4, ymm1, ymm0
  vfnmadd231ss xmm5, xmm1, xmm0
  vfmsubadd213ps ymm6, ymm0, ymm1
  vfnmsub132sd xmm7, xmm0, [V + 96]
  vstmxcsr [OUT]
CASE avx_float_ops
  vmovups ymm0, [V]
  vpsrld ymm0, ymm0, 3
  vaddps ymm1, ymm0, ymm0
  vmulpd ymm2, ymm0, [V + 32]
  vdivps ymm3, ymm1, ymm0
  vsqrtpd ymm4, ymm0
  vminps ymm5, ymm0, ymm1
  vroundps ymm6, ymm3, 2
  vdpps ymm7, ymm0, ymm1, 0xFF
  vhaddpd ymm8, ymm0, ymm1
  vcvtps2pd ymm9, xmm0
  vcvttpd2dq xmm10, ymm4
  vcvtdq2ps ymm11, [V + 64]
  vcmpps ymm12, ymm0, ymm1, 0x1D
  vcmppd ymm13, ymm0, ymm0, 0x04
  vrcpps ymm14, ymm0
  vcvtps2ph xmm15, ymm0, 0
  vcvtph2ps ymm15, xmm15
  vcvtps2ph [OUT], ymm1, 4
  vstmxcsr [OUT + 32]
CASE avx_test_flags
  vmovdqu ymm0, [V]
  vpxor ymm1, ymm1, ymm1
  SETFLAGS FLAGS_SET
  vptest ymm0, ymm1
  setz al
  setc bl
  vtestps ymm0, ymm0
  setz cl
  setc dl
  vtestpd xmm0, [V + 32]
CASE avx_vzeroupper_vzeroall
  vmovdqu ymm0, [V]
  vmovdqu ymm15, [V + 32]
  vzeroupper
  vmovdqu ymm1, [V + 64]
  vmovdqu ymm2, [V + 96]
  vmovdqu [OUT], ymm1
  vzeroall
CASE avx_bmi_vex_gpr
  mov rax, 0x0123456789ABCDEF
  mov rbx, 0x00FF00FF00FF00FF
  SETFLAGS FLAGS_SET
  andn rcx, rax, rbx
  pext rdx, rax, rbx
  pdep rsi, rax, rbx
  shrx rdi, rax, rbx
CASE avx_vpclmul_vaes
  vmovdqu ymm0, [V]
  vmovdqu ymm1, [V + 32]
  vpclmulqdq ymm2, ymm0, ymm1, 0x10
  vaesenc ymm3, ymm0, ymm1
  vaesdeclast ymm4, ymm0, [V + 64]
  gf2p8affineqb xmm5, xmm0, 0x63
  vgf2p8mulb ymm6, ymm0, ymm1
CASE avx_vex_l1_on_scalar_ignored
  vmovdqu ymm0, [V]
  ; vaddss with VEX.L=1 (LIG): still a scalar add.
  db 0xC5, 0xFE, 0x58, 0xC8   ; vaddss xmm1, xmm0, xmm0 with L=1
END_CASES
