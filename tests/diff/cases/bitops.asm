; Bit instructions: BT BTS BTR BTC (register, immediate, memory with immediate and with register
; bit offsets that reach outside the addressed operand, including negative offsets), BSF BSR
; (including a zero source), TZCNT LZCNT POPCNT, and BMI1/BMI2 bit-field instructions.
%include "prelude.inc"
%include "operands.inc"

%define BITS_AT DATA(0x1800)

%macro BITTEST 2  ; op, size (16/32/64)
  %assign __i 0
  %rep 6
    %if __i == 0
      %assign __n 0
    %elif __i == 1
      %assign __n 5
    %elif __i == 2
      %assign __n %2 - 1
    %elif __i == 3
      %assign __n %2
    %elif __i == 4
      %assign __n %2 + 3
    %else
      %assign __n 0x3C7
    %endif
    CASE %1%2_rr_%[__i]
      mov rax, 0xA5A5F00F0FF05A5A
      mov rbx, __n
      SETFLAGS FLAGS_SET
      %1 RA%2, RB%2
    CASE %1%2_ri_%[__i]
      mov rax, 0x5A5A0FF0F00FA5A5
      SETFLAGS FLAGS_CLEAR
      %1 RA%2, __n & 0xFF
    CASE %1%2_mi_%[__i]
      SETFLAGS FLAGS_SET
      %1 MSZ%2 [BITS_AT], __n & 0xFF
    %assign __i __i + 1
  %endrep
  ; Register bit offsets address memory outside the operand, both ways.
  %assign __i 0
  %rep 6
    %if __i == 0
      %assign __n 3
    %elif __i == 1
      %assign __n 100
    %elif __i == 2
      %assign __n 1000
    %elif __i == 3
      %assign __n -1
    %elif __i == 4
      %assign __n -77
    %else
      %assign __n -1000
    %endif
    CASE %1%2_mr_%[__i]
      mov rcx, __n
      lea rdx, [BITS_AT]
      SETFLAGS FLAGS_CLEAR
      %1 MSZ%2 [rdx], RC%2
    %assign __i __i + 1
  %endrep
%endmacro

%macro BITSCAN 2  ; op, size
  %assign __i 0
  %rep 8
    %if __i == 0
      %assign __v 0
    %elif __i == 1
      %assign __v 1
    %elif __i == 2
      %assign __v 0x80
    %elif __i == 3
      %assign __v 1 << (%2 - 1)
    %elif __i == 4
      %assign __v 0x00F0000000000F00 & ((1 << (%2 - 1)) * 2 - 1)
    %elif __i == 5
      %assign __v -1
    %elif __i == 6
      %assign __v 0x0102030405060708
    %else
      %assign __v 0x10000
    %endif
    CASE %1%2_r_%[__i]_c
      mov rbx, __v
      mov rax, 0x1111111111111111
      SETFLAGS FLAGS_CLEAR
      %1 RA%2, RB%2
    CASE %1%2_r_%[__i]_s
      mov rbx, __v
      mov rax, 0x2222222222222222
      SETFLAGS FLAGS_SET
      %1 RA%2, RB%2
    CASE %1%2_m_%[__i]
      mov rbx, __v
      mov [SCRATCH], rbx
      mov rax, 0x3333333333333333
      SETFLAGS FLAGS_SET
      %1 RA%2, MSZ%2 [SCRATCH]
    %assign __i __i + 1
  %endrep
%endmacro

%macro SIZES3 2
  %1 %2, 16
  %1 %2, 32
  %1 %2, 64
%endmacro

SIZES3 BITTEST, bt
SIZES3 BITTEST, bts
SIZES3 BITTEST, btr
SIZES3 BITTEST, btc
SIZES3 BITSCAN, bsf
SIZES3 BITSCAN, bsr
SIZES3 BITSCAN, tzcnt
SIZES3 BITSCAN, lzcnt
SIZES3 BITSCAN, popcnt

CASE locked_bit_ops
  lea rdx, [BITS_AT]
  mov rcx, -13
  lock bts qword [rdx], rcx
  lock btr dword [rdx + 8], 31
  lock btc word [rdx + 16], 3
  mov ecx, 77
  lock btc qword [rdx], rcx

%macro BMI_CASES 1  ; size 32/64
  CASE bmi1_%1
    mov rax, 0x00F0F0F0F0F0F000
    mov rbx, 0x0000000000000C04
    SETFLAGS FLAGS_SET
    andn RC%1, RA%1, RB%1
    blsi RD%1, RA%1
    blsmsk RX%1, RA%1
    blsr r10, rax
    bextr r11, rax, rbx
  CASE bmi1_zero_%1
    xor eax, eax
    SETFLAGS FLAGS_SET
    blsi RB%1, RA%1
    blsr RC%1, RA%1
    blsmsk RD%1, RA%1
  CASE bmi2_%1
    mov rax, 0xFEDCBA9876543210
    mov rbx, 0x0F0F00FF0000FFFF
    mov ecx, 40
    SETFLAGS FLAGS_CLEAR
    bzhi RD%1, RA%1, RC%1
    pdep RX%1, RA%1, RB%1
    pext r10, rax, rbx
    bzhi r11, rax, rbx
  CASE bextr_%1_edges
    mov rax, -1
    mov ebx, 0x4020
    bextr RC%1, RA%1, RB%1
    mov ebx, 0xFF00
    bextr RD%1, RA%1, RB%1
    mov ebx, 0x0000
    SETFLAGS FLAGS_SET
    bextr r9, rax, rbx
%endmacro
BMI_CASES 32
BMI_CASES 64

; A register bit offset selects memory beyond the operand: BT* [m], r addresses
; m + (offset SAR log2(bits)) * (bits / 8), on other pages and outside the data region too.
CASE bit_offset_other_page
  lea rdx, [BITS_AT]
  mov rcx, 0x1234 * 8 + 5          ; +0x1234 bytes: the next page
  bts dword [rdx], ecx
  mov rcx, -0x1500 * 8 - 3         ; -0x1500 bytes: an earlier page
  btc qword [rdx], rcx
  mov ecx, 0x800 * 8 + 9
  btr word [rdx + 2], cx
  bt qword [rdx], rcx
  setc al
  mov rcx, 0x701 * 8
  lock bts qword [rdx], rcx

CASE bit_offset_beyond_region
  lea rdx, [BITS_AT]
  mov rcx, 0x100000 * 8            ; 1 MiB on: not mapped (a #PF, never a host access)
  bts qword [rdx], rcx

CASE bit_offset_far_negative
  lea rdx, [BITS_AT]
  mov rcx, -(1 << 62)
  bt qword [rdx], rcx              ; non-canonical address: #GP

END_CASES
