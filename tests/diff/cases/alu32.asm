; The ALU in 32-bit code (compatibility mode): register forms at 8/16/32 bits with the flag
; outcomes of the 64-bit ALU family, INC/DEC in their one-byte 40h-4Fh forms (REX prefixes in
; 64-bit mode), and immediate and memory forms with absolute disp32 addressing (ModRM mod=00
; rm=101 is disp32 here, RIP-relative in 64-bit mode).
%define CASE_MODE 32
%include "prelude.inc"

%define RA8 al
%define RA16 ax
%define RA32 eax
%define RB8 bl
%define RB16 bx
%define RB32 ebx
%define MSZ8 byte
%define MSZ16 word
%define MSZ32 dword
%define HIGH_PATTERN 0x5AA5C33C96696996
%define NPAIRS 12

%macro VALUE32 2
  %assign __msb (1 << (%1 - 1))
  %assign __all ((__msb << 1) - 1)
  %if %2 == 0
    %assign __v 0
  %elif %2 == 1
    %assign __v 1
  %elif %2 == 2
    %assign __v __msb - 1
  %elif %2 == 3
    %assign __v __msb
  %elif %2 == 4
    %assign __v __all
  %elif %2 == 5
    %assign __v 0x0F
  %elif %2 == 6
    %assign __v 0x55555555 & __all
  %elif %2 == 7
    %assign __v 0xAAAAAAAA & __all
  %elif %2 == 8
    %assign __v 0x89ABCDEF & __all
  %else
    %assign __v (__msb + 0x7E) & __all
  %endif
  %if %1 < 32
    %assign __v __v | (HIGH_PATTERN & 0xFFFFFFFF & ~__all)
  %endif
%endmacro

%macro PAIR32 2
  %assign __pa (%2 * 7 + 2) % 10
  %assign __pb (%2 * 3 + 1) % 10
  VALUE32 %1, __pa
  %assign __a __v
  VALUE32 %1, __pb
  %assign __b __v
%endmacro

%macro BINOP32 2
  %assign __i 0
  %rep NPAIRS
    PAIR32 %2, __i
    CASE %1%2_rr_%[__i]_c
      mov eax, __a
      mov ebx, __b
      SETFLAGS FLAGS_CLEAR
      %1 RA%2, RB%2
    CASE %1%2_rr_%[__i]_s
      mov eax, __a
      mov ebx, __b
      SETFLAGS FLAGS_SET
      %1 RA%2, RB%2
    %assign __i __i + 1
  %endrep
  CASE %1%2_mem_abs
    mov eax, 0x7FFFFFFF
    mov [DATA_VA + 0x800], eax
    SETFLAGS FLAGS_SET
    %1 MSZ%2 [DATA_VA + 0x800], RA%2
    %1 RA%2, MSZ%2 [DATA_VA + 0x801]
  CASE %1%2_imm
    mov eax, 0x80000001
    SETFLAGS FLAGS_CLEAR
    %1 RA%2, 1
    %1 RA%2, -1
%endmacro

%macro SIZES 2
  %1 %2, 8
  %1 %2, 16
  %1 %2, 32
%endmacro

SIZES BINOP32, add
SIZES BINOP32, adc
SIZES BINOP32, sub
SIZES BINOP32, sbb
SIZES BINOP32, and
SIZES BINOP32, or
SIZES BINOP32, xor
SIZES BINOP32, cmp

CASE inc_dec_one_byte_forms
  mov eax, 0x7FFFFFFF
  mov ecx, 0
  mov edx, -1
  SETFLAGS FLAGS_SET
  db 0x40          ; inc eax
  db 0x49          ; dec ecx
  db 0x42          ; inc edx
  db 0x4B          ; dec ebx
  db 0x66, 0x47    ; inc di
CASE mul_div_32
  mov eax, 0x89ABCDEF
  mov ecx, 0x12345
  mul ecx
  mov esi, eax
  mov eax, 1000000
  xor edx, edx
  mov ecx, 7
  div ecx
  imul edi, eax, -3
CASE shifts_32
  mov eax, 0x80000001
  mov cl, 33
  shl eax, cl
  mov ebx, 0x12345678
  shrd ebx, eax, 12
  rcr bx, 3
  rol eax, 31
END_CASES
