; Privileged instructions at CPL3 (IOPL 0, no I/O bitmap, CR4.TSD set, CR4.PCE clear)
; raise #GP with the right error code at the faulting instruction; the guest's #GP handler
; checks the error code and RIP against a table, skips the instruction and counts. POPF cannot
; change IF or IOPL at CPL3 (silently). At the end the user code returns through a DPL3 gate.
%include "guest.inc"
%include "boot.inc"

%define FAIL_GP_RIP 0x81
%define FAIL_GP_ERR 0x82
%define FAIL_GP_COUNT 0x83
%define FAIL_POPF 0x84
%define FAIL_GP_CS 0x85
%define FAIL_TOO_MANY 0x86

%assign __n 0
; PRIV errcode, instruction...: one privileged instruction expected to fault with #GP(errcode).
%macro PRIV 2+
  priv_%[__n]_start:
    %2
  priv_%[__n]_end:
  %xdefine priv_%[__n]_err %1
  %assign __n __n + 1
%endmacro

main64:
  mov rsi, msg_start
  call puts64
  mov edi, 13
  mov rsi, gp_handler
  xor edx, edx
  xor ecx, ecx
  call set_gate
  mov edi, 0x80
  mov rsi, done_handler
  xor edx, edx
  mov ecx, 3
  call set_gate
  mov edi, 0x81                  ; DPL0 gate: INT 0x81 from CPL3 is #GP(0x81 * 8 + 2)
  mov rsi, done_handler
  xor edx, edx
  xor ecx, ecx
  call set_gate
  mov ecx, 0xC0000080
  rdmsr
  or eax, 1                      ; EFER.SCE: SYSRET at CPL3 is #GP, not #UD
  wrmsr
  mov rax, cr4
  or eax, (1 << 2) | (1 << 18)   ; TSD: RDTSC is privileged; OSXSAVE: XSETBV is #GP, not #UD
  and eax, ~(1 << 8)             ; PCE clear: RDPMC is privileged
  mov cr4, rax
  push SEL_UDATA | 3
  push USER_STACK
  push 0x202                     ; IF set, IOPL 0
  push SEL_UCODE64 | 3
  push user
  iretq

gp_handler:
  ; Frame: error code, RIP, CS, RFLAGS, RSP, SS.
  push rax
  push rbx
  mov rbx, [gp_count]
  cmp rbx, PRIV_COUNT
  CHECK b, FAIL_TOO_MANY
  shl rbx, 5                     ; 32-byte table entries
  mov rax, [rsp + 24]            ; RIP
  cmp rax, [priv_table + rbx]
  je .rip_ok
  mov rsi, msg_bad_rip
  call puts64
  call puthex64
  EXIT FAIL_GP_RIP
.rip_ok:
  mov rax, [rsp + 16]            ; error code
  cmp rax, [priv_table + rbx + 16]
  je .err_ok
  mov rsi, msg_bad_err
  call puts64
  call puthex64
  mov rsi, msg_at
  call puts64
  mov rax, [rsp + 24]
  call puthex64
  EXIT FAIL_GP_ERR
.err_ok:
  cmp qword [rsp + 32], SEL_UCODE64 | 3
  CHECK e, FAIL_GP_CS
  mov rax, [priv_table + rbx + 8]
  mov [rsp + 24], rax            ; skip the instruction
  inc qword [gp_count]
  pop rbx
  pop rax
  add rsp, 8
  iretq

done_handler:
  cmp qword [gp_count], PRIV_COUNT
  CHECK e, FAIL_GP_COUNT
  mov rsi, msg_done
  call puts64
  EXIT PASS

user:
  mov rax, 0x100000
  mov ebx, 0xC0000080
  mov dx, 0x3F8
  PRIV 0, cli
  PRIV 0, sti
  PRIV 0, hlt
  PRIV 0, {mov cr3, rax}
  PRIV 0, {mov rax, cr0}
  PRIV 0, {mov cr4, rax}
  PRIV 0, {mov cr8, rax}
  PRIV 0, {mov dr7, rax}
  PRIV 0, {mov rax, dr6}
  PRIV 0, clts
  PRIV 0, wrmsr
  PRIV 0, rdmsr
  PRIV 0, {lgdt [rax]}
  PRIV 0, {lidt [rax]}
  PRIV 0, {lldt ax}
  PRIV 0, {ltr ax}
  PRIV 0, {invlpg [rax]}
  PRIV 0, invd
  PRIV 0, wbinvd
  PRIV 0, {in al, dx}
  PRIV 0, {out dx, al}
  PRIV 0, {in eax, 0x71}
  PRIV 0, {out 0xF4, al}
  PRIV 0, insb
  PRIV 0, outsb
  PRIV 0, swapgs
  PRIV 0, {o64 sysret}
  PRIV 0, rdtsc
  PRIV 0, rdpmc
  PRIV 0, xsetbv
  PRIV 0x81 * 8 + 2, {int 0x81}
  mov ebx, SEL_DATA
  PRIV SEL_DATA, {mov ss, bx}
  ; POPF at CPL3 with IOPL 0: IF and IOPL do not change, no fault.
  pushfq
  pop rcx
  push 0x3002                    ; IOPL 3, IF clear
  popfq
  pushfq
  pop rax
  and eax, 0x3200
  cmp eax, 0x0200                ; still IF set, IOPL 0
  je .popf_ok
  ud2                            ; unexpected #UD: reported by the default handler
.popf_ok:
  int 0x80

PRIV_COUNT equ __n
align 8
priv_table:
%assign __i 0
%rep __n
  dq priv_%[__i]_start, priv_%[__i]_end, priv_%[__i]_err, 0
  %assign __i __i + 1
%endrep

msg_start: db "privileged: CPL3 attempts", 10, 0
msg_done: db "privileged: every attempt raised #GP", 10, 0
msg_bad_rip: db "#GP at unexpected rip ", 0
msg_bad_err: db "#GP with unexpected error code ", 0
msg_at: db " at rip ", 0
gp_count: dq 0
