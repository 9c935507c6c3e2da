; Interrupt and exception delivery through 64-bit IDT gates with and without IST: the handler
; runs on the IST stack named by the gate (freshly loaded from the TSS each time, aligned to 16
; bytes), sees the interrupted RSP in its frame, and returns with IRETQ to the interrupted
; stack. Ends with a double fault (#PF through a not-present gate -> #NP -> #DF) delivered on
; its IST stack with error code 0.
%include "guest.inc"
%include "boot.inc"

%define FAIL_IST2_RSP 0x61
%define FAIL_IST1_RSP 0x62
%define FAIL_NOIST_RSP 0x63
%define FAIL_FRAME_RSP 0x64
%define FAIL_FRAME_CS 0x65
%define FAIL_RESUMED_RSP 0x66
%define FAIL_DF_RSP 0x67
%define FAIL_DF_ERR 0x68
%define FAIL_REENTRY 0x69
%define FAIL_COUNT 0x6A
%define FAIL_NO_DF 0x6B

main64:
  mov rsi, msg_start
  call puts64
  mov edi, 0x40
  mov rsi, ist2_handler
  mov edx, 2
  xor ecx, ecx
  call set_gate
  mov edi, 2                     ; NMI vector, reached with INT 2
  mov rsi, ist1_handler
  mov edx, 1
  xor ecx, ecx
  call set_gate
  mov edi, 3
  mov rsi, noist_handler
  xor edx, edx
  xor ecx, ecx
  call set_gate

  ; Software interrupt through an IST2 gate, from an odd stack pointer.
  mov rbx, rsp
  sub rsp, 8
  mov [interrupted_rsp], rsp
  int 0x40
  cmp rsp, [interrupted_rsp]
  CHECK e, FAIL_RESUMED_RSP
  ; Twice: the IST pointer is reloaded from the TSS, not left decremented.
  int 0x40
  mov rsp, rbx
  cmp qword [count], 2
  CHECK e, FAIL_COUNT

  ; IST1 gate.
  mov [interrupted_rsp], rsp
  int 2
  cmp qword [count], 3
  CHECK e, FAIL_COUNT

  ; No IST, same privilege level: the handler runs on the current stack.
  mov [interrupted_rsp], rsp
  int3
  cmp qword [count], 4
  CHECK e, FAIL_COUNT

  ; Double fault: #PF with a not-present #PF gate.
  mov edi, 8
  mov rsi, df_handler
  mov edx, 1
  xor ecx, ecx
  call set_gate
  mov byte [idt64 + 14 * 16 + 5], 0x0E      ; #PF gate: clear the present bit
  mov rsi, msg_df
  call puts64
  mov rax, 0x40000000                        ; beyond the identity-mapped GiB
  mov [interrupted_rsp], rsp
  mov rbx, [rax]
  EXIT FAIL_NO_DF

ist2_handler:
  ; RSP = IST2_STACK - 40 (SS, RSP, RFLAGS, CS, RIP): the IST pointer is aligned to 16.
  cmp rsp, IST2_STACK - 40
  CHECK e, FAIL_IST2_RSP
  mov rax, [rsp + 24]
  cmp rax, [interrupted_rsp]
  CHECK e, FAIL_FRAME_RSP
  cmp qword [rsp + 8], SEL_CODE64
  CHECK e, FAIL_FRAME_CS
  inc qword [count]
  iretq

ist1_handler:
  cmp rsp, IST1_STACK - 40
  CHECK e, FAIL_IST1_RSP
  mov rax, [rsp + 24]
  cmp rax, [interrupted_rsp]
  CHECK e, FAIL_FRAME_RSP
  inc qword [count]
  iretq

noist_handler:
  ; Same privilege, no IST: the frame is pushed on the interrupted stack after aligning it.
  mov rax, [interrupted_rsp]
  and rax, -16
  sub rax, 40
  cmp rsp, rax
  CHECK e, FAIL_NOIST_RSP
  mov rax, [rsp + 24]
  cmp rax, [interrupted_rsp]
  CHECK e, FAIL_FRAME_RSP
  inc qword [count]
  iretq

df_handler:
  ; Error code 0, then the frame; on IST1.
  cmp rsp, IST1_STACK - 48
  CHECK e, FAIL_DF_RSP
  cmp qword [rsp], 0
  CHECK e, FAIL_DF_ERR
  mov rax, [rsp + 32]
  cmp rax, [interrupted_rsp]
  CHECK e, FAIL_FRAME_RSP
  mov rsi, msg_done
  call puts64
  EXIT PASS

msg_start: db "ist: gates with and without IST", 10, 0
msg_df: db "ist: double fault", 10, 0
msg_done: db "ist: #DF on IST1 with error code 0", 10, 0
align 8
interrupted_rsp: dq 0
count: dq 0
