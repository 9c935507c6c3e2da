; Loops for the exception-delivery and helper-call micro benchmarks (bench/helper_bench.cpp).
; Flat 64-bit code loaded at 0x100000; each entry sits at a fixed 64-byte slot and is called with
; rcx = iterations (rdx = I/O port for the IN/OUT loops) and returns with RET.
bits 64
org 0x100000
; The handlers count their runs in a data page of their own (a write to the code's page would
; invalidate its translations every time).
ud_count equ 0x200000
pf_count equ 0x200008

slot_cpuid:                      ; +0x000: CPUID leaf 0
    mov r8, rcx
.l: xor eax, eax
    cpuid
    dec r8
    jnz .l
    ret

align 64
slot_in:                         ; +0x040: IN AL, DX
.l: in al, dx
    dec rcx
    jnz .l
    ret

align 64
slot_out:                        ; +0x080: OUT DX, AL
.l: out dx, al
    dec rcx
    jnz .l
    ret

align 64
slot_rdmsr:                      ; +0x0C0: RDMSR of IA32_EFER
    mov r8, rcx
    mov ecx, 0xC0000080
.l: rdmsr
    dec r8
    jnz .l
    ret

align 64
slot_ud:                         ; +0x100: UD2, the #UD handler skips it
.l: ud2
    dec rcx
    jnz .l
    ret

align 64
slot_pf:                         ; +0x140: load from a non-present page, the #PF handler skips it
    mov rdx, 0x8000000000        ; PML4 entry 1: not present in the loader's identity map
.l: mov rax, [rdx]               ; 3 bytes: 48 8B 02
    dec rcx
    jnz .l
    ret

align 64
ud_handler:                      ; +0x180: count, return past the 2-byte UD2
    inc qword [ud_count]
    add qword [rsp], 2
    iretq

align 64
pf_handler:                      ; +0x1C0: count, drop the error code, return past the load
    inc qword [pf_count]
    add rsp, 8
    add qword [rsp], 3
    iretq

align 64
slot_loop:                       ; +0x200: the bare loop, for the per-iteration baseline
.l: dec rcx
    jnz .l
    ret
