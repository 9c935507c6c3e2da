; Paging in 32-bit protected mode, resolved by the guest's #PF handler: first 32-bit paging
; (a 4 MiB PSE page identity-maps the first 4 MiB, 4 KiB pages above start not present), then
; PAE paging (PDPTEs, 2 MiB and 4 KiB pages). Each fault's error code and CR2 are checked, the
; handler maps the page and the instruction is retried; CR0.WP write protection at CPL0 and the
; accessed/dirty bits are checked too.
%include "guest.inc"

%define FAIL_ERRCODE 0xC1
%define FAIL_CR2 0xC2
%define FAIL_VALUE 0xC3
%define FAIL_COUNT 0xC4
%define FAIL_DIRTY 0xC5

%define PD32 0x10000            ; 32-bit paging: page directory
%define PT32 0x11000            ; ... and the page table for 4-8 MiB
%define PDPT_PAE 0x12000        ; PAE: PDPT (32 bytes)
%define PD_PAE 0x13000          ; ... page directory for 0-1 GiB
%define PT_PAE 0x14000          ; ... page table for 4-6 MiB
%define VBASE 0x400000          ; the 4 KiB-mapped virtual range
%define FRAMES 0x800000         ; physical frames the handler maps (identity-mapped by 4 MiB / 2 MiB pages)

bits 16
org LOAD_ADDR

start:
  cli
  xor ax, ax
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov sp, REAL_STACK
  lgdt [gdt_ptr]
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
  ; #PF handler in a 32-bit IDT.
  mov eax, pf_handler
  mov [idt32 + 14 * 8], ax
  mov word [idt32 + 14 * 8 + 2], SEL_CODE32
  mov word [idt32 + 14 * 8 + 4], 0x8E00
  shr eax, 16
  mov [idt32 + 14 * 8 + 6], ax
  lidt [idt32_ptr]

  ; --- 32-bit paging: PD[0] = 4 MiB page at 0; PD[1] -> PT32 (all not present);
  ;     PD[2], PD[3] = 4 MiB pages identity (frames at 8-16 MiB stay reachable).
  mov edi, PD32
  mov ecx, 2 * 1024
  xor eax, eax
  rep stosd
  mov dword [PD32 + 0], 0x00000083
  mov dword [PD32 + 4], PT32 | 3
  mov dword [PD32 + 8], 0x00800083
  mov dword [PD32 + 12], 0x00C00083
  mov eax, cr4
  or eax, 1 << 4                       ; PSE
  mov cr4, eax
  mov eax, PD32
  mov cr3, eax
  mov eax, cr0
  or eax, (1 << 31) | (1 << 16)        ; PG, WP
  mov cr0, eax
  mov dword [mode], 32

  call fault_tests

  ; --- PAE: paging off, PDPT[0] -> PD_PAE (0-2 MiB and 6 MiB+ as 2 MiB pages, 4-6 MiB
  ;     through PT_PAE with nothing present).
  mov eax, cr0
  and eax, ~(1 << 31)
  mov cr0, eax
  mov edi, PDPT_PAE
  mov ecx, (3 * 4096) / 4
  xor eax, eax
  rep stosd
  mov dword [PDPT_PAE], PD_PAE | 1
  mov dword [PD_PAE + 0 * 8], 0x00000083
  mov dword [PD_PAE + 1 * 8], 0x00200083
  mov dword [PD_PAE + 2 * 8], PT_PAE | 3
  mov dword [PD_PAE + 4 * 8], 0x00800083
  mov dword [PD_PAE + 5 * 8], 0x00A00083
  mov dword [PD_PAE + 6 * 8], 0x00C00083
  mov dword [PD_PAE + 7 * 8], 0x00E00083
  mov eax, cr4
  or eax, 1 << 5                       ; PAE
  mov cr4, eax
  mov eax, PDPT_PAE
  mov cr3, eax
  mov eax, cr0
  or eax, 1 << 31
  mov cr0, eax
  mov dword [mode], 64
  mov dword [pf_count], 0

  call fault_tests

  mov esi, msg_done
  call puts32
  EXIT PASS

; The same checks in both modes: VBASE.. is 4 KiB-mapped and starts out not present.
fault_tests:
  ; Write to a not-present page.
  mov dword [exp_err], 2
  mov dword [exp_cr2], VBASE + 0x1010
  mov dword [VBASE + 0x1010], 0xA1B2C3D4
  cmp dword [VBASE + 0x1010], 0xA1B2C3D4
  CHECK e, FAIL_VALUE
  cmp dword [FRAMES + 0x1010], 0xA1B2C3D4
  CHECK e, FAIL_VALUE
  ; Read from a not-present page.
  mov dword [FRAMES + 0x3008], 0x600D
  mov dword [exp_err], 0
  mov dword [exp_cr2], VBASE + 0x3008
  mov eax, [VBASE + 0x3008]
  cmp eax, 0x600D
  CHECK e, FAIL_VALUE
  ; Write to a read-only page (CR0.WP at CPL0): error code P|W, the handler adds RW.
  call pte_address                     ; EBX -> PTE of page 5
  mov dword [ebx], FRAMES + 0x5000 + 1
  invlpg [VBASE + 0x5000]
  mov dword [exp_err], 3
  mov dword [exp_cr2], VBASE + 0x5FFC
  mov dword [VBASE + 0x5FFC], 77
  cmp dword [FRAMES + 0x5FFC], 77
  CHECK e, FAIL_VALUE
  ; The dirty bit of the written page.
  mov esi, 1
  call pte_of_page
  test dword [ebx], 0x40
  CHECK nz, FAIL_DIRTY
  cmp dword [pf_count], 3
  CHECK e, FAIL_COUNT
  ret

; EBX = address of the PTE of page 5 (PAE entries are 8 bytes).
pte_address:
  mov esi, 5
pte_of_page:
  cmp dword [mode], 64
  je .pae
  lea ebx, [PT32 + esi * 4]
  ret
.pae:
  lea ebx, [PT_PAE + esi * 8]
  ret

pf_handler:
  push eax
  push ebx
  push esi
  mov eax, [esp + 12]                  ; error code
  cmp eax, [exp_err]
  CHECK e, FAIL_ERRCODE
  mov eax, cr2
  cmp eax, [exp_cr2]
  CHECK e, FAIL_CR2
  mov esi, eax
  sub esi, VBASE
  shr esi, 12
  call pte_of_page
  mov eax, [ebx]
  test eax, 1
  jnz .present
  mov eax, esi
  shl eax, 12
  add eax, FRAMES
.present:
  or eax, 3
  mov [ebx], eax
  mov eax, cr2
  invlpg [eax]
  inc dword [pf_count]
  mov dword [exp_err], -1
  pop esi
  pop ebx
  pop eax
  add esp, 4
  iret

%include "puts32.inc"

msg_start: db "paging32: 32-bit paging, then PAE", 10, 0
msg_done: db "paging32: faults resolved in both modes", 10, 0
align 4
exp_err: dd -1
exp_cr2: dd 0
pf_count: dd 0
mode: dd 0

align 8
idt32:
  times 32 dq 0
idt32_ptr:
  dw 32 * 8 - 1
  dd idt32

%include "tables.inc"
