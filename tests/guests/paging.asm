; Page faults resolved by the guest: 4 KiB pages at SCRATCH_ADDR start not present (or
; read-only, or no-execute); the #PF handler checks the error code and CR2 against what the test
; expects, maps the page to a frame at FRAMES (or fixes its permissions) and returns, and the
; faulting instruction is retried.
; Also: accessed/dirty bits, INVLPG after remapping, precise state across the retried fault.
%include "guest.inc"
%include "boot.inc"

%define PT_ADDR 0x4000
%define FRAMES 0x600000          ; physical frames behind the 4 KiB pages (2 MiB-mapped)
%define VPAGE(n) (SCRATCH_ADDR + (n) * 0x1000)
%define PTE(n) (PT_ADDR + (n) * 8)

%define FAIL_ERRCODE 0x51
%define FAIL_CR2 0x52
%define FAIL_COUNT 0x53
%define FAIL_VALUE 0x54
%define FAIL_ACCESSED 0x55
%define FAIL_DIRTY 0x56
%define FAIL_INVLPG 0x57
%define FAIL_PRECISE 0x58
%define FAIL_FETCH 0x59

%define P 1
%define RW 2
%define A 0x20
%define D 0x40
%define NX (1 << 63)

; EXPECT_PF err, address: the next access must fault with this error code and CR2.
%macro EXPECT_PF 2
  mov qword [exp_err], %1
  mov rax, %2
  mov [exp_cr2], rax
%endmacro

main64:
  mov rsi, msg_start
  call puts64
  ; PD[1] (0x200000-0x3FFFFF) -> PT with every entry not present.
  mov rdi, PT_ADDR
  mov ecx, 512
  xor eax, eax
  rep stosq
  mov qword [PD_ADDR + 8], PT_ADDR | P | RW
  mov rax, cr3
  mov cr3, rax
  mov edi, 14
  mov rsi, pf_handler
  xor edx, edx
  xor ecx, ecx
  call set_gate

  ; 1. Write to a not-present page: error code W.
  EXPECT_PF 0x2, VPAGE(1) + 0x10
  mov dword [VPAGE(1) + 0x10], 0x12345678
  cmp dword [VPAGE(1) + 0x10], 0x12345678
  CHECK e, FAIL_VALUE
  cmp qword [pf_count], 1
  CHECK e, FAIL_COUNT
  cmp dword [FRAMES + 0x1000 + 0x10], 0x12345678   ; it went to the frame the handler mapped
  CHECK e, FAIL_VALUE
  ; The CPU set accessed and dirty.
  mov rax, [PTE(1)]
  test rax, A
  CHECK nz, FAIL_ACCESSED
  test rax, D
  CHECK nz, FAIL_DIRTY

  ; 2. Read from a not-present page: error code 0.
  mov dword [FRAMES + 0x3000 + 8], 0xCAFEF00D
  EXPECT_PF 0x0, VPAGE(3) + 8
  mov eax, [VPAGE(3) + 8]
  cmp eax, 0xCAFEF00D
  CHECK e, FAIL_VALUE
  cmp qword [pf_count], 2
  CHECK e, FAIL_COUNT
  mov rax, [PTE(3)]
  test rax, A
  CHECK nz, FAIL_ACCESSED
  test rax, D
  CHECK z, FAIL_DIRTY

  ; 3. Write to a present, read-only page (CR0.WP=1): error code P|W; the handler adds RW.
  mov rax, FRAMES + 0x4000 + P
  mov [PTE(4)], rax
  invlpg [VPAGE(4)]
  EXPECT_PF 0x3, VPAGE(4) + 0xFF8
  mov qword [VPAGE(4) + 0xFF8], -7
  cmp qword [FRAMES + 0x4000 + 0xFF8], -7
  CHECK e, FAIL_VALUE
  cmp qword [pf_count], 3
  CHECK e, FAIL_COUNT

  ; 4. Instruction fetch from a no-execute page: error code P|I; the handler clears NX.
  mov byte [FRAMES + 0x5000], 0xC3        ; ret
  mov rax, NX | FRAMES + 0x5000 | P | RW
  mov [PTE(5)], rax
  invlpg [VPAGE(5)]
  EXPECT_PF 0x11, VPAGE(5)
  mov rax, VPAGE(5)
  call rax
  cmp qword [pf_count], 4
  CHECK e, FAIL_FETCH

  ; 5. A fault in the middle of straight-line code is precise: the instructions before it ran
  ;    once, the ones after it ran once, after the retry.
  xor r10d, r10d
  mov r11, 5
  EXPECT_PF 0x2, VPAGE(7) + 0x100
  inc r10
  add r11, r10
  mov [VPAGE(7) + 0x100], r11
  inc r10
  add r11, r10
  cmp r10, 2
  CHECK e, FAIL_PRECISE
  cmp r11, 8
  CHECK e, FAIL_PRECISE
  cmp qword [FRAMES + 0x7000 + 0x100], 6
  CHECK e, FAIL_PRECISE
  cmp qword [pf_count], 5
  CHECK e, FAIL_COUNT

  ; 6. Remap a present page to another frame: INVLPG makes the new mapping visible.
  mov qword [FRAMES + 0x8000], 0x1111
  mov qword [FRAMES + 0x9000], 0x2222
  mov rax, FRAMES + 0x8000 + P + RW
  mov [PTE(8)], rax
  invlpg [VPAGE(8)]
  cmp qword [VPAGE(8)], 0x1111
  CHECK e, FAIL_INVLPG
  mov rax, FRAMES + 0x9000 + P + RW
  mov [PTE(8)], rax
  invlpg [VPAGE(8)]
  cmp qword [VPAGE(8)], 0x2222
  CHECK e, FAIL_INVLPG
  ; ... and a CR3 reload does too.
  mov rax, FRAMES + 0x8000 + P + RW
  mov [PTE(8)], rax
  mov rax, cr3
  mov cr3, rax
  cmp qword [VPAGE(8)], 0x1111
  CHECK e, FAIL_INVLPG

  ; 7. A string instruction faulting in the middle of its iterations resumes where it stopped.
  mov rdi, VPAGE(10) - 16
  mov rax, FRAMES + 0x9000 + P + RW      ; page 9 present
  mov [PTE(9)], rax
  invlpg [VPAGE(9)]
  EXPECT_PF 0x2, VPAGE(10)
  mov ecx, 8
  mov eax, 0x5A5A5A5A
  rep stosd
  cmp ecx, 0
  CHECK e, FAIL_PRECISE
  cmp dword [FRAMES + 0xA000 + 12], 0x5A5A5A5A
  CHECK e, FAIL_VALUE
  cmp dword [FRAMES + 0x9000 + 0xFF0], 0x5A5A5A5A
  CHECK e, FAIL_VALUE
  cmp qword [pf_count], 6
  CHECK e, FAIL_COUNT

  mov rsi, msg_done
  call puts64
  EXIT PASS

; #PF handler: check error code and CR2, map the page to FRAMES + page offset (adding RW and
; clearing NX if it is already present), return to retry.
pf_handler:
  push rax
  push rbx
  push rcx
  mov rax, [rsp + 24]            ; error code
  cmp rax, [exp_err]
  je .err_ok
  mov rsi, msg_bad_err
  call puts64
  call puthex64
  EXIT FAIL_ERRCODE
.err_ok:
  mov rax, cr2
  cmp rax, [exp_cr2]
  je .cr2_ok
  mov rsi, msg_bad_cr2
  call puts64
  call puthex64
  EXIT FAIL_CR2
.cr2_ok:
  mov rbx, rax
  sub rbx, SCRATCH_ADDR
  shr rbx, 12                    ; page index
  mov rcx, [PT_ADDR + rbx * 8]
  test rcx, P
  jnz .present
  mov rcx, rbx
  shl rcx, 12
  add rcx, FRAMES
.present:
  or rcx, P | RW
  btr rcx, 63
  mov [PT_ADDR + rbx * 8], rcx
  invlpg [rax]
  inc qword [pf_count]
  mov qword [exp_err], -1        ; a second fault would be unexpected
  pop rcx
  pop rbx
  pop rax
  add rsp, 8                     ; error code
  iretq

msg_start: db "paging: #PF handler tests", 10, 0
msg_done: db "paging: all faults resolved", 10, 0
msg_bad_err: db "unexpected #PF error code ", 0
msg_bad_cr2: db "unexpected CR2 ", 0
align 8
exp_err: dq -1
exp_cr2: dq 0
pf_count: dq 0
