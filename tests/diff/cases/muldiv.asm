; Multiply and divide: MUL/IMUL (one, two and three operands), DIV/IDIV at 8/16/32/64 bits,
; including #DE for a zero divisor and for a quotient that does not fit.
%include "prelude.inc"
%include "operands.inc"

%macro MUL1 2  ; op, size
  %assign __i 0
  %rep NPAIRS
    PAIR %2, __i
    CASE %1%2_r_%[__i]
      mov rax, __a
      mov rbx, __b
      mov rdx, 0x1111111111111111
      SETFLAGS FLAGS_SET
      %1 RB%2
    %if (__i % 3) == 0
      CASE %1%2_m_%[__i]
        mov rax, __a
        mov rbx, __b
        mov [SCRATCH], rbx
        SETFLAGS FLAGS_CLEAR
        %1 MSZ%2 [SCRATCH]
    %endif
    %assign __i __i + 1
  %endrep
%endmacro

%macro IMUL23 1  ; size (16/32/64)
  %assign __i 0
  %rep NPAIRS
    PAIR %1, __i
    CASE imul%1_rr_%[__i]
      mov rax, __a
      mov rbx, __b
      SETFLAGS FLAGS_SET
      imul RA%1, RB%1
    CASE imul%1_rri8_%[__i]
      mov rbx, __b
      SETFLAGS FLAGS_CLEAR
      imul RA%1, RB%1, -3
    CASE imul%1_rri_%[__i]
      mov rbx, __a
      SETFLAGS FLAGS_CLEAR
      imul RC%1, RB%1, 0x7ABC
    %if (__i % 3) == 0
      CASE imul%1_rm_%[__i]
        mov rax, __a
        mov rbx, __b
        mov [SCRATCH + 8], rbx
        SETFLAGS FLAGS_SET
        imul RA%1, MSZ%1 [SCRATCH + 8]
      CASE imul%1_rmi_%[__i]
        mov rbx, __b
        mov [SCRATCH + 8], rbx
        SETFLAGS FLAGS_SET
        imul RA%1, MSZ%1 [SCRATCH + 8], 100
    %endif
    %assign __i __i + 1
  %endrep
%endmacro

; DIVCASE name, op, size, high, low, divisor: RDX:RAX (AX for 8-bit) / divisor in RBX.
%macro DIVCASE 6
  CASE %2%3_%1
    %if %3 == 8
      mov rax, (%5 & 0xFF) | ((%4 & 0xFF) << 8) | 0x7700000000000000
    %else
      mov rax, %5
      mov rdx, %4
    %endif
    mov rbx, %6
    SETFLAGS FLAGS_SET
    %2 RB%3
%endmacro

%macro DIVS 1  ; size
  %assign __msb (1 << (%1 - 1))
  %assign __all ((__msb << 1) - 1)
  DIVCASE small, div, %1, 0, 100, 7
  DIVCASE big, div, %1, 1, 0x1234, 3
  DIVCASE max, div, %1, __all - 1, __all, __all
  DIVCASE by_one, div, %1, 0, __all, 1
  DIVCASE zero, div, %1, 0, 5, 0
  DIVCASE overflow, div, %1, 2, 0, 2
  DIVCASE small, idiv, %1, 0, 100, -7
  DIVCASE neg, idiv, %1, __all, -100, 7
  DIVCASE negneg, idiv, %1, __all, -100, -7
  DIVCASE min_by_m1, idiv, %1, __all, __msb, -1
  DIVCASE zero, idiv, %1, 0, 5, 0
  DIVCASE overflow, idiv, %1, 0, __msb, 1
  DIVCASE rem_sign, idiv, %1, __all, -7, 2
  CASE div%1_mem
    mov rax, 1000
    xor edx, edx
    mov qword [SCRATCH], 13
    div MSZ%1 [SCRATCH]
  CASE idiv%1_mem
    mov rax, -1000
    cqo
    mov qword [SCRATCH], -13
    idiv MSZ%1 [SCRATCH]
%endmacro

MUL1 mul, 8
MUL1 mul, 16
MUL1 mul, 32
MUL1 mul, 64
MUL1 imul, 8
MUL1 imul, 16
MUL1 imul, 32
MUL1 imul, 64
IMUL23 16
IMUL23 32
IMUL23 64
DIVS 8
DIVS 16
DIVS 32
DIVS 64

CASE mulx_forms
  mov rdx, 0xFEDCBA9876543210
  mov rax, 0x0123456789ABCDEF
  SETFLAGS FLAGS_SET
  mulx rbx, rcx, rax
  mulx r8d, r9d, eax
  mov [SCRATCH], rax
  mulx r10, r11, [SCRATCH]
CASE div_after_faultfree_work
  mov eax, 1
  mov ecx, 10
  add eax, ecx
  xor edx, edx
  div ecx
  imul eax, edx, 3
  xor ecx, ecx
  div ecx
  mov eax, 5
END_CASES
