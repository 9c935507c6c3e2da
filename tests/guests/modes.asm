; Mode transitions: real mode (segment arithmetic, IVT software interrupt, #DE through the IVT)
; -> 32-bit protected mode (IDT, #UD handler) -> PAE paging + EFER.LME -> IA-32e
; compatibility mode (EFER.LMA set) -> 64-bit mode (64-bit IDT, INT3) -> back through
; compatibility mode, paging off, LME off, 16-bit protected mode -> real mode (IVT again).
%include "guest.inc"

%define FAIL_REAL_SEGMENTS 0x41
%define FAIL_REAL_INT 0x42
%define FAIL_REAL_DE 0x43
%define FAIL_PM_UD 0x44
%define FAIL_LMA 0x45
%define FAIL_LM_BP 0x46
%define FAIL_LM_MATH 0x47
%define FAIL_LEAVE_LMA 0x48
%define FAIL_BACK_INT 0x49
%define FAIL_PM_CPL 0x4A

bits 16
org LOAD_ADDR

start16:
  cli
  xor ax, ax
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov sp, REAL_STACK
  mov si, msg_real
  call puts16
  ; Real-mode addressing: segment * 16 + offset.
  mov ax, 0x1000
  mov es, ax
  mov byte [es:0x10], 0xA5
  mov ax, 0x1001
  mov fs, ax
  cmp byte [fs:0], 0xA5
  CHECK e, FAIL_REAL_SEGMENTS
  xor ax, ax
  mov es, ax
  ; IVT: INT 0x60 and #DE.
  mov word [0x60 * 4], int60_handler
  mov word [0x60 * 4 + 2], 0
  mov word [0 * 4], de16_handler
  mov word [0 * 4 + 2], 0
  mov byte [flag], 0
  int 0x60
  cmp byte [flag], 1
  CHECK e, FAIL_REAL_INT
  xor cx, cx
  mov ax, 5
  div cl                       ; #DE: the handler skips the 2-byte DIV
  cmp byte [flag], 2
  CHECK e, FAIL_REAL_DE

  ; To 32-bit protected mode.
  lgdt [gdt_ptr]
  mov eax, cr0
  or eax, 1
  mov cr0, eax
  jmp SEL_CODE32:pm32

int60_handler:
  mov byte [flag], 1
  iret

de16_handler:
  mov byte [flag], 2
  push bp
  mov bp, sp
  add word [bp + 2], 2
  pop bp
  iret

puts16:
  mov dx, CONSOLE_PORT
.next:
  lodsb
  test al, al
  jz .done
  out dx, al
  jmp .next
.done:
  ret

bits 32
pm32:
  mov ax, SEL_DATA
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov fs, ax
  mov gs, ax
  mov esp, KERNEL_STACK
  mov esi, msg_pm
  call puts32
  mov ax, cs
  cmp ax, SEL_CODE32
  CHECK e, FAIL_PM_CPL
  ; 32-bit IDT with a #UD handler.
  mov eax, ud32_handler
  mov [idt32 + 6 * 8], ax
  mov word [idt32 + 6 * 8 + 2], SEL_CODE32
  mov word [idt32 + 6 * 8 + 4], 0x8E00
  shr eax, 16
  mov [idt32 + 6 * 8 + 6], ax
  lidt [idt32_ptr]
  mov byte [flag], 0
  ud2
  cmp byte [flag], 3
  CHECK e, FAIL_PM_UD

  ; PAE paging, identity map of the first GiB with 2 MiB pages.
  mov edi, PML4_ADDR
  mov ecx, 3 * 4096 / 4
  xor eax, eax
  rep stosd
  mov dword [PML4_ADDR], PDPT_ADDR | 3
  mov dword [PDPT_ADDR], PD_ADDR | 3
  mov edi, PD_ADDR
  mov eax, 0x83
  mov ecx, 512
.pd:
  mov [edi], eax
  add eax, 0x200000
  add edi, 8
  loop .pd
  mov eax, cr4
  or eax, 1 << 5
  mov cr4, eax
  mov eax, PML4_ADDR
  mov cr3, eax
  mov ecx, 0xC0000080
  rdmsr
  or eax, 1 << 8
  wrmsr
  mov eax, cr0
  or eax, 1 << 31
  mov cr0, eax
  ; IA-32e mode is active now (compatibility mode: CS is still a 32-bit segment).
  mov ecx, 0xC0000080
  rdmsr
  test eax, 1 << 10
  CHECK nz, FAIL_LMA
  mov esi, msg_compat
  call puts32
  jmp SEL_CODE64:lm64

ud32_handler:
  mov byte [flag], 3
  add dword [esp], 2
  iret

%include "puts32.inc"

bits 64
lm64:
  mov ax, SEL_DATA64
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov rsp, KERNEL_STACK
  mov rsi, msg_lm
  call puts64
  ; 64-bit arithmetic really is 64-bit.
  mov rax, 0x123456789ABCDEF0
  ror rax, 32
  mov rbx, 0x9ABCDEF012345678
  cmp rax, rbx
  CHECK e, FAIL_LM_MATH
  ; 64-bit IDT: INT3.
  mov edi, 3
  mov rsi, bp64_handler
  xor edx, edx
  xor ecx, ecx
  call set_gate
  lidt [idt_ptr]
  mov byte [flag], 0
  int3
  cmp byte [flag], 4
  CHECK e, FAIL_LM_BP

  ; Back: 64-bit -> compatibility mode (far return to the 32-bit code segment).
  push SEL_CODE32
  mov rax, compat_back
  push rax
  retfq

bp64_handler:
  mov byte [flag], 4
  iretq

bits 32
compat_back:
  mov eax, cr0
  and eax, ~(1 << 31)
  mov cr0, eax
  mov ecx, 0xC0000080
  rdmsr
  and eax, ~(1 << 8)
  wrmsr
  rdmsr
  test eax, 1 << 10
  CHECK z, FAIL_LEAVE_LMA
  mov esi, msg_pm_again
  call puts32
  jmp SEL_CODE16:pm16

bits 16
pm16:
  mov ax, SEL_DATA16
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov eax, cr0
  and eax, ~1
  mov cr0, eax
  jmp 0:real_again

real_again:
  xor ax, ax
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov sp, REAL_STACK
  lidt [ivt_ptr]
  mov byte [flag], 0
  int 0x60
  cmp byte [flag], 1
  CHECK e, FAIL_BACK_INT
  mov si, msg_back
  call puts16
  EXIT PASS

msg_real: db "real mode", 10, 0
msg_pm: db "32-bit protected mode", 10, 0
msg_compat: db "IA-32e compatibility mode", 10, 0
msg_lm: db "64-bit mode", 10, 0
msg_pm_again: db "protected mode again", 10, 0
msg_back: db "real mode again", 10, 0
flag: db 0

align 8
idt32:
  times 32 dq 0
idt32_ptr:
  dw 32 * 8 - 1
  dd idt32
ivt_ptr:
  dw 0x3FF
  dd 0

%include "tables.inc"
