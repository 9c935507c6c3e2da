; Random bytes at CPL3: the guest jumps into a few KiB of bytes from a seeded generator, in
; 64-bit and in 32-bit compatibility-mode user code. Whatever those bytes do ends in a guest
; exception (#UD, #GP, #PF, #DE, #AC...), delivered through the guest's own IDT to a handler
; that counts it and restarts the user code at another pseudo-random offset with a fresh stack
; and registers. After TARGET_EXCEPTIONS exceptions the guest reports PASS. The kernel (first
; 2 MiB) is supervisor-only, so user code cannot damage it; a fault at CPL0 is a failure.
;
; The random block is preceded by the marker "ROVE-RANDOM-BYTES" so that the test driver can
; replace it with bytes from other seeds.
%include "guest.inc"
%include "boot.inc"

%define RANDOM_ADDR 0x200000
%define RANDOM_SIZE 0x1000
%define USER_DATA 0x280000        ; user stack area: 0x280000..0x2FFFFF
%define TARGET_EXCEPTIONS 200
%define NEW_PD 0x5000

%define FAIL_KERNEL_FAULT 0xB1

main64:
  mov rsi, msg_start
  call puts64
  ; Address space: 0-2 MiB supervisor only (kernel), 2-4 MiB user (random code + user data),
  ; everything else not present.
  ; The new page directory is built aside and switched in with one PDPT store, so that the
  ; code running here stays mapped at every moment (no reliance on cached translations).
  mov rdi, NEW_PD
  mov ecx, 512
  xor eax, eax
  rep stosq
  mov qword [NEW_PD], 0x83                 ; 0-2 MiB: present, writable, supervisor
  mov qword [NEW_PD + 8], 0x200000 | 0x87  ; 2-4 MiB: present, writable, user
  mov qword [PDPT_ADDR], NEW_PD | 7
  mov rax, cr3
  mov cr3, rax
  ; Random bytes to RANDOM_ADDR.
  mov rsi, random_block
  mov rdi, RANDOM_ADDR
  mov ecx, RANDOM_SIZE
  rep movsb
  ; Every vector to the counting stubs (DPL0 gates: INT n from CPL3 is #GP).
  xor edi, edi
.gates:
  mov rsi, count_stubs
  mov eax, edi
  shl eax, 4
  add rsi, rax
  xor edx, edx
  xor ecx, ecx
  call set_gate
  inc edi
  cmp edi, 256
  jb .gates
  ; Seed the restart generator from the block itself.
  mov rax, [random_block]
  mov [lcg], rax
  jmp restart_user

align 16
count_stubs:
%assign __v 0
%rep 256
  align 16
  %if __v == 8 || (__v >= 10 && __v <= 14) || __v == 17 || __v == 21 || __v == 29 || __v == 30
  %else
    push 0
  %endif
  push __v
  jmp count_exception
  %assign __v __v + 1
%endrep

; Stack: vector, error code, RIP, CS, RFLAGS, RSP, SS.
count_exception:
  cld                                      ; user code may have left DF set
  test qword [rsp + 24], 3
  jnz .from_user
  mov rsi, msg_kernel_fault
  call puts64
  mov rax, [rsp]
  call puthex64
  mov rsi, msg_at
  call puts64
  mov rax, [rsp + 16]
  call puthex64
  mov rsi, msg_nl
  call puts64
  EXIT FAIL_KERNEL_FAULT
.from_user:
  mov rax, [rsp]
  and eax, 31
  inc qword [per_vector + rax * 8]
  inc qword [total]
  mov rsp, RSP0_STACK                      ; drop the frame; build a fresh one below
  cmp qword [total], TARGET_EXCEPTIONS
  jae finished
restart_user:
  ; Next pseudo-random entry point.
  mov rax, [lcg]
  mov rbx, 6364136223846793005
  imul rax, rbx
  mov rbx, 1442695040888963407
  add rax, rbx
  mov [lcg], rax
  shr rax, 33
  mov rbx, rax
  and eax, RANDOM_SIZE - 1
  add rax, RANDOM_ADDR
  push SEL_UDATA | 3
  push USER_DATA + 0x40000                 ; user stack
  push 0x202
  test bl, 0x30                            ; one time in four: 32-bit compatibility mode
  jz .compat
  push SEL_UCODE64 | 3
  jmp .rip
.compat:
  push SEL_UCODE32 | 3
.rip:
  push rax
  ; Fresh registers: small values keep LOOP/REP counts short, pointers into user data.
  mov ecx, 7
  mov rbx, USER_DATA
  mov rsi, USER_DATA + 0x1000
  mov rdi, USER_DATA + 0x2000
  mov rbp, USER_DATA + 0x3000
  xor eax, eax
  xor edx, edx
  xor r8d, r8d
  xor r9d, r9d
  xor r10d, r10d
  xor r11d, r11d
  xor r12d, r12d
  xor r13d, r13d
  xor r14d, r14d
  xor r15d, r15d
  mov bx, SEL_UDATA | 3
  mov ds, bx
  mov es, bx
  mov rbx, USER_DATA
  iretq

finished:
  mov ax, SEL_DATA64
  mov ds, ax
  mov es, ax
  mov rsi, msg_summary
  call puts64
  xor ebx, ebx
.vec:
  mov rax, [per_vector + rbx * 8]
  test rax, rax
  jz .skip
  mov rsi, msg_vector
  call puts64
  mov rax, rbx
  call puthex64
  mov rsi, msg_times
  call puts64
  mov rax, [per_vector + rbx * 8]
  call puthex64
  mov rsi, msg_nl
  call puts64
.skip:
  inc ebx
  cmp ebx, 32
  jb .vec
  EXIT PASS

msg_start: db "random_bytes: running random bytes at CPL3", 10, 0
msg_kernel_fault: db "random_bytes: exception at CPL0, vector ", 0
msg_at: db " rip ", 0
msg_summary: db "random_bytes: exceptions by vector:", 10, 0
msg_vector: db "  vector ", 0
msg_times: db ": ", 0
align 8
lcg: dq 0
total: dq 0
per_vector: times 32 dq 0

align 16
db "ROVE-RANDOM-BYTES"
random_block:
%assign __seed 0x2545F4914F6CDD1D
%rep RANDOM_SIZE
  %assign __seed (__seed * 6364136223846793005 + 1442695040888963407)
  db (__seed >> 56) & 0xFF
%endrep
