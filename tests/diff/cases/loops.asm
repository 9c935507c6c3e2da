; Counted loops: blocks that branch back to themselves with `cmp iv, bound; jb/jne`, which the
; translator versions (memory ranges checked once per page, a host base register per address
; group). The data region's four pages are scattered in guest physical memory, so a stream that
; crosses a page boundary must find the next page through a new check; a stream that runs off
; the region must fault at exactly the right iteration.
%include "prelude.inc"

; Byte stream over the whole region (three page crossings), mixing into several registers.
CASE loop_byte_stream
  mov rdi, DATA_VA
  xor ecx, ecx
  mov esi, DATA_SIZE
  xor r8d, r8d
  mov r9, 0x9E3779B97F4A7C15
.loop:
  movzx eax, byte [rdi + rcx]
  add r8, rax
  xor r9, rax
  imul r9, r9, 0x1F3
  inc rcx
  cmp rcx, rsi
  jb .loop

; The benchmark's shape: a byte stream feeding a histogram of dword counters in another page.
CASE loop_histogram
  mov rdi, DATA_VA
  mov rdx, DATA_VA + 0x2400
  xor ecx, ecx
  mov esi, 0x2000
.loop:
  movzx eax, byte [rdi + rcx]
  inc dword [rdx + rax * 4]
  xor r10, rax
  inc rcx
  cmp rcx, rsi
  jb .loop

; The histogram straddles two pages that are not adjacent in physical memory: its range can
; never be checked as one, so every iteration takes the ordinary path.
CASE loop_histogram_straddling
  mov rdi, DATA_VA
  mov rdx, DATA_VA + 0x2E00
  xor ecx, ecx
  mov esi, 0x1800
.loop:
  movzx eax, byte [rdi + rcx]
  add word [rdx + rax * 2 + 0x100], ax
  inc rcx
  cmp rcx, rsi
  jb .loop

; Stores with scale 8 and an immediate bound.
CASE loop_store_stream
  mov rdi, DATA_VA + 0x100
  xor ecx, ecx
  mov rax, 0x0123456789ABCDEF
.loop:
  mov [rdi + rcx * 8], rax
  rol rax, 7
  add rax, rcx
  inc rcx
  cmp rcx, 0x600
  jb .loop

; A pointer as the induction variable, step 8, JNE latch.
CASE loop_pointer_jne
  mov rdi, DATA_VA + 8
  lea rsi, [rdi + 0x3000]
  xor ebx, ebx
.loop:
  mov rax, [rdi]
  add rbx, rax
  not qword [rdi - 8]
  add rdi, 8
  cmp rdi, rsi
  jne .loop

; JNE with step 2 and a bound the induction variable hits exactly; LEA as the update.
CASE loop_lea_step2
  mov rdi, DATA_VA
  mov rcx, 0x10
  xor edx, edx
.loop:
  movzx eax, word [rdi + rcx]
  lea rcx, [rcx + 2]
  add rdx, rax
  cmp rcx, 0x2A10
  jne .loop

; Accesses after the update see the next value of the induction variable.
CASE loop_access_after_update
  mov rdi, DATA_VA
  xor ecx, ecx
  xor edx, edx
.loop:
  inc rcx
  movzx eax, byte [rdi + rcx]
  sub rdx, rax
  mov [rdi + rcx + 0x1FFF], dl
  cmp rcx, 0x1FF0
  jb .loop

; A recurrence through memory: each byte depends on the one stored in the previous iteration.
CASE loop_recurrence
  mov rdi, DATA_VA + 0x7F0
  xor ecx, ecx
.loop:
  movzx eax, byte [rdi + rcx]
  add al, 0x35
  mov [rdi + rcx + 1], al
  inc rcx
  cmp rcx, 0x1000
  jb .loop

; The stream runs off the end of the region: #PF at the first byte past it, with the registers
; of that iteration.
CASE loop_fault_past_region
  mov rdi, DATA_VA
  mov ecx, DATA_SIZE - 0x180
  mov esi, DATA_SIZE + 0x100
  xor r8d, r8d
.loop:
  movzx eax, byte [rdi + rcx]
  add r8, rax
  inc rcx
  cmp rcx, rsi
  jb .loop

; Stack slots (RSP is invariant in the loop) and a RIP-relative counter.
CASE loop_stack_and_riprel
  sub rsp, 0x40
  mov qword [rsp + 8], 0
  mov qword [rsp + 0x10], 1
  xor ecx, ecx
.loop:
  mov rax, [rsp + 8]
  add rax, rcx
  mov [rsp + 8], rax
  xor [rsp + 0x10], rax
  add [rel DATA(0x200)], rcx
  inc rcx
  cmp rcx, 3000
  jb .loop
  add rsp, 0x40

; A step that is not a power of two keeps the stream checked per access; the invariant access
; next to it is still hoisted (the checked access's slow path runs inside the fast version).
CASE loop_mixed_checked
  mov rdi, DATA_VA
  mov rdx, DATA_VA + 0x3800
  xor ecx, ecx
.loop:
  movzx eax, byte [rdi + rcx]
  add [rdx + 0x10], rax
  add rcx, 3
  cmp rcx, 0x3400
  jb .loop

; Flags live into the loop (ADC): the loop is not versioned; its result must not change.
CASE loop_flags_live
  mov rdi, DATA_VA
  xor ecx, ecx
  xor eax, eax
  clc
.loop:
  adc rax, [rdi + rcx * 8]
  lea rcx, [rcx + 1]
  mov rdx, rcx
  sub rdx, 0x400
  jnz .loop

; The induction variable starts past the bound: a JB loop runs its body once.
CASE loop_runs_once
  mov rdi, DATA_VA
  mov ecx, 0x500
  mov esi, 0x100
.loop:
  add byte [rdi + rcx], 7
  inc rcx
  cmp rcx, rsi
  jb .loop

; Hoisted accesses are only those that cannot fault once their page is checked: a MOVDQA (an
; SSE move, though Zydis files it under DATAXFER) faults on a misaligned address. Iteration 0
; runs in the block before the loop; the #GP comes in the loop block's first iteration, with the
; flags of the CMP before it (the fast version starts with the header's flags).
CASE loop_sse_misaligned_gp
  mov rdi, DATA_VA + 0x100
  xor ecx, ecx
  mov esi, 0x200
.loop:
  movdqa xmm0, [rdi + rcx]
  add eax, 1
  add rcx, 8
  cmp rcx, rsi
  jb .loop

; The same for PAND (LOGICAL in Zydis) with the misaligned access at the second iteration.
CASE loop_sse_logical_misaligned_gp
  mov rdi, DATA_VA + 0x200
  xor ecx, ecx
.loop:
  pand xmm1, [rdi + rcx * 8]
  sub edx, 3
  inc rcx
  cmp rcx, 0x40
  jb .loop

END_CASES
