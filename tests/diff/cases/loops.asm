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

; CRC-style table lookup: the index register is written three times in the iteration, the last
; time by MOVZX (bounded), so the table is one checked range.
CASE loop_crc_table
  mov rdi, DATA_VA
  lea r8, [rdi + 0x1800]
  mov r9, DATA_VA + 0x2400
  mov ecx, 0xFFFFFFFF
.loop:
  movzx r15d, byte [rdi]
  add rdi, 1
  xor r15d, ecx
  shr ecx, 8
  movzx r15d, r15b
  xor ecx, [r9 + r15 * 4]
  cmp rdi, r8
  jne .loop

; AND with an immediate bounds the index too.
CASE loop_and_bounded_index
  mov rsi, DATA_VA + 0x3000
  xor ecx, ecx
  xor eax, eax
.loop:
  mov edx, ecx
  imul edx, edx, 0x45
  and edx, 0x1FF
  add al, [rsi + rdx * 2]
  add [rsi + rdx * 2 + 1], cl
  inc rcx
  cmp rcx, 5000
  jb .loop

; Count latches: any Jcc back to the loop start. DEC/JNZ with a byte stream (DEC keeps CF, which
; the last ADD set: the flags at the exit must be exact).
CASE loop_dec_jnz_stream
  mov rsi, DATA_VA + 0x10
  mov rdx, DATA_VA + 0x3F00
  mov ecx, 0x2F00
  xor ebx, ebx
.loop:
  movzx eax, byte [rsi]
  add rbx, rax
  xor [rdx], rax
  inc rsi
  dec rcx
  jnz .loop

; The kernel decompressor's dictionary-copy shape: SUB r32, 1 / JNZ, an invariant-base group
; read and written every iteration, and accesses through a register loaded from memory (checked
; per access).
CASE loop_sub_jnz_dictionary
  mov rax, DATA_VA + 0x3800
  mov qword [rax], DATA_VA
  mov qword [rax + 0x10], 0x100
  mov qword [rax + 0x28], 0x700
  xor ecx, ecx
  mov edx, 0x100
  mov r10d, 0
  mov edi, 0x900
.loop:
  mov r8, [rax]
  lea r9, [rdx + 1]
  lea rsi, [rcx + 1]
  mov [rax + 0x10], r9
  movzx ecx, byte [r8 + rcx]
  mov [r8 + rdx], cl
  cmp rsi, [rax + 0x28]
  cmovz rsi, r10
  mov rdx, [rax + 0x10]
  mov rcx, rsi
  sub edi, 1
  jnz .loop

; strlen-style: the loop ends on data (TEST / JNZ), the pointer is the induction variable.
CASE loop_test_jnz_scan
  mov rdi, DATA_VA
  mov byte [rdi + 0x2345], 0
  xor ecx, ecx
.fill:                              ; no zero byte before 0x2345
  or byte [rdi + rcx], 1
  inc rcx
  cmp rcx, 0x2345
  jb .fill
  mov rdx, rdi
.loop:
  mov al, [rdi]
  add [rdx + 0x3000], al
  inc rdi
  test al, al
  jnz .loop
  sub rdi, rdx

; A signed latch (CMP / JL) with a stride-4 stream and stores.
CASE loop_jl_signed
  mov rsi, DATA_VA + 0x20
  mov rcx, -600
  mov rdx, 1500
  xor eax, eax
.loop:
  add eax, [rsi]
  mov [rsi + 0x2000], eax
  add rsi, 4
  add rcx, 1
  cmp rcx, rdx
  jl .loop

; A DEC/JNZ stream running off the region: #PF at the exact iteration, flags as DEC left them.
CASE loop_dec_jnz_fault
  mov rsi, DATA_SIZE - 0x40
  add rsi, DATA_VA
  mov rdx, DATA_VA + 0x100
  mov ecx, 0x80
  xor ebx, ebx
.loop:
  add bl, [rsi]
  add [rdx], bl
  inc rsi
  dec ecx
  jnz .loop

; SIMD in counted loops: the workload's scalar-double matmul inner loop (two induction
; variables, scalar SSE loads, FP arithmetic on memory, stores).
CASE loop_sse_scalar_axpy
  mov r12, DATA_VA
  mov rdx, DATA_VA + 0x2000
  lea r9, [rdx + 0x1000]
  mov rax, 0x3FF8000000000000        ; 1.5
  movq xmm1, rax
.loop:
  movsd xmm0, [r12]
  add rdx, 8
  add r12, 8
  mulsd xmm0, xmm1
  addsd xmm0, [rdx - 8]
  movsd [rdx - 8], xmm0
  cmp rdx, r9
  jne .loop

; Unaligned legacy moves, VEX integer arithmetic on unaligned memory, an AVX-512 masked store.
CASE loop_simd_unaligned
  mov rsi, DATA_VA + 3
  xor ecx, ecx
  mov eax, 0x5A5A
  kmovw k1, eax
  vpxor xmm3, xmm3, xmm3
.loop:
  movdqu xmm0, [rsi + rcx]
  movups [rsi + rcx + 0x2000], xmm0
  vpaddd ymm3, ymm3, [rsi + rcx + 0x1000]
  vmovdqu32 [rsi + rcx + 0x3000]{k1}, zmm3
  add rcx, 64
  cmp rcx, 0x800
  jb .loop

; Legacy packed arithmetic needs 16-byte alignment: it stays checked, and a misaligned operand
; in the middle of the loop faults (#GP) at its iteration.
CASE loop_sse_alignment_fault
  mov rsi, DATA_VA
  xor ecx, ecx
  pxor xmm2, xmm2
.loop:
  paddd xmm2, [rsi + rcx]
  add rcx, 16
  cmp rcx, 0x800
  jne .loop
  add rsi, 8
  xor ecx, ecx
.loop2:
  paddd xmm2, [rsi + rcx]
  add rcx, 16
  cmp rcx, 0x100
  jne .loop2

; With an SIMD FP exception unmasked the loop stays checked: #XM at the iteration that divides
; zero by zero.
CASE loop_sse_unmasked_fp
  sub rsp, 8
  stmxcsr [rsp]
  and dword [rsp], ~0x80             ; unmask invalid operation
  ldmxcsr [rsp]
  add rsp, 8
  mov rsi, DATA_VA
  mov rax, 0x3FF0000000000000        ; 1.0
  mov ecx, 0x100
.fill:
  mov [rsi + rcx * 8], rax
  dec ecx
  jnz .fill
  mov qword [rsi + 0x40 * 8], 0      ; 0.0 at element 0x40
  xorpd xmm0, xmm0
  xor ecx, ecx
.loop:
  movsd xmm1, [rsi + rcx * 8]
  divsd xmm1, [rsi + rcx * 8]
  addsd xmm0, xmm1
  inc rcx
  cmp rcx, 0x100
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
