; BCD arithmetic (32-bit code, compatibility mode; these opcodes are #UD in 64-bit mode): DAA
; DAS AAA AAS for sixteen AL values around the decimal-adjust boundaries, with AF/CF clear and
; set; AAM and AAD with bases 10, 16 and 7, and AAM 0 (#DE).
%define CASE_MODE 32
%include "prelude.inc"

%macro BCDOP 1
  %assign __i 0
  %rep 16
    %if __i == 0
      %assign __v 0x00
    %elif __i == 1
      %assign __v 0x09
    %elif __i == 2
      %assign __v 0x0A
    %elif __i == 3
      %assign __v 0x0F
    %elif __i == 4
      %assign __v 0x10
    %elif __i == 5
      %assign __v 0x19
    %elif __i == 6
      %assign __v 0x1A
    %elif __i == 7
      %assign __v 0x5F
    %elif __i == 8
      %assign __v 0x90
    %elif __i == 9
      %assign __v 0x99
    %elif __i == 10
      %assign __v 0x9A
    %elif __i == 11
      %assign __v 0x9F
    %elif __i == 12
      %assign __v 0xA0
    %elif __i == 13
      %assign __v 0xF9
    %elif __i == 14
      %assign __v 0xFA
    %else
      %assign __v 0xFF
    %endif
    CASE %1_%[__i]_c
      mov eax, 0x12345600 | __v
      SETFLAGS FLAGS_CLEAR
      %1
    CASE %1_%[__i]_s
      mov eax, 0x12340700 | __v
      SETFLAGS FLAGS_SET
      %1
    %assign __i __i + 1
  %endrep
%endmacro

BCDOP daa
BCDOP das
BCDOP aaa
BCDOP aas

%macro AAMD 3  ; op, ax, base
  CASE %1_%2_b%3
    mov eax, 0x55550000 | %2
    SETFLAGS FLAGS_SET
    %1 %3
%endmacro

AAMD aam, 0x0063, 10
AAMD aam, 0x00FF, 10
AAMD aam, 0x0000, 10
AAMD aam, 0x00FF, 16
AAMD aam, 0x0040, 7
AAMD aad, 0x0909, 10
AAMD aad, 0x0F0F, 10
AAMD aad, 0xFFFF, 16
AAMD aad, 0x0000, 10
AAMD aad, 0x0206, 7

CASE aam_zero_de
  mov eax, 0x63
  aam 0
CASE bcd_addition_chain
  ; 1999 + 1 in packed BCD, byte by byte.
  mov eax, 0x99
  add al, 1
  daa
  mov bl, al
  mov al, 0x19
  adc al, 0
  daa
  mov bh, al
CASE bcd_unpacked_chain
  mov eax, 0x0909
  add al, 5
  aaa
  mov ecx, eax
  mov eax, 0x0102
  sub al, 5
  aas
END_CASES
