; Guest compute kernel for the BT benchmark: a checksum/compression-style inner loop
; (Adler-32 sums, FNV-1a hash, byte histogram, run-length count). Position independent,
; SysV ABI, leaf: the same bytes run natively (called as a function) and under rove.
;   uint64_t kernel(const uint8_t* buf, uint64_t len, uint64_t* histogram /* 256 */)
bits 64
kernel:
    push rbx
    push r12
    push r13
    push r14
    mov r8d, 1                      ; adler a
    xor r9d, r9d                    ; adler b
    mov r10, 0xcbf29ce484222325     ; fnv-1a state
    mov r11, 0x100000001b3          ; fnv prime
    xor r12d, r12d                  ; runs
    mov r13d, -1                    ; previous byte
    mov ebx, 65521
    xor ecx, ecx
.loop:
    movzx eax, byte [rdi+rcx]
    add r8d, eax
    mov r14d, r8d
    sub r14d, ebx
    cmovae r8d, r14d
    add r9d, r8d
    mov r14d, r9d
    sub r14d, ebx
    cmovae r9d, r14d
    xor r10, rax
    imul r10, r11
    inc qword [rdx+rax*8]
    xor r14d, r14d
    cmp eax, r13d
    setne r14b
    add r12, r14
    mov r13d, eax
    inc rcx
    cmp rcx, rsi
    jb .loop
    mov rax, r9
    shl rax, 16
    or rax, r8
    xor rax, r10
    add rax, r12
    pop r14
    pop r13
    pop r12
    pop rbx
    ret
