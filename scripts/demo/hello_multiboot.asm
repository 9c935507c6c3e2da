; A tiny multiboot v1 kernel (a.out kludge, flat binary): prints on COM1, switches to long mode,
; computes a checksum there with translated 64-bit code, prints it and halts.
bits 32
org 0x100000
MB_MAGIC equ 0x1BADB002
MB_FLAGS equ 0x00010002          ; memory info + address fields (a.out kludge)
header:
    dd MB_MAGIC
    dd MB_FLAGS
    dd -(MB_MAGIC + MB_FLAGS)
    dd header                    ; header_addr
    dd header                    ; load_addr
    dd image_end                 ; load_end_addr
    dd bss_end                   ; bss_end_addr
    dd start                     ; entry_addr

start:
    mov esp, stack_top
    mov esi, msg_hello
    call puts32
    ; identity-map the first 1 GiB with 2 MiB pages
    mov edi, pml4
    mov dword [edi], pdpt + 3
    mov dword [pdpt], pd + 3
    xor ecx, ecx
.map:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83
    mov [pd + ecx*8], eax
    inc ecx
    cmp ecx, 512
    jb .map
    mov eax, cr4
    or eax, 1 << 5               ; PAE
    mov cr4, eax
    mov eax, pml4
    mov cr3, eax
    mov ecx, 0xC0000080          ; EFER.LME
    rdmsr
    or eax, 1 << 8
    wrmsr
    mov eax, cr0
    or eax, 0x80000001           ; PG | PE
    mov cr0, eax
    lgdt [gdt_desc]
    jmp 0x08:long_mode

bits 64
long_mode:
    mov ax, 0x10
    mov ds, ax
    mov ss, ax
    mov rsp, stack_top
    ; FNV-1a over 1 MiB of the kernel's own address space, 8 times
    mov r8, 8
    mov rax, 0xcbf29ce484222325
    mov r9, 0x100000001b3
.outer:
    mov rsi, 0x100000
    mov rcx, 0x100000
.inner:
    movzx edx, byte [rsi]
    xor rax, rdx
    imul rax, r9
    inc rsi
    dec rcx
    jnz .inner
    dec r8
    jnz .outer
    mov rbx, rax
    mov rsi, msg_sum
    call puts64
    mov rcx, 16
.hex:
    rol rbx, 4
    mov eax, ebx
    and eax, 15
    movzx eax, byte [hexdigits + rax]
    call putc64
    dec rcx
    jnz .hex
    mov al, 10
    call putc64
    cli
    hlt

putc64:                          ; al = byte
    push rdx
    mov dx, 0x3F8
    out dx, al
    pop rdx
    ret
puts64:                          ; rsi = NUL-terminated string
    lodsb
    test al, al
    jz .done
    call putc64
    jmp puts64
.done:
    ret

bits 32
puts32:
    mov dx, 0x3F8
.next:
    lodsb
    test al, al
    jz .done
    out dx, al
    jmp .next
.done:
    ret

align 8
gdt:
    dq 0
    dq 0x00AF9A000000FFFF        ; 0x08: 64-bit code
    dq 0x00CF92000000FFFF        ; 0x10: data
gdt_desc:
    dw gdt_desc - gdt - 1
    dd gdt
msg_hello: db "rove demo: multiboot kernel running in 32-bit protected mode", 10, 0
msg_sum:   db "rove demo: long mode FNV-1a checksum = 0x", 0
hexdigits: db "0123456789abcdef"
image_end:

align 4096
pml4: resb 4096
pdpt: resb 4096
pd:   resb 4096
      resb 16384
stack_top:
bss_end:
