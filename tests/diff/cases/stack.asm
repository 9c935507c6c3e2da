; Stack operations: PUSH/POP of registers (64- and 16-bit), immediates, memory (including
; POP [RSP+n], PUSH [RSP], PUSH RSP, POP RSP), CALL/RET (relative, register, memory, RET imm16,
; recursion), ENTER (nesting levels 0, 1, 3, 31) and LEAVE, PUSHF/POPF of the arithmetic flags
; and DF, and a misaligned stack.
%include "prelude.inc"

CASE push_pop_regs
  push rax
  push rbx
  push r12
  push r15
  pop rcx
  pop rdx
  pop r8
  pop r9
CASE push_pop_16bit
  mov rax, 0x1111111111112222
  push ax
  push word 0x7F80
  pop bx
  pop r10w
CASE push_imm
  push byte -5
  push dword 0x7FFFFFFF
  push dword -0x80000000
  push word -2
  pop rax
  pop bx
  pop rcx
  pop rdx
CASE push_pop_mem
  push qword [SCRATCH]
  push qword [rsp]
  pop qword [SCRATCH + 16]
  pop qword [rsp - 16]
  push word [SCRATCH + 32]
  pop word [SCRATCH + 40]
CASE pop_to_rsp_relative
  push rax
  push rbx
  pop qword [rsp]
  pop qword [rsp + 8]
  sub rsp, 16
  pop rcx
CASE push_rsp_pop_rsp
  push rsp
  pop rax
  push rsp
  pop rsp
  mov rbx, rsp
  push rbx
  pop rsp
  push sp
  pop cx
CASE call_ret_rel
  call .f
  mov ebx, 1
  jmp .done
.f:
  mov eax, 2
  ret
.done:
CASE call_reg_mem
  lea rax, [.g]
  call rax
  mov [SCRATCH], rax
  call [SCRATCH]
  jmp .done
.g:
  add ecx, 5
  ret
.done:
CASE ret_imm
  push 1
  push 2
  call .f
  jmp .done
.f:
  ret 16
.done:
CASE ret_imm16_word
  push 1
  call .f
  jmp .done
.f:
  ret 8
.done:
CASE recursion
  mov ecx, 40
  xor eax, eax
  call .rec
  jmp .done
.rec:
  add rax, rcx
  dec ecx
  jz .leaf
  push rcx
  call .rec
  pop rcx
.leaf:
  ret
.done:
CASE enter_leave_level0
  mov rbp, 0x5555
  enter 0, 0
  mov rax, rbp
  leave
CASE enter_frame
  enter 40, 0
  mov qword [rbp - 8], 7
  mov rbx, rsp
  leave
CASE enter_level1
  lea rbp, [rsp - 64]
  enter 16, 1
  mov rax, rsp
  mov rbx, rbp
  leave
CASE enter_level3
  lea rbp, [rsp - 256]
  mov qword [rbp - 8], 0x1111
  mov qword [rbp - 16], 0x2222
  mov qword [rbp - 24], 0x3333
  enter 24, 3
  mov rax, rsp
  leave
CASE enter_level31
  lea rbp, [rsp - 512]
  enter 8, 31
  mov rax, rsp
  mov rbx, rbp
  leave
CASE enter_16bit
  lea rbp, [rsp - 64]
  o16 enter 16, 2
  mov rax, rsp
  o16 leave
CASE pushf_popf_masked
  SETFLAGS 0xCD7
  pushfq
  and qword [rsp], 0xCD7
  pop rax
  SETFLAGS 0x402
  pushfq
  and qword [rsp], 0xCD7
  pop rbx
  cld
CASE pushf16
  SETFLAGS 0x8C3
  pushfw
  and word [rsp], 0xCD7
  pop cx
CASE popf_sets_flags
  push 0x0CD7
  popfq
  lahf
  seto bl
  push 0x0002
  popfq
  cld
  lahf
CASE lahf_sahf
  mov ah, 0xD5
  sahf
  mov ah, 0
  lahf
  mov bl, ah
  mov ah, 0x00
  sahf
CASE misaligned_stack
  sub rsp, 3
  push rax
  push word 5
  call .f
  pop cx
  pop rdx
  add rsp, 3
  jmp .done
.f:
  mov eax, [rsp + 8]
  ret
.done:
CASE stack_args_frame
  push rbp
  mov rbp, rsp
  sub rsp, 32
  mov [rbp - 8], rdi
  mov [rbp - 16], rsi
  mov rax, [rbp - 8]
  add rax, [rbp - 16]
  mov rsp, rbp
  pop rbp
CASE push_mem_forms
  lea rdi, [SCRATCH]
  mov rbx, 3
  push qword [rdi]
  push qword [rdi + 8]
  push qword [rdi + rbx * 8]
  push qword [rdi + rbx * 8 - 16]
  push qword [rsp + 8]
  push qword [rsp]
  push qword [SCRATCH + 24]
  push qword [abs SCRATCH_ABS + 32]
  mov [SCRATCH + 40], rsp
  push qword [SCRATCH + 40]
  pop rax
CASE push_mem_rcx_base_flags_live
  SETFLAGS FLAGS_SET
  lea rcx, [SCRATCH]
  mov rdx, 8
  push qword [rcx + 8]
  push qword [rcx + rdx * 2]
  push qword [rdx + rcx]
CASE push_mem_flags_dead_after
  SETFLAGS FLAGS_SET
  push qword [SCRATCH]
  add eax, 1
  push qword [rsp + 16]
  sub ebx, ecx
CASE push_mem_loop
  mov ecx, 6
  lea rsi, [SCRATCH]
.l:
  push qword [rsi + rcx * 8]
  sub ecx, 1
  jnz .l
END_CASES
