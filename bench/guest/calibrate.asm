; Calibration guest for the accelerator columns: a multiboot v1 kernel (a.out kludge, flat
; binary) that spins OUTER x 1,000,000 iterations of dec/jnz in 32-bit protected mode and then
; writes 0 to the isa-debug-exit port 0xf4 (exit status 1 on rove and on QEMU with
; -device isa-debug-exit,iobase=0xf4,iosize=4). Timing two values of OUTER from outside gives
; ns per iteration without boot noise -- also on accelerators too slow to boot Linux.
;   nasm -f bin -DOUTER=n -o calibrate.bin calibrate.asm
bits 32
org 0x100000
%ifndef OUTER
%define OUTER 1
%endif
MB_MAGIC equ 0x1BADB002
MB_FLAGS equ 0x00010000          ; address fields valid (a.out kludge)
header:
    dd MB_MAGIC
    dd MB_FLAGS
    dd -(MB_MAGIC + MB_FLAGS)
    dd header                    ; header_addr
    dd header                    ; load_addr
    dd image_end                 ; load_end_addr
    dd image_end                 ; bss_end_addr
    dd start                     ; entry_addr
start:
    mov edx, OUTER
.outer:
    mov ecx, 1000000
.inner:
    dec ecx
    jnz .inner
    dec edx
    jnz .outer
    xor eax, eax
    out 0xf4, al
.halt:
    cli
    hlt
    jmp .halt
image_end:
