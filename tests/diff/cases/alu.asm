; ALU: ADD ADC SUB SBB CMP AND OR XOR TEST and INC DEC NEG NOT at 8/16/32/64 bits, with operand
; pairs giving every flag outcome (carry, signed overflow, zero, sign, parity, auxiliary carry),
; with incoming flags all clear and all set (ADC/SBB consume CF, INC/DEC preserve it), in
; register, immediate (imm8 sign-extended, full, accumulator short forms) and memory forms.
%include "prelude.inc"
%include "operands.inc"

; BINOP op, size
%macro BINOP 2
  %assign __i 0
  %rep NPAIRS
    PAIR %2, __i
    CASE %1%2_rr_%[__i]_c
      mov rax, __a
      mov rbx, __b
      SETFLAGS FLAGS_CLEAR
      %1 RA%2, RB%2
    CASE %1%2_rr_%[__i]_s
      mov rax, __a
      mov rbx, __b
      SETFLAGS FLAGS_SET
      %1 RA%2, RB%2
    %if (__i % 2) == 0
      CASE %1%2_mr_%[__i]
        mov rax, __a
        mov rbx, __b
        mov rcx, SCRATCH
        mov [rcx], rax
        SETFLAGS FLAGS_SET
        %1 MSZ%2 [rcx], RB%2
      CASE %1%2_rm_%[__i]
        mov rax, __a
        mov rbx, __b
        mov [SCRATCH + 8], rbx
        SETFLAGS FLAGS_CLEAR
        %ifidn %1, test
          test MSZ%2 [SCRATCH + 8], RA%2
        %else
          %1 RA%2, MSZ%2 [SCRATCH + 8]
        %endif
    %endif
    %assign __i __i + 1
  %endrep
  ; Immediates: accumulator short form (A), ModRM form (B), imm8 sign-extended and full.
  %assign __j 0
  %rep 3
    %if __j == 0
      PAIR %2, 0
    %elif __j == 1
      PAIR %2, 1
    %else
      PAIR %2, 5
    %endif
    %assign __k 0
    %rep 4
      %if %2 == 8
        %if __k == 0
          %define __imm 1
        %elif __k == 1
          %define __imm 0x7F
        %elif __k == 2
          %define __imm 0x80
        %else
          %define __imm 0xFF
        %endif
      %elif %2 == 16
        %if __k == 0
          %define __imm 1
        %elif __k == 1
          %define __imm -1
        %elif __k == 2
          %define __imm 0x8000
        %else
          %define __imm 0x7FFF
        %endif
      %else
        %if __k == 0
          %define __imm 1
        %elif __k == 1
          %define __imm -1
        %elif __k == 2
          %define __imm 0x7FFFFFFF
        %else
          %define __imm -0x80000000
        %endif
      %endif
      CASE %1%2_ai_%[__j]_%[__k]
        mov rax, __a
        SETFLAGS FLAGS_SET
        %1 RA%2, __imm
      CASE %1%2_bi_%[__j]_%[__k]
        mov rbx, __a
        SETFLAGS FLAGS_CLEAR
        %1 RB%2, __imm
      %if __k == 1
        CASE %1%2_mi_%[__j]_%[__k]
          mov rax, __a
          mov [SCRATCH + 16], rax
          SETFLAGS FLAGS_CLEAR
          %1 MSZ%2 [SCRATCH + 16], __imm
      %endif
      %undef __imm
      %assign __k __k + 1
    %endrep
    %assign __j __j + 1
  %endrep
%endmacro

; UNOP op, size
%macro UNOP 2
  %assign __i 0
  %rep NVALUES
    VALUE %2, __i
    CASE %1%2_r_%[__i]_c
      mov rdx, __v
      SETFLAGS FLAGS_CLEAR
      %1 RD%2
    CASE %1%2_r_%[__i]_s
      mov rdx, __v
      SETFLAGS FLAGS_SET
      %1 RD%2
    CASE %1%2_m_%[__i]
      mov rdx, __v
      mov [SCRATCH + 24], rdx
      SETFLAGS FLAGS_SET
      %1 MSZ%2 [SCRATCH + 24]
    %assign __i __i + 1
  %endrep
%endmacro

%macro ALL_SIZES 2
  %1 %2, 8
  %1 %2, 16
  %1 %2, 32
  %1 %2, 64
%endmacro

ALL_SIZES BINOP, add
ALL_SIZES BINOP, adc
ALL_SIZES BINOP, sub
ALL_SIZES BINOP, sbb
ALL_SIZES BINOP, cmp
ALL_SIZES BINOP, and
ALL_SIZES BINOP, or
ALL_SIZES BINOP, xor
ALL_SIZES BINOP, test
ALL_SIZES UNOP, inc
ALL_SIZES UNOP, dec
ALL_SIZES UNOP, neg
ALL_SIZES UNOP, not

; A few combinations: flags produced by one instruction consumed by the next.
CASE chain_add_adc_128
  mov rax, -1
  mov rdx, 0x7FFFFFFFFFFFFFFF
  add rax, 1
  adc rdx, 0
CASE chain_sub_sbb_128
  xor eax, eax
  mov rdx, 0x8000000000000000
  sub rax, 1
  sbb rdx, 0
CASE chain_cmp_adc_carry_out
  mov ecx, 5
  cmp ecx, 6
  adc ecx, ecx
  sbb eax, eax
CASE high_byte_regs
  mov rax, 0x1122334455667788
  mov rbx, 0x99AABBCCDDEEFF00
  add ah, bl
  sub bh, al
  xor ch, ah
  adc dh, bh
CASE rex_byte_regs
  mov rsi, 0x80
  mov rdi, 0x7F
  add sil, dil
  adc r8b, sil
  sub r15b, r8b
  inc bpl
  dec spl
  inc spl
CASE zero_idioms
  xor eax, eax
  sub ebx, ebx
  xor r10d, r10d
  and r11, 0
  or r12, -1
CASE locked_mem_ops
  mov rcx, SCRATCH
  mov qword [rcx], 0x7FFFFFFF
  lock add dword [rcx], 1
  lock sub word [rcx + 4], 3
  lock or byte [rcx + 6], 0x81
  lock and qword [rcx], -16
  lock xor dword [rcx + 8], 0x5A5A5A5A
  lock inc qword [rcx + 16]
  lock dec byte [rcx + 24]
  lock neg word [rcx + 26]
  lock not dword [rcx + 28]
  lock adc qword [rcx + 32], rax
  lock sbb dword [rcx + 40], ebx
END_CASES
