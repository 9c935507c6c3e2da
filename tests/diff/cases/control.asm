; Control flow as a translator sees it: long loops (chained blocks), backward conditional
; branches, jump tables through memory (indirect-branch lookup), indirect calls cycling through
; several targets, deep recursion (return prediction), a return address changed on the stack,
; jumps into the middle of an instruction (overlapping code), a block longer than any sane
; block limit, jumps to the no-execute data region.
%include "prelude.inc"

CASE loop_sum_10000
  xor eax, eax
  mov ecx, 10000
.l:
  add rax, rcx
  dec ecx
  jnz .l
CASE nested_loops
  xor eax, eax
  mov esi, 50
.outer:
  mov ecx, 40
.inner:
  lea rax, [rax + rcx * 2]
  xor rax, rsi
  loop .inner
  dec esi
  jnz .outer
CASE backward_branch_on_carry
  mov eax, 1
  xor ebx, ebx
.l:
  inc ebx
  shl eax, 1
  jnc .l
CASE jump_table
  xor ebx, ebx
  xor ecx, ecx
.next:
  mov eax, ecx
  and eax, 3
  lea rdx, [.table]
  jmp [rdx + rax * 8]
.t0:
  add ebx, 1
  jmp .cont
.t1:
  add ebx, 10
  jmp .cont
.t2:
  add ebx, 100
  jmp .cont
.t3:
  add ebx, 1000
.cont:
  inc ecx
  cmp ecx, 40
  jb .next
  jmp .done
  align 8
.table:
  dq .t0, .t1, .t2, .t3
.done:
CASE jump_table_in_data
  lea rsi, [.t0]
  mov [SCRATCH], rsi
  lea rsi, [.t1]
  mov [SCRATCH + 8], rsi
  xor ebx, ebx
  mov ecx, 30
.l:
  mov eax, ecx
  and eax, 1
  jmp [SCRATCH + rax * 8]
.t0:
  add ebx, 3
  jmp .c
.t1:
  sub ebx, 1
.c:
  loop .l
CASE indirect_calls_cycle
  lea r8, [.f0]
  lea r9, [.f1]
  lea r10, [.f2]
  xor eax, eax
  mov ecx, 60
.l:
  call r8
  call r9
  call r10
  xchg r8, r9
  xchg r9, r10
  loop .l
  jmp .done
.f0:
  add eax, 1
  ret
.f1:
  imul eax, eax, 3
  ret
.f2:
  xor eax, 0x55
  ret
.done:
CASE recursion_fib
  mov edi, 15
  call .fib
  jmp .done
.fib:
  cmp edi, 2
  jb .leaf
  push rdi
  dec edi
  call .fib
  pop rdi
  push rax
  sub edi, 2
  call .fib
  pop rdx
  add eax, edx
  ret
.leaf:
  mov eax, edi
  ret
.done:
CASE return_address_changed
  call .f
  mov eax, 1            ; skipped: .f returns to .other
  jmp .done
.other:
  mov eax, 2
  jmp .done
.f:
  lea rbx, [.other]
  mov [rsp], rbx
  ret
.done:
CASE ret_to_popped_and_pushed
  lea rax, [.target]
  push rax
  ret
  mov ebx, 1
.target:
  mov ecx, 2
CASE jump_into_instruction
  ; B8 EB 02 ... : "mov eax, imm32" whose immediate starts with "jmp +2".
  xor ebx, ebx
  jmp .inside + 1
.inside:
  mov eax, 0x9002EB90   ; bytes: B8 90 EB 02 90 -> from +1: nop ; jmp +2 (over "90 xx")
  db 0x90, 0x90
  inc ebx
  mov eax, 0x9002EB90
  inc ebx
CASE overlapping_paths
  mov ecx, 3
  xor edx, edx
.l:
  db 0xB8               ; mov eax, imm32 whose immediate is "inc edx ; nop ; nop"
.mid:
  db 0xFF, 0xC2, 0x90, 0x90
  dec ecx
  jz .done
  test ecx, 1
  jnz .mid
  jmp .l
.done:
CASE long_straight_block
%rep 600
  add eax, ebx
  rol ebx, 3
%endrep
CASE long_block_with_stores
%assign __i 0
%rep 200
  mov [SCRATCH + (__i % 64) * 8], rax
  add rax, [SCRATCH + ((__i + 7) % 64) * 8]
  %assign __i __i + 1
%endrep
CASE jump_to_nx_data
  lea rax, [DATA(0x300)]
  mov byte [rax], 0xC3
  call rax
CASE jump_to_noncanonical
  mov rax, 0x0000800000000000
  jmp rax
CASE ret_to_noncanonical
  mov rax, 0x0000800000000000
  push rax
  ret
CASE ret_imm_to_noncanonical
  mov rax, 0xFFFF7FFFFFFFFFFF
  push rax
  SETFLAGS FLAGS_SET
  ret 16
CASE call_reg_to_noncanonical
  mov rcx, 0x8000000000000000
  mov rbx, 5
  SETFLAGS FLAGS_SET
  call rcx                   ; #GP with RSP unchanged (the host writes the return address)
CASE call_mem_to_noncanonical
  mov rax, 0x0000800000000000
  mov [SCRATCH], rax
  call [SCRATCH]
CASE jmp_mem_to_noncanonical
  mov rax, 0x1234567800000000
  mov [SCRATCH + 8], rax
  lea rsi, [SCRATCH]
  jmp [rsi + 8]
CASE conditional_chain_all_paths
  xor eax, eax
  mov ecx, 64
.l:
  test ecx, 1
  jz .even
  add eax, 3
  test ecx, 2
  jnz .skip
  sub eax, 1
.skip:
  jmp .next
.even:
  xor eax, ecx
.next:
  dec ecx
  jnz .l
END_CASES
