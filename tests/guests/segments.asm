; Segmentation in protected mode with non-zero bases and byte-granular limits: 32-bit data,
; code and stack segments based away from 0, a far call into 32-bit code running at base
; 0x20000 (relative calls, CS-relative data, RETF), a far call into 16-bit protected-mode code at
; base 0x40000 (16-bit addressing forms, 32-bit operand prefixes, O32 RETF), and #GP(0) for
; accesses beyond a segment limit, from 32-bit and from 16-bit code, handled through a 32-bit
; IDT and resumed with IRET.
%include "guest.inc"

%define FAIL_DATA_BASE 0xA1
%define FAIL_LIMIT_GP 0xA2
%define FAIL_FAR32 0xA3
%define FAIL_STACK_BASE 0xA4
%define FAIL_FAR16 0xA5
%define FAIL_LIMIT16_GP 0xA6
%define FAIL_GP_ERR 0xA7
%define FAIL_CODE_READ 0xA8
%define FAIL_LIMIT_SS 0xA9
%define FAIL_SS_ERR 0xAA
%define FAIL_STACK_LIMIT_OK 0xAB
%define FAIL_CS_LIMIT 0xAC

%define SEL_DATA_B 0x60           ; data, base 0x30000, limit 0xFFFF
%define SEL_CODE32_B 0x68         ; code32, base 0x20000
%define SEL_CODE16_B 0x70         ; code16, base 0x40000
%define SEL_DATA16_B 0x78         ; data, base 0x50000, limit 0xFFF
%define SEL_STACK_B 0x80          ; data (stack), base 0x70000, limit 0xFFFF, B=1
%define SEL_CODE32_LIM 0x88       ; code32, base 0x20000, limit LIMITED_END - 1
%define SEL_TINY 0x90             ; data, base 0, limit 0xF

%define CODE32_BASE 0x20000
%define DATA_BASE 0x30000
%define CODE16_BASE 0x40000
%define DATA16_BASE 0x50000
%define STACK_BASE 0x70000

; DESC base, limit (byte granular, < 1 MiB), access byte, flags nibble (G D/B L AVL)
%macro DESC 4
  dw (%2) & 0xFFFF
  dw (%1) & 0xFFFF
  db ((%1) >> 16) & 0xFF
  db %3
  db (((%2) >> 16) & 0x0F) | ((%4) << 4)
  db ((%1) >> 24) & 0xFF
%endmacro

; GATE32 vector, handler: a 32-bit interrupt gate in idt32 (clobbers EAX).
%macro GATE32 2
  mov eax, %2
  mov [idt32 + %1 * 8], ax
  mov word [idt32 + %1 * 8 + 2], SEL_CODE32
  mov word [idt32 + %1 * 8 + 4], 0x8E00
  shr eax, 16
  mov [idt32 + %1 * 8 + 6], ax
%endmacro

bits 16
org LOAD_ADDR

start:
  cli
  xor ax, ax
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov sp, REAL_STACK
  lgdt [seg_gdt_ptr]
  mov eax, cr0
  or eax, 1
  mov cr0, eax
  jmp SEL_CODE32:pm32

