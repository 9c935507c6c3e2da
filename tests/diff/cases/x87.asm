; x87: loads and stores of every format, arithmetic, transcendental instructions, comparisons
; that set RFLAGS (FCOMI/FUCOMIP) or the status word (FCOM + FNSTSW AX), control-word rounding
; modes and precision control, stack overflow/underflow (masked invalid operation), FXCH,
; constants, FBSTP/FBLD, FNSTENV-free status handling.
%include "prelude.inc"

%define OUT DATA(0x2000)

CASE x87_load_store_formats
  mov dword [OUT], 0x3FC00000
  mov rax, 0x400921FB54442D18
  mov [OUT + 8], rax
  mov word [OUT + 16], -1234
  mov dword [OUT + 20], 0x12345678
  mov rax, -9876543210
  mov [OUT + 24], rax
  fld dword [OUT]
  fld qword [OUT + 8]
  fild word [OUT + 16]
  fild dword [OUT + 20]
  fild qword [OUT + 24]
  fstp tword [OUT + 32]
  fistp qword [OUT + 48]
  fistp dword [OUT + 56]
  fstp qword [OUT + 64]
  fst dword [OUT + 72]
  fisttp word [OUT + 76]
  fld tword [OUT + 32]
  fbstp [OUT + 80]
  fbld [OUT + 80]
CASE x87_arith
  fld1
  fldpi
  fadd st0, st1
  fldl2e
  fmul st0, st1
  fldln2
  fdivr st0, st2
  fsub st0, st1
  fsqrt
  fabs
  fchs
  fxch st2
  faddp st1, st0
  fmulp
  fldlg2
  fldl2t
  fldz
  fprem
  frndint
  fscale
CASE x87_transcendental
  fldpi
  fld1
  fpatan
  fld1
  fsin
  fld1
  fcos
  fld1
  fsincos
  fld1
  fptan
  fld1
  fldl2e
  fyl2x
  fld1
  fld1
  fyl2xp1
  fldln2
  f2xm1
  fxtract
CASE x87_compare_flags
  fld1
  fldpi
  SETFLAGS FLAGS_CLEAR
  fcomi st0, st1
  setc al
  setz bl
  setp cl
  fucomip st0, st1
  setc dl
  fldz
  fcom st1
  fnstsw ax
  ftst
  fnstsw [OUT]
  fxam
  fnstsw [OUT + 2]
CASE x87_control_word_rounding
  fnstcw [OUT]
  mov word [OUT + 2], 0x0F7F    ; round toward zero
  fldcw [OUT + 2]
  fldpi
  fld st0
  frndint
  fistp dword [OUT + 4]
  mov word [OUT + 2], 0x077F    ; round up
  fldcw [OUT + 2]
  fld st0
  fistp dword [OUT + 8]
  mov word [OUT + 2], 0x007F    ; single precision
  fldcw [OUT + 2]
  fld1
  fdiv st0, st1
  fstp tword [OUT + 16]
  fldcw [OUT]
CASE x87_stack_overflow_masked
  fld1
  fld1
  fld1
  fld1
  fld1
  fld1
  fld1
  fld1
  fld1
  fnstsw ax
  fnclex
  fstp st0
  fnstsw [OUT + 4]
CASE x87_stack_underflow_masked
  fninit
  fadd st0, st0
  fnstsw ax
  fstp qword [OUT]
CASE x87_unmasked_invalid_deferred
  fninit
  mov word [OUT], 0x037E     ; unmask invalid operation
  fldcw [OUT]
  fldz
  fldz
  fdiv st0, st1              ; 0/0: invalid, pending
  mov eax, 1
  fwait                      ; #MF here
  mov eax, 2
CASE x87_unmasked_zero_divide_at_next_x87
  fninit
  mov word [OUT], 0x037B     ; unmask zero divide
  fldcw [OUT]
  fld1
  fldz
  fdivp st1, st0             ; 1/0: zero divide, pending
  mov eax, 1
  fld1                       ; #MF here, before the load
; An MMX instruction takes a pending x87 exception (#MF) with the flags of the instruction
; before it, also when a memory access between them could use the flag-clobbering check.
CASE x87_pending_at_mmx_keeps_flags
  fninit
  mov word [OUT], 0x037B     ; unmask zero divide
  fldcw [OUT]
  fld1
  fldz
  fdivp st1, st0             ; 1/0: zero divide, pending
  mov eax, 1
  cmp eax, 2                 ; CF SF AF PF set
  mov rbx, [OUT + 8]
  pand mm0, mm1              ; #MF here
  add eax, 1
CASE x87_fcmov
  fld1
  fldz
  mov eax, 1
  cmp eax, 1
  fcmove st0, st1
  fcmovne st0, st1
  fstp qword [OUT]
CASE x87_ffree_fdecstp
  fld1
  fldpi
  ffree st1
  fdecstp
  fincstp
  fnstsw ax
  fstp qword [OUT]
CASE x87_emms_after_mmx
  mov rax, 0x0102030405060708
  movq mm0, rax
  paddb mm0, mm0
  movq mm1, [OUT]
  pmullw mm1, mm0
  movq [OUT + 8], mm1
  movq rbx, mm0
  emms
END_CASES
