; Conditional instructions: SETcc, CMOVcc (register and memory, 16/32/64-bit; the 32-bit form
; zero-extends even when the condition is false; the memory operand is read, and faults, even
; when the condition is false), Jcc short and near, for all 16 conditions under all 32
; combinations of CF PF ZF SF OF; JRCXZ/JECXZ, LOOP/LOOPE/LOOPNE.
%include "prelude.inc"

%define SLOTS DATA(0x1000)

%macro ALLCC 1  ; per-condition macro taking (cc, index)
  %1 o, 0
  %1 no, 1
  %1 b, 2
  %1 ae, 3
  %1 e, 4
  %1 ne, 5
  %1 be, 6
  %1 a, 7
  %1 s, 8
  %1 ns, 9
  %1 p, 10
  %1 np, 11
  %1 l, 12
  %1 ge, 13
  %1 le, 14
  %1 g, 15
%endmacro

%macro SET_ONE 2
  set%1 byte [SLOTS + %2]
%endmacro
%macro CMOV_ONE 2
  mov eax, 0xAAAA0000 + %2
  cmov%1 eax, ecx
  mov [SLOTS + 16 + 4 * %2], eax
  mov rdx, rbx
  cmov%1 rdx, [SLOTS + 256]
  mov [SLOTS + 80 + 8 * %2], rdx
  mov si, 0x55
  cmov%1 si, di
  mov [SLOTS + 208 + 2 * %2], si
%endmacro
%macro JCC_ONE 2
  j%1 short %%taken
  lea r8, [r8 + 1]
  jmp short %%next
%%taken:
  lea r9, [r9 + (1 << %2)]
%%next:
  j%1 near %%taken2
  jmp near %%next2
%%taken2:
  lea r10, [r10 + (1 << %2)]
%%next2:
%endmacro

%assign __p 0
%rep 32
  %assign __f 0x002
  %if __p & 1
    %assign __f __f | F_CF
  %endif
  %if __p & 2
    %assign __f __f | F_PF
  %endif
  %if __p & 4
    %assign __f __f | F_ZF
  %endif
  %if __p & 8
    %assign __f __f | F_SF
  %endif
  %if __p & 16
    %assign __f __f | F_OF
  %endif
  CASE setcc_flags%[__p]
    SETFLAGS __f
    ALLCC SET_ONE
  CASE cmovcc_flags%[__p]
    mov ecx, 0x12345678
    mov rbx, 0x0BADF00D0BADF00D
    mov di, 0x7EE7
    SETFLAGS __f
    ALLCC CMOV_ONE
  CASE jcc_flags%[__p]
    xor r8d, r8d
    xor r9d, r9d
    xor r10d, r10d
    SETFLAGS __f
    ALLCC JCC_ONE
  %assign __p __p + 1
%endrep

CASE cmov_mem_faults_when_false
  xor eax, eax
  mov rbx, 0x50000000
  cmp eax, eax
  cmovne rcx, [rbx]
  mov eax, 1
CASE cmov32_false_zero_extends
  mov rax, -1
  mov rcx, -1
  xor edx, edx
  test edx, edx
  cmovnz eax, ecx
CASE jrcxz_jecxz
  xor r8d, r8d
  mov rcx, 0x100000000
  jrcxz .a
  lea r8, [r8 + 1]
.a:
  jecxz .b
  lea r8, [r8 + 2]
.b:
  xor ecx, ecx
  jrcxz .c
  lea r8, [r8 + 4]
.c:
CASE loop_forms
  mov ecx, 10
  xor eax, eax
.l1:
  add eax, ecx
  loop .l1
  mov ecx, 10
.l2:
  inc ebx
  cmp ebx, 0x7FFFFFF0
  loopne .l2
  mov ecx, 8
  xor edx, edx
.l3:
  inc edx
  test edx, 0
  loope .l3
CASE loop_a32
  mov rcx, 0xFFFFFFFF00000005
  xor eax, eax
.l:
  inc eax
  a32 loop .l
END_CASES