bits 32
pm32:
  mov ax, SEL_DATA
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov esp, KERNEL_STACK
  mov esi, msg_start
  call puts32
  GATE32 13, gp_handler
  GATE32 12, ss_handler
  lidt [idt32_ptr]
  ; Copy the based code to where its segments start.
  mov esi, section.code32.start
  mov edi, CODE32_BASE
  mov ecx, based32_end - based32
  rep movsb
  mov esi, section.code16.start
  mov edi, CODE16_BASE
  mov ecx, based16_end - based16
  rep movsb

  ; 1. Data segment with base 0x30000.
  mov ax, SEL_DATA_B
  mov es, ax
  mov dword [es:0x10], 0xDEADBEEF
  cmp dword [DATA_BASE + 0x10], 0xDEADBEEF
  CHECK e, FAIL_DATA_BASE
  mov dword [DATA_BASE + 0xFFFC], 0x01020304
  cmp dword [es:0xFFFC], 0x01020304        ; last dword inside the limit
  CHECK e, FAIL_DATA_BASE

  mov ax, SEL_DATA
  mov es, ax

  ; 2. Far call into 32-bit code with base 0x20000.
  mov ebx, 5
  call SEL_CODE32_B:0
  cmp eax, 5 * 3 + 0x1234
  CHECK e, FAIL_FAR32
  cmp ecx, 0xC0DE
  CHECK e, FAIL_CODE_READ

  ; 3. Stack segment with base 0x70000.
  mov edx, esp
  mov ax, SEL_STACK_B
  mov ss, ax
  mov esp, 0x1000
  push dword 0x12345678
  push word 0xABCD
  pop bx
  mov ax, SEL_DATA
  mov ss, ax
  mov esp, edx
  cmp dword [STACK_BASE + 0xFFC], 0x12345678
  CHECK e, FAIL_STACK_BASE
  cmp bx, 0xABCD
  CHECK e, FAIL_STACK_BASE

  ; 4. Far call into 16-bit protected-mode code with base 0x40000 (which also reads beyond its
  ;    data segment's limit: checked below).
  mov dword [gp_count], 0
  call SEL_CODE16_B:0
  cmp eax, 0x600D
  CHECK e, FAIL_FAR16
  cmp word [DATA16_BASE + 0x20], 0xBEEF
  CHECK e, FAIL_FAR16
  cmp dword [DATA16_BASE + 0x40], 0x11223344
  CHECK e, FAIL_FAR16
  mov esi, msg_bases
  call puts32

  ; 5. Limits (checked last, so that a failure here says the rest held): the 16-bit code above
  ;    read beyond its 0xFFF limit, and a dword read crossing a 0xFFFF limit.
  cmp dword [gp_count], 1
  CHECK e, FAIL_LIMIT16_GP
  mov ax, SEL_DATA_B
  mov es, ax
  mov dword [gp_resume], .after_gp1
  mov dword [gp_count], 0
  mov eax, [es:0xFFFE]                     ; crosses the limit
.after_gp1:
  cmp dword [gp_count], 1
  CHECK e, FAIL_LIMIT_GP
  ; A 16-byte segment at linear 0: beyond its limit even though the linear address is in the
  ; first page.
  mov ax, SEL_TINY
  mov es, ax
  mov eax, [es:0xC]                        ; the last dword inside the limit
  mov dword [gp_resume], .after_gp2
  mov eax, [es:0x20]
.after_gp2:
  cmp dword [gp_count], 2
  CHECK e, FAIL_LIMIT_GP
  ; A register bit offset selects a dword beyond the limit (bit 0x100: offset 0x20), though the
  ; operand itself is inside; bit 0x60 (offset 0xC) is inside.
  mov ecx, 0x60
  bts dword [es:0], ecx
  mov dword [gp_resume], .after_gp3
  mov ecx, 0x100
  bt dword [es:0], ecx
.after_gp3:
  cmp dword [gp_count], 3
  CHECK e, FAIL_LIMIT_GP
  mov ax, SEL_DATA
  mov es, ax
  ; 6. Stack segment limit: SS-relative accesses (default segment of EBP) crossing or beyond the
  ;    0xFFFF limit raise #SS(0), not #GP; the last dword inside the limit is fine.
  mov edx, esp
  mov ax, SEL_STACK_B
  mov ss, ax
  mov esp, 0x1000
  mov ebp, 0xFFFC
  mov dword [ebp], 0x5A5A5A5A               ; last dword inside the limit
  cmp dword [STACK_BASE + 0xFFFC], 0x5A5A5A5A
  CHECK e, FAIL_STACK_LIMIT_OK
  mov dword [ss_resume], .after_ss1
  mov dword [ss_count], 0
  mov dword [gp_count], 0
  mov ebp, 0xFFFE
  mov eax, [ebp]                            ; crosses the limit
.after_ss1:
  mov dword [ss_resume], .after_ss2
  mov eax, [ss:0x10000]                     ; beyond the limit
.after_ss2:
  mov ax, SEL_DATA
  mov ss, ax
  mov esp, edx
  cmp dword [ss_count], 2
  CHECK e, FAIL_LIMIT_SS
  cmp dword [gp_count], 0                   ; no #GP on the way
  CHECK e, FAIL_LIMIT_SS
  ; 7. Code segment limit: a near jump beyond it raises #GP(0) at the jump (EIP of the jump,
  ;    nothing executed beyond), in code entered through a segment whose limit ends there.
  mov dword [gp_count], 0
  mov dword [gp_resume], limited_resume
  mov dword [gp_eip], 0
  xor eax, eax
  call SEL_CODE32_LIM:limited_entry
  cmp eax, 0x11
  CHECK e, FAIL_CS_LIMIT
  cmp dword [gp_count], 1
  CHECK e, FAIL_CS_LIMIT
  cmp dword [gp_eip], limited_jump
  CHECK e, FAIL_CS_LIMIT
  mov esi, msg_done
  call puts32
  EXIT PASS

