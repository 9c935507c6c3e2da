; Round trips between CPL0 and CPL3: IRETQ into 64-bit user code; SYSCALL (kernel checks CS,
; RCX = return RIP, R11 = user RFLAGS, SFMASK applied, no stack switch) and SYSRETQ (RFLAGS from
; R11, CPL3 again); INT 0x80 through a DPL3 gate (stack switch to TSS.RSP0, frame with the user
; CS/SS/RSP) and IRETQ; SYSRETL into 32-bit compatibility-mode user code, which comes back with
; INT 0x80. User code reports failures through a "fail" system call.
%include "guest.inc"
%include "boot.inc"

%define MSR_EFER 0xC0000080
%define MSR_STAR 0xC0000081
%define MSR_LSTAR 0xC0000082
%define MSR_SFMASK 0xC0000084
%define SYSCALL_STACK 0x8C000

%define FAIL_USER_CPL 0x71
%define FAIL_SYSCALL_CS 0x72
%define FAIL_SYSCALL_RCX 0x73
%define FAIL_SYSCALL_R11 0x74
%define FAIL_SYSCALL_FLAGS 0x75
%define FAIL_SYSCALL_RSP 0x76
%define FAIL_SYSRET_RESULT 0x77
%define FAIL_SYSRET_FLAGS 0x78
%define FAIL_INT_STACK 0x79
%define FAIL_INT_FRAME 0x7A
%define FAIL_INT_RESULT 0x7B
%define FAIL_COMPAT 0x7C
%define FAIL_UNKNOWN_CALL 0x7D

%define USER_RFLAGS 0x0C93        ; CF PF AF SF DF OF + bit 1 (IF clear)

main64:
  mov rsi, msg_start
  call puts64
  ; SYSCALL/SYSRET MSRs.
  mov ecx, MSR_EFER
  rdmsr
  or eax, 1                        ; SCE
  wrmsr
  mov ecx, MSR_STAR
  xor eax, eax
  mov edx, (SEL_UCODE32 << 16) | SEL_CODE64
  wrmsr
  mov ecx, MSR_LSTAR
  mov rax, syscall_entry
  mov rdx, rax
  shr rdx, 32
  wrmsr
  mov ecx, MSR_SFMASK
  mov eax, 0x47700                 ; TF IF DF IOPL NT AC
  xor edx, edx
  wrmsr
  ; INT 0x80 gate callable from CPL3.
  mov edi, 0x80
  mov rsi, int80_handler
  xor edx, edx
  mov ecx, 3
  call set_gate
  ; To CPL3.
  push SEL_UDATA | 3
  push USER_STACK
  push USER_RFLAGS
  push SEL_UCODE64 | 3
  push user64
  iretq

; --- Kernel: SYSCALL entry. RAX = call number, RDI = argument.
syscall_entry:
  mov [user_rsp], rsp
  mov rsp, SYSCALL_STACK
  push rax
  mov ax, cs
  cmp ax, SEL_CODE64
  CHECK e, FAIL_SYSCALL_CS
  pushfq
  pop rax
  test eax, 0x400 | 0x200 | 0x100  ; SFMASK cleared DF, IF, TF
  CHECK z, FAIL_SYSCALL_FLAGS
  pop rax
  cmp rax, 0
  je sys_exit
  cmp rax, 1
  je sys_double
  cmp rax, 2
  je sys_fail
  cmp rax, 3
  je sys_to_compat
  EXIT FAIL_UNKNOWN_CALL

sys_exit:
  mov rsi, msg_done
  call puts64
  EXIT PASS

sys_fail:
  mov rsi, msg_user_fail
  call puts64
  mov eax, edi
  out DEBUG_EXIT_PORT, al
  cli
  hlt

sys_double:
  ; RCX is the user return address, R11 the user RFLAGS; the stack was not switched.
  cmp rcx, user64.after_syscall
  CHECK e, FAIL_SYSCALL_RCX
  mov rax, r11
  and rax, 0xCD5
  cmp rax, USER_RFLAGS & 0xCD5
  CHECK e, FAIL_SYSCALL_R11
  cmp qword [user_rsp], USER_STACK - 8
  CHECK e, FAIL_SYSCALL_RSP
  lea rax, [rdi * 2]
  mov rsp, [user_rsp]
  o64 sysret

sys_to_compat:
  ; SYSRETL: to 32-bit user code at ECX with EFLAGS from R11.
  mov ecx, user32
  mov r11d, 0x202 & ~0x200
  mov rsp, [user_rsp]
  sysret

; --- Kernel: INT 0x80 (DPL3 gate, no IST): on TSS.RSP0 with the user frame.
int80_handler:
  cmp rsp, RSP0_STACK - 40
  CHECK e, FAIL_INT_STACK
  mov rax, [rsp + 8]
  and eax, 3
  cmp eax, 3
  CHECK e, FAIL_INT_FRAME
  cmp qword [rsp + 32], SEL_UDATA | 3
  CHECK e, FAIL_INT_FRAME
  cmp qword [rsp + 8], SEL_UCODE32 | 3
  je .from_compat
  cmp qword [rsp + 24], USER_STACK - 8
  CHECK e, FAIL_INT_FRAME
  mov eax, 0x1234
  iretq
.from_compat:
  ; Back from 32-bit user code: EBX holds its result.
  cmp ebx, 0x600D
  CHECK e, FAIL_COMPAT
  mov rsi, msg_compat
  call puts64
  ; Return to 64-bit user code for the final exit call.
  mov qword [rsp], user64.final
  mov qword [rsp + 8], SEL_UCODE64 | 3
  mov qword [rsp + 24], USER_STACK - 8
  iretq

; --- User code (CPL3, 64-bit).
user64:
  push rax                          ; USER_STACK - 8 from here on
  mov ax, cs
  and eax, 3
  cmp eax, 3
  je .cpl_ok
  mov edi, FAIL_USER_CPL
  mov eax, 2
  syscall
.cpl_ok:
  mov edi, 21
  mov eax, 1
  push USER_RFLAGS
  popfq
  syscall
.after_syscall:
  ; SYSRET restored RFLAGS from R11 (DF and the arithmetic flags come back).
  pushfq
  pop rbx
  and ebx, 0xCD5
  cmp ebx, USER_RFLAGS & 0xCD5
  je .flags_ok
  mov edi, FAIL_SYSRET_FLAGS
  mov eax, 2
  syscall
.flags_ok:
  cld
  cmp rax, 42
  je .result_ok
  mov edi, FAIL_SYSRET_RESULT
  mov eax, 2
  syscall
.result_ok:
  mov eax, 2
  int 0x80
  cmp eax, 0x1234
  je .int_ok
  mov edi, FAIL_INT_RESULT
  mov eax, 2
  syscall
.int_ok:
  ; To 32-bit compatibility mode through SYSRETL, back through INT 0x80.
  mov eax, 3
  syscall
.final:
  xor eax, eax
  syscall

bits 32
user32:
  ; CPL3 compatibility mode: 32-bit operations, upper register halves not visible.
  mov eax, 0x600D
  mov ebx, eax
  int 0x80
  ud2
bits 64

msg_start: db "syscall: to CPL3", 10, 0
msg_compat: db "syscall: back from 32-bit user code", 10, 0
msg_done: db "syscall: exit call from CPL3", 10, 0
msg_user_fail: db "syscall: user code reported a failure", 10, 0
align 8
user_rsp: dq 0
