; SSE1-4.2, AES, PCLMUL, SHA: moves (aligned and unaligned, #GP on a misaligned MOVAPS),
; integer and floating-point arithmetic with register and memory operands, comparisons that set
; RFLAGS (COMISS, UCOMISD, PTEST, PCMPxSTRx), conversions (including out-of-range to integer),
; MXCSR (rounding modes, DAZ/FTZ, sticky exception flags, an unmasked exception giving #XM).
%include "prelude.inc"

%define V DATA(0x1000)   ; 64-byte aligned vector data (random from the harness seed)
%define OUT DATA(0x2000)

; Some float inputs: normal values, a NaN, infinities, denormals, zero.
%macro LOAD_FLOATS 0
  mov dword [OUT + 0x100], 0x3FC00000   ; 1.5
  mov dword [OUT + 0x104], 0xC0490FDB   ; -3.14159
  mov dword [OUT + 0x108], 0x7FC00000   ; qNaN
  mov dword [OUT + 0x10C], 0x00000001   ; denormal
  mov dword [OUT + 0x110], 0x7F800000   ; +inf
  mov dword [OUT + 0x114], 0x80000000   ; -0
  mov dword [OUT + 0x118], 0x4B000001   ; 8388609
  mov dword [OUT + 0x11C], 0x3EAAAAAB   ; 1/3
  movaps xmm14, [OUT + 0x100]
  movaps xmm15, [OUT + 0x110]
%endmacro

CASE sse_moves
  movaps xmm0, [V]
  movups xmm1, [V + 3]
  movapd xmm2, xmm0
  movdqa xmm3, [V + 16]
  movdqu xmm4, [V + 17]
  movss xmm5, [V + 4]
  movsd xmm6, [V + 8]
  movss xmm7, xmm1
  movsd xmm8, xmm2
  movq xmm9, [V + 24]
  movq xmm10, xmm3
  movd xmm11, [V + 28]
  movhps xmm12, [V + 32]
  movlps xmm12, [V + 40]
  movhlps xmm13, xmm4
  movlhps xmm13, xmm5
  movaps [OUT], xmm0
  movups [OUT + 17], xmm1
  movdqa [OUT + 32], xmm13
  movdqu [OUT + 49], xmm12
  movss [OUT + 66], xmm5
  movsd [OUT + 70], xmm6
  movhps [OUT + 80], xmm4
  movlps [OUT + 88], xmm4
  movntdq [OUT + 96], xmm3
  movnti [OUT + 112], rax
  lddqu xmm14, [V + 5]
  movq rax, xmm9
  movd ebx, xmm10
  movq xmm15, rcx
  movd xmm0, edx
CASE sse_movaps_misaligned_gp
  movaps xmm0, [V + 8]
  mov eax, 1
CASE sse_movdqa_store_misaligned_gp
  movdqa [OUT + 4], xmm1
CASE sse_int_arith
  movdqa xmm0, [V]
  movdqa xmm1, [V + 16]
  paddb xmm0, xmm1
  paddw xmm1, [V + 32]
  paddd xmm2, xmm0
  paddq xmm3, [V + 48]
  psubb xmm4, xmm0
  psubusb xmm5, xmm1
  paddsw xmm6, xmm1
  paddusw xmm7, xmm0
  pmullw xmm8, xmm1
  pmulld xmm9, [V + 64]
  pmuludq xmm10, xmm0
  pmuldq xmm11, xmm1
  pmaddwd xmm12, xmm0
  pmulhw xmm13, xmm1
  pmulhuw xmm14, [V + 80]
  pavgb xmm15, xmm0
  pminub xmm0, xmm5
  pmaxsw xmm1, xmm6
  pminsd xmm2, [V + 96]
  pmaxud xmm3, xmm2
  psadbw xmm4, xmm3
  pabsb xmm5, xmm4
  psignw xmm6, xmm5
  phaddw xmm7, xmm6
  phsubd xmm8, [V + 112]
  pmulhrsw xmm9, xmm8
  pmaddubsw xmm10, xmm9
CASE sse_int_logic_shift
  movdqa xmm0, [V]
  movdqa xmm1, [V + 16]
  pand xmm2, xmm0
  pandn xmm3, [V + 32]
  por xmm4, xmm1
  pxor xmm5, xmm0
  psllw xmm6, 3
  psrld xmm7, 31
  psraw xmm8, 15
  psllq xmm9, 64
  psrlq xmm10, xmm1
  pslld xmm11, [V + 48]
  pslldq xmm12, 5
  psrldq xmm13, 11
  pcmpeqb xmm14, xmm0
  pcmpgtd xmm15, xmm1
  pcmpeqq xmm0, xmm2
  pcmpgtq xmm1, [V + 64]
CASE sse_shuffle_pack
  movdqa xmm0, [V]
  movdqa xmm1, [V + 16]
  pshufd xmm2, xmm0, 0x1B
  pshufhw xmm3, xmm1, 0xE4
  pshuflw xmm4, [V + 32], 0x4E
  pshufb xmm5, xmm0
  palignr xmm6, xmm1, 7
  punpcklbw xmm7, xmm0
  punpckhwd xmm8, xmm1
  punpckldq xmm9, [V + 48]
  punpckhqdq xmm10, xmm0
  packsswb xmm11, xmm1
  packuswb xmm12, xmm0
  packusdw xmm13, xmm1
  shufps xmm14, xmm0, 0x93
  shufpd xmm15, xmm1, 1
  unpcklps xmm0, xmm1
  unpckhpd xmm1, [V + 64]
  pblendw xmm2, xmm3, 0xA5
  blendps xmm3, xmm4, 5
  pmovzxbw xmm4, xmm5
  pmovsxdq xmm5, [V + 80]
  pmovzxbq xmm6, xmm7
CASE sse_insert_extract
  movdqa xmm0, [V]
  pextrw eax, xmm0, 5
  pinsrw xmm1, ebx, 3
  pextrb ecx, xmm0, 15
  pextrd edx, xmm0, 2
  pextrq rsi, xmm0, 1
  pinsrb xmm2, edi, 9
  pinsrd xmm3, [V + 16], 1
  pinsrq xmm4, r8, 0
  pextrd [OUT], xmm0, 3
  extractps r9d, xmm0, 1
  insertps xmm5, xmm0, 0x5C
  pmovmskb r10d, xmm0
  movmskps r11d, xmm0
  movmskpd r12d, xmm0
CASE sse_ptest_flags
  movdqa xmm0, [V]
  pxor xmm1, xmm1
  SETFLAGS FLAGS_SET
  ptest xmm0, xmm1
  setz al
  setc bl
  ptest xmm0, xmm0
  setz cl
  pcmpeqb xmm2, xmm2
  ptest xmm2, xmm0
CASE sse_pcmpstr
  mov rax, 'hello wo'
  mov [OUT], rax
  mov rax, 'rld!....'
  mov [OUT + 8], rax
  mov rax, 'o'
  mov [OUT + 16], rax
  mov qword [OUT + 24], 0
  movdqu xmm0, [OUT]
  movdqu xmm1, [OUT + 16]
  pcmpistri xmm1, xmm0, 0x00
  mov r8d, ecx
  pcmpistrm xmm1, [OUT], 0x40
  mov eax, 1
  mov edx, 12
  pcmpestri xmm1, xmm0, 0x0C
  mov r9d, ecx
  pcmpestrm xmm0, [OUT], 0x18
CASE sse_float_arith
  LOAD_FLOATS
  movaps xmm0, [V]
  movaps xmm1, xmm14
  addps xmm1, xmm15
  subps xmm2, xmm14
  mulps xmm3, xmm14
  divps xmm4, xmm14
  sqrtps xmm5, xmm14
  minps xmm6, xmm15
  maxps xmm7, xmm14
  rcpps xmm8, xmm14
  rsqrtps xmm9, xmm14
  addsd xmm10, xmm14
  mulss xmm11, xmm15
  divsd xmm12, [OUT + 0x100]
  sqrtsd xmm13, xmm14
  haddps xmm0, xmm14
  addsubpd xmm1, xmm15
  dpps xmm2, xmm14, 0xF1
  dppd xmm3, xmm14, 0x31
  roundps xmm4, xmm14, 1
  roundsd xmm5, xmm14, 3
  andps xmm6, xmm14
  xorpd xmm7, xmm15
  andnps xmm8, xmm15
  orps xmm9, xmm14
  stmxcsr [OUT + 0x200]
CASE sse_float_compare
  LOAD_FLOATS
  movaps xmm0, xmm14
  cmpps xmm0, xmm15, 0
  movaps xmm1, xmm14
  cmpps xmm1, xmm15, 3
  movaps xmm2, xmm14
  cmpltps xmm2, xmm15
  movaps xmm3, xmm14
  cmpnlesd xmm3, xmm15
  SETFLAGS FLAGS_CLEAR
  comiss xmm14, xmm15
  setc al
  setz bl
  setp cl
  ucomisd xmm14, xmm14
  setp dl
  movss xmm4, [OUT + 0x108]
  comiss xmm4, xmm14
  stmxcsr [OUT + 0x200]
CASE sse_convert
  LOAD_FLOATS
  cvtsi2sd xmm0, rax
  cvtsi2ss xmm1, ebx
  cvttsd2si rcx, xmm0
  cvtss2si edx, xmm14
  cvtps2pd xmm2, xmm14
  cvtpd2ps xmm3, xmm2
  cvtdq2ps xmm4, [V]
  cvttps2dq xmm5, xmm14
  cvttps2dq xmm6, xmm15
  cvtsd2ss xmm7, xmm0
  cvtss2sd xmm8, xmm1
  mov rax, 0x7FF0000000000000
  movq xmm9, rax
  cvttsd2si rsi, xmm9
  cvttss2si edi, [OUT + 0x108]
  stmxcsr [OUT + 0x200]
CASE sse_mxcsr_rounding
  LOAD_FLOATS
  mov dword [OUT], 0x1F80 | (3 << 13)
  ldmxcsr [OUT]
  cvtss2si eax, xmm14
  movss xmm0, [OUT + 0x11C]
  addss xmm0, xmm0
  mov dword [OUT], 0x1F80 | (1 << 13)
  ldmxcsr [OUT]
  cvtss2si ebx, [OUT + 0x104]
  mov dword [OUT], 0x1F80 | 0x8040
  ldmxcsr [OUT]
  movss xmm1, [OUT + 0x10C]
  addss xmm1, xmm1
  mulss xmm2, xmm1
  stmxcsr [OUT + 4]
CASE sse_mxcsr_sticky_flags
  LOAD_FLOATS
  xorps xmm0, xmm0
  movaps xmm1, xmm14
  divps xmm1, xmm0
  sqrtss xmm2, [OUT + 0x104]
  stmxcsr [OUT]
CASE sse_unmasked_divide_by_zero_xm
  LOAD_FLOATS
  mov dword [OUT], 0x1F80 & ~0x200
  ldmxcsr [OUT]
  xorps xmm0, xmm0
  movaps xmm1, xmm14
  mov eax, 1
  divps xmm1, xmm0
  mov eax, 2
CASE sse_ldmxcsr_reserved_gp
  mov dword [OUT], 0x10000
  ldmxcsr [OUT]
CASE sse_aes_clmul_sha
  movdqa xmm0, [V]
  movdqa xmm1, [V + 16]
  movdqa xmm2, [V + 32]
  aesenc xmm0, xmm1
  aesenclast xmm0, [V + 48]
  aesdec xmm1, xmm2
  aesdeclast xmm1, xmm0
  aesimc xmm3, xmm1
  aeskeygenassist xmm4, xmm2, 0x1B
  pclmulqdq xmm5, xmm0, 0x11
  pclmulqdq xmm6, [V + 64], 0x00
  sha1rnds4 xmm7, xmm1, 2
  sha1nexte xmm8, xmm2
  sha256msg1 xmm9, xmm0
  movdqa xmm0, [V + 80]
  sha256rnds2 xmm10, xmm11
CASE sse_blendv_implicit_xmm0
  movdqa xmm0, [V]
  movdqa xmm1, [V + 16]
  movdqa xmm2, [V + 32]
  pblendvb xmm1, xmm2
  blendvps xmm2, [V + 48]
  blendvpd xmm3, xmm1
CASE fxsave_fxrstor_roundtrip
  movdqa xmm0, [V]
  fxsave64 [OUT + 0x400]
  pxor xmm0, xmm0
  fxrstor64 [OUT + 0x400]
  ; The saved image is not compared as such: FIP/FDP hold addresses of the last x87
  ; instruction, which rove is free to keep as guest addresses. Clear them.
  mov qword [OUT + 0x408], 0
  mov qword [OUT + 0x410], 0
CASE sse_maskmovdqu
  movdqa xmm0, [V]
  pcmpeqb xmm1, xmm1
  psrlw xmm1, 8
  lea rdi, [OUT + 0x300]
  maskmovdqu xmm0, xmm1
CASE sse_maskmovdqu_page_cross_fault
  movdqa xmm0, [V]
  pcmpeqb xmm1, xmm1
  lea rdi, [DATA(0x3FF8)]     ; the last 8 bytes would go to the unmapped page after the data
  maskmovdqu xmm0, xmm1       ; #PF, and nothing of the first page written
CASE sse_maskmovdqu_mixed_mask
  movdqa xmm0, [V]
  movdqa xmm1, [V + 16]       ; random mask bytes
  lea rdi, [OUT + 0x3F9]      ; misaligned, no #GP
  maskmovdqu xmm0, xmm1
  vmovdqa xmm2, [V + 32]
  vmovdqa xmm3, [V + 48]
  lea rdi, [OUT + 0x501]
  vmaskmovdqu xmm2, xmm3
END_CASES
