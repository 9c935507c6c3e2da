; Shifts and rotates: SHL SHR SAR ROL ROR RCL RCR at 8/16/32/64 bits by 1 (D1 form), by an
; immediate (0, small, size-1, beyond the size) and by CL (0, 1, around the operand size, above
; the 5/6-bit mask), with incoming CF clear and set; memory forms; SHLD/SHRD.
%include "prelude.inc"
%include "operands.inc"

%define NCOUNTS 10
%macro COUNT 1
  %if %1 == 0
    %assign __n 0
  %elif %1 == 1
    %assign __n 1
  %elif %1 == 2
    %assign __n 7
  %elif %1 == 3
    %assign __n 8
  %elif %1 == 4
    %assign __n 9
  %elif %1 == 5
    %assign __n 17
  %elif %1 == 6
    %assign __n 31
  %elif %1 == 7
    %assign __n 32
  %elif %1 == 8
    %assign __n 33
  %else
    %assign __n 63
  %endif
%endmacro

; SHIFT op, size
%macro SHIFT 2
  %assign __vi 0
  %rep 3
    %if __vi == 0
      VALUE %2, 3
    %elif __vi == 1
      VALUE %2, 8
    %else
      VALUE %2, 4
    %endif
    %assign __ci 0
    %rep NCOUNTS
      COUNT __ci
      CASE %1%2_cl%[__n]_%[__vi]
        mov rax, __v
        mov ecx, __n | 0x3300
        %if (__ci % 2) == 0
          SETFLAGS FLAGS_SET
        %else
          SETFLAGS FLAGS_CLEAR
        %endif
        %1 RA%2, cl
      %assign __ci __ci + 1
    %endrep
    CASE %1%2_one_%[__vi]_c
      mov rax, __v
      SETFLAGS FLAGS_CLEAR
      %1 RA%2, 1
    CASE %1%2_one_%[__vi]_s
      mov rax, __v
      SETFLAGS FLAGS_SET
      %1 RA%2, 1
    CASE %1%2_imm0_%[__vi]
      mov rax, __v
      SETFLAGS FLAGS_SET
      %1 RA%2, 0
    CASE %1%2_imm5_%[__vi]
      mov rbx, __v
      SETFLAGS FLAGS_CLEAR
      %1 RB%2, 5
    CASE %1%2_immtop_%[__vi]
      mov rbx, __v
      SETFLAGS FLAGS_SET
      %1 RB%2, %2 - 1
    CASE %1%2_mem_%[__vi]
      mov rax, __v
      mov [SCRATCH], rax
      mov [SCRATCH + 8], rax
      mov cl, 3
      SETFLAGS FLAGS_SET
      %1 MSZ%2 [SCRATCH], cl
      %1 MSZ%2 [SCRATCH + 8], 1
    %assign __vi __vi + 1
  %endrep
%endmacro

%macro ALL_SIZES 2
  %1 %2, 8
  %1 %2, 16
  %1 %2, 32
  %1 %2, 64
%endmacro

ALL_SIZES SHIFT, shl
ALL_SIZES SHIFT, shr
ALL_SIZES SHIFT, sar
ALL_SIZES SHIFT, rol
ALL_SIZES SHIFT, ror
ALL_SIZES SHIFT, rcl
ALL_SIZES SHIFT, rcr

; SHLD/SHRD by immediate and by CL (counts beyond 16 for 16-bit operands are undefined results;
; the hardware is the reference, so they are included).
%macro DOUBLE_SHIFT 2
  %assign __ci 0
  %rep NCOUNTS
    COUNT __ci
    CASE %1%2_cl%[__n]
      mov rax, 0x0123456789ABCDEF
      mov rbx, 0xF0E1D2C3B4A59687
      mov ecx, __n
      SETFLAGS FLAGS_SET
      %1 RA%2, RB%2, cl
    %assign __ci __ci + 1
  %endrep
  CASE %1%2_imm1
    mov rax, 0x8123456789ABCDEF
    mov rbx, 0x70E1D2C3B4A59687
    SETFLAGS FLAGS_CLEAR
    %1 RA%2, RB%2, 1
  CASE %1%2_imm0
    mov rax, 0x8123456789ABCDEF
    mov rbx, 0x70E1D2C3B4A59687
    SETFLAGS FLAGS_SET
    %1 RA%2, RB%2, 0
  CASE %1%2_imm13
    mov rax, 0x8123456789ABCDEF
    mov rbx, 0x70E1D2C3B4A59687
    SETFLAGS FLAGS_CLEAR
    %1 RA%2, RB%2, 13
  CASE %1%2_mem
    mov rax, 0x8123456789ABCDEF
    mov [SCRATCH], rax
    mov rbx, 0x70E1D2C3B4A59687
    mov cl, 7
    SETFLAGS FLAGS_CLEAR
    %1 MSZ%2 [SCRATCH], RB%2, cl
    %1 MSZ%2 [SCRATCH], RB%2, 3
%endmacro

DOUBLE_SHIFT shld, 16
DOUBLE_SHIFT shld, 32
DOUBLE_SHIFT shld, 64
DOUBLE_SHIFT shrd, 16
DOUBLE_SHIFT shrd, 32
DOUBLE_SHIFT shrd, 64

; BMI2 shifts (flags untouched) and RORX.
CASE bmi2_shifts
  mov rax, 0x8123456789ABCDEF
  mov ecx, 67
  SETFLAGS FLAGS_SET
  shlx rbx, rax, rcx
  shrx rdx, rax, rcx
  sarx rsi, rax, rcx
  shlx r8d, eax, ecx
  shrx r9d, eax, ecx
  sarx r10d, eax, ecx
  rorx r11, rax, 13
  rorx r12d, eax, 31
  sarx r13, [SCRATCH], rcx
CASE shift_chain
  mov rax, 0x8000000000000001
  SETFLAGS FLAGS_CLEAR
  shl rax, 1
  rcl rax, 1
  rcr rax, 2
  sar rax, 63
  ror rax, 4
END_CASES
