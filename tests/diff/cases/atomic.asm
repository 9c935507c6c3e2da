; Atomics: CMPXCHG (success and failure) at every size in register and memory forms with and
; without LOCK, CMPXCHG8B/CMPXCHG16B (including the #GP of a misaligned CMPXCHG16B), XADD,
; XCHG (register, memory, accumulator short forms), and LOCK on a register operand (#UD).
%include "prelude.inc"
%include "operands.inc"

%macro CMPXCHG_CASES 1  ; size
  CASE cmpxchg%1_rr_eq
    mov rax, 0x1122334455667788
    mov rcx, rax
    mov rbx, 0x99AABBCCDDEEFF00
    SETFLAGS FLAGS_CLEAR
    cmpxchg RC%1, RB%1
  CASE cmpxchg%1_rr_ne
    mov rax, 0x1122334455667788
    mov rcx, 0x1122334455667789
    mov rbx, 0x99AABBCCDDEEFF00
    SETFLAGS FLAGS_SET
    cmpxchg RC%1, RB%1
  CASE cmpxchg%1_mr_eq
    mov rax, [SCRATCH]
    mov rbx, 0x0F0E0D0C0B0A0908
    SETFLAGS FLAGS_SET
    lock cmpxchg MSZ%1 [SCRATCH], RB%1
  CASE cmpxchg%1_mr_ne
    mov rax, [SCRATCH]
    not rax
    mov rbx, 0x0F0E0D0C0B0A0908
    SETFLAGS FLAGS_CLEAR
    lock cmpxchg MSZ%1 [SCRATCH], RB%1
  CASE cmpxchg%1_mr_nolock
    mov rax, [SCRATCH + 8]
    mov rdx, 0x7777777777777777
    cmpxchg MSZ%1 [SCRATCH + 8], RD%1
  CASE xadd%1_rr
    mov rax, 0x7FFFFFFFFFFFFFFF
    mov rbx, 0x8000000000000001
    SETFLAGS FLAGS_SET
    xadd RA%1, RB%1
  CASE xadd%1_mr
    mov rbx, 0x0123456789ABCDEF
    SETFLAGS FLAGS_CLEAR
    lock xadd MSZ%1 [SCRATCH + 16], RB%1
  CASE xchg%1_rr
    mov rax, 0x1111111111111111
    mov rbx, 0x2222222222222222
    xchg RA%1, RB%1
    xchg RB%1, RD%1
  CASE xchg%1_mr
    mov rbx, 0x3333333333333333
    xchg MSZ%1 [SCRATCH + 24], RB%1
    lock xchg MSZ%1 [SCRATCH + 32], RC%1
%endmacro

CMPXCHG_CASES 8
CMPXCHG_CASES 16
CMPXCHG_CASES 32
CMPXCHG_CASES 64

CASE cmpxchg8b_eq
  mov eax, [SCRATCH + 64]
  mov edx, [SCRATCH + 68]
  mov ebx, 0xAAAAAAAA
  mov ecx, 0xBBBBBBBB
  SETFLAGS FLAGS_CLEAR
  lock cmpxchg8b [SCRATCH + 64]
CASE cmpxchg8b_ne
  mov rax, -1
  mov rdx, -1
  mov ebx, 0xAAAAAAAA
  mov ecx, 0xBBBBBBBB
  SETFLAGS FLAGS_SET
  lock cmpxchg8b [SCRATCH + 64]
CASE cmpxchg16b_eq
  mov rax, [SCRATCH + 128]
  mov rdx, [SCRATCH + 136]
  mov rbx, 0x0101010101010101
  mov rcx, 0x0202020202020202
  SETFLAGS FLAGS_CLEAR
  lock cmpxchg16b [SCRATCH + 128]
CASE cmpxchg16b_ne
  mov rax, [SCRATCH + 128]
  mov rdx, [SCRATCH + 128]
  mov rbx, 0x0101010101010101
  mov rcx, 0x0202020202020202
  SETFLAGS FLAGS_SET
  lock cmpxchg16b [SCRATCH + 128]
CASE cmpxchg16b_nolock
  mov rax, [SCRATCH + 144]
  mov rdx, [SCRATCH + 152]
  mov rbx, 5
  mov rcx, 6
  cmpxchg16b [SCRATCH + 144]
CASE cmpxchg16b_misaligned_gp
  mov rax, 1
  mov rbx, 2
  lock cmpxchg16b [SCRATCH + 136]
  mov rax, 3
CASE xchg_short_forms
  mov rax, 0x1111111111111111
  mov rbx, 0x2222222222222222
  mov r8, 0x3333333333333333
  xchg rax, rbx
  xchg eax, r8d
  xchg ax, bx
  db 0x87, 0xC0  ; xchg eax, eax (zero-extends, unlike NOP)
  db 0x90        ; nop
CASE lock_on_register_ud
  mov eax, 1
  db 0xF0, 0x01, 0xD8  ; lock add eax, ebx
  mov eax, 2
CASE lock_on_mov_ud
  db 0xF0, 0x89, 0x03  ; lock mov [rbx], eax
CASE cmpxchg_loop
  lea rdi, [SCRATCH + 200]
  mov qword [rdi], 10
.retry:
  mov rax, [rdi]
  lea rcx, [rax + 7]
  lock cmpxchg [rdi], rcx
  jnz .retry
  mov rax, [rdi]
  cmp rax, 100
  jb .retry
END_CASES