; #GP: check error code 0, resume at [gp_resume] (an offset in the faulting code segment).
gp_handler:
  push eax
  push ds
  mov ax, SEL_DATA
  mov ds, ax
  cmp dword [esp + 8], 0
  CHECK e, FAIL_GP_ERR
  inc dword [gp_count]
  mov eax, [esp + 12]
  mov [gp_eip], eax
  mov eax, [gp_resume]
  mov [esp + 12], eax
  pop ds
  pop eax
  add esp, 4
  iret

; #SS: the same, with its own counter and resume point (it runs on the faulting stack segment,
; whose limit was only exceeded by the access itself).
ss_handler:
  push eax
  push ds
  mov ax, SEL_DATA
  mov ds, ax
  cmp dword [esp + 8], 0
  CHECK e, FAIL_SS_ERR
  inc dword [ss_count]
  mov eax, [ss_resume]
  mov [esp + 12], eax
  pop ds
  pop eax
  add esp, 4
  iret
%include "puts32.inc"

; 32-bit code for the segment based at 0x20000 (its own section: offsets are relative to the
; segment base; the image is copied there at run time).
section code32 vstart=0 follows=.text
bits 32
based32:
  call .triple                      ; relative call inside the based segment
  mov ecx, [cs:.const]              ; CS-relative read of the segment's own bytes
  add eax, 0x1234
  retf
.triple:
  lea eax, [ebx + ebx * 2]
  ret
.const:
  dd 0xC0DE
; Entered through SEL_CODE32_LIM, whose limit ends at LIMITED_END: the jump leaves the limit.
  times 0x100 - ($ - based32) db 0xCC
limited_entry:
  mov eax, 0x22
limited_jump:
  jmp dword limited_beyond
limited_resume:
  mov eax, 0x11
  retf
LIMITED_END equ $ - based32
  times 0x40 db 0xCC
limited_beyond:
  mov eax, 0x33                             ; beyond the limit: never runs
  retf
based32_end:

; 16-bit protected-mode code for the segment based at 0x40000.
section code16 vstart=0 follows=code32
bits 16
based16:
  push ds
  mov ax, SEL_DATA16_B
  mov ds, ax
  mov bx, 0x10
  mov si, 0x10
  mov word [bx + si], 0xBEEF                ; 16-bit addressing: base 0x50000 + 0x20
  mov eax, 0x11223344                       ; 32-bit operand in 16-bit code
  mov [0x40], eax
  ; Beyond the 0xFFF limit: #GP(0); the handler resumes at .after (offset in this segment).
  push ds
  mov ax, SEL_DATA
  mov ds, ax
  mov dword [gp_resume], .after
  pop ds
  mov ax, [0x1000]
.after:
  pop ds
  mov eax, 0x600D
  o32 retf
based16_end:

section .text
bits 32

msg_start: db "segments: protected mode with based segments", 10, 0
msg_bases: db "segments: bases, far calls and 16-bit code held", 10, 0
msg_done: db "segments: every base and limit held", 10, 0
align 4
gp_resume: dd 0
gp_count: dd 0
gp_eip: dd 0
ss_resume: dd 0
ss_count: dd 0

align 8
seg_gdt:
  dq 0
  dq 0x00CF9A000000FFFF   ; 0x08 code32
  dq 0x00CF92000000FFFF   ; 0x10 data
  times 9 dq 0            ; 0x18..0x58 unused here
  DESC DATA_BASE, 0xFFFF, 0x92, 0x4        ; 0x60
  DESC CODE32_BASE, 0xFFFF, 0x9A, 0x4      ; 0x68
  DESC CODE16_BASE, 0xFFFF, 0x9A, 0x0      ; 0x70
  DESC DATA16_BASE, 0x0FFF, 0x92, 0x0      ; 0x78
  DESC STACK_BASE, 0xFFFF, 0x92, 0x4       ; 0x80
  DESC CODE32_BASE, LIMITED_END - 1, 0x9A, 0x4  ; 0x88
  DESC 0, 0xF, 0x92, 0x4                   ; 0x90
seg_gdt_end:
seg_gdt_ptr:
  dw seg_gdt_end - seg_gdt - 1
  dd seg_gdt

align 8
idt32:
  times 32 dq 0
idt32_ptr:
  dw 32 * 8 - 1
  dd idt32
