; Addressing: memory operands with every base register (RSP, RBP, R12 and R13 need SIB bytes or
; forced displacements), every index register with scales 1/2/4/8, no displacement, 8-bit and
; 32-bit displacements (positive and negative), no base (SIB disp32), absolute, RIP-relative,
; 32-bit address size (67h, including wrap-around at 4 GiB), ignored segment overrides, and LEA
; in all operand and address sizes.
%include "prelude.inc"
[warning -prefix-seg]

%define BASE_ABS (DATA_VA + 0x1000)

%macro REGNAME 1
  %if %1 == 0
    %define __r rax
  %elif %1 == 1
    %define __r rcx
  %elif %1 == 2
    %define __r rdx
  %elif %1 == 3
    %define __r rbx
  %elif %1 == 4
    %define __r rsp
  %elif %1 == 5
    %define __r rbp
  %elif %1 == 6
    %define __r rsi
  %elif %1 == 7
    %define __r rdi
  %elif %1 == 8
    %define __r r8
  %elif %1 == 9
    %define __r r9
  %elif %1 == 10
    %define __r r10
  %elif %1 == 11
    %define __r r11
  %elif %1 == 12
    %define __r r12
  %elif %1 == 13
    %define __r r13
  %elif %1 == 14
    %define __r r14
  %else
    %define __r r15
  %endif
%endmacro

; One case per base register: every other register as index, scales and displacements varied.
%assign __b 0
%rep 16
  REGNAME __b
  %xdefine __base __r
  CASE mem_base_%[__base]
    mov __base, BASE_ABS
    add qword [__base], 0x11
    add byte [__base + 1], 0x22
    add dword [__base - 0x40], 0x33
    add word [__base + 0x123], 0x44
    add qword [__base - 0x345], 0x55
    %assign __x 0
    %assign __k 0
    %rep 16
      %if __x != __b && __x != 4
        REGNAME __x
        %xdefine __index __r
        %assign __s 1 << (__k % 4)
        %if (__k % 3) == 0
          %assign __d 0
        %elif (__k % 3) == 1
          %assign __d -0x28
        %else
          %assign __d 0x2F0
        %endif
        mov __index, __k + 1
        add qword [__base + __index * __s + __d], __k + 1
        %assign __k __k + 1
      %endif
      %assign __x __x + 1
    %endrep
    %if __b == 4
      mov rsp, STACK_TOP
    %endif
  %assign __b __b + 1
%endrep

; Index only (no base): SIB with disp32.
%assign __x 0
%rep 16
  %if __x != 4
    REGNAME __x
    CASE mem_index_only_%[__r]
      mov __r, 0x40
      add qword [__r * 8 + BASE_ABS], 1
      add dword [__r * 2 + BASE_ABS - 0x10], 2
      add byte [__r + BASE_ABS + 0x100], 3
      mov __r, -4
      add word [__r * 4 + BASE_ABS], 4
  %endif
  %assign __x __x + 1
%endrep

CASE mem_absolute_and_riprel
  mov rax, [abs BASE_ABS]
  mov rbx, [DATA(0x1008)]
  add [abs BASE_ABS + 0x10], rax
  add [DATA(0x1018)], rbx
  inc dword [rel $ + (DATA_VA - CODE_VA)]
  lea rcx, [rel $]
  lea rdx, [DATA(0)]
CASE mem_riprel_imm_after_disp
  ; RIP-relative with an immediate following the displacement: RIP is the next instruction.
  add dword [DATA(0x20)], 0x12345678
  add byte [DATA(0x24)], 0x7F
  mov qword [DATA(0x28)], -2
  cmp word [DATA(0x30)], 0x1234
  setne al
CASE mem_a32_forms
  mov rbx, 0xFFFFFFFF00000000 | BASE_ABS
  mov rcx, 0x1234567800000004
  add dword [ebx], 1
  add dword [ebx + ecx * 4 + 8], 2
  add dword [ecx * 8 + BASE_ABS], 3
  mov esi, BASE_ABS
  mov eax, [esi - 8]
  lea edx, [ebx + ecx * 2 + 0x100]
CASE mem_a32_wraparound
  mov ebx, 0xFFFFFFF0
  add qword [ebx + DATA_VA + 0x10], 1
  mov ecx, 0x80000000
  add qword [ecx * 2 + DATA_VA + 0x20], 2
CASE mem_segment_overrides_ignored
  mov rbx, BASE_ABS
  add qword [cs:rbx], 1
  add qword [ds:rbx + 8], 2
  add qword [es:rbx + 16], 3
  add qword [ss:rbx + 24], 4
  mov rax, [ss:rsp]
CASE mem_rbp_r13_disp0
  mov rbp, BASE_ABS
  mov r13, BASE_ABS + 0x40
  add qword [rbp], 1
  add qword [r13], 2
  add qword [rbp + r13 * 1 - BASE_ABS - 0x40 + 8], 3
  add qword [r13 + rbp * 1 - BASE_ABS], 4
CASE mem_rsp_r12_base
  mov r12, BASE_ABS
  add qword [r12], 1
  add qword [rsp], 2
  add qword [r12 + 8], 3
  add qword [rsp - 8], 4
  mov rax, [rsp + 8]
CASE mem_r12_as_index
  mov rbx, BASE_ABS
  mov r12, 3
  add qword [rbx + r12 * 8], 5
  add qword [r12 * 4 + BASE_ABS], 6
CASE lea_forms
  mov rbx, 0x123456789ABCDEF0
  mov rcx, 0x0FEDCBA987654321
  lea rax, [rbx + rcx * 8 + 0x7FFFFFFF]
  lea edx, [rbx + rcx * 4 - 1]
  lea si, [rbx + rcx * 2 + 0x1234]
  lea rdi, [rcx * 8]
  lea r8, [rbx + rbx * 4]
  lea r9d, [ecx + ebx]
  lea r10w, [ebx + 0x7FFF]
  lea r11, [rsp + 8]
  lea r12, [rbp - 0x80]
  lea r13, [r13 + r13 * 2]
  lea r14, [abs 0xFFFFFFFF80000000]
  lea r15, [rel $ + 0x1000]
CASE lea_no_flags
  SETFLAGS FLAGS_SET
  lea rax, [rax + 1]
  lea rbx, [rbx - 1]
END_CASES
