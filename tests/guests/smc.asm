; Self-modifying code: patching an immediate in a function that already ran (and was
; translated) changes its result; a store into the block that is executing right now changes
; an instruction further down the same block; patching a branch offset changes the path; code
; written through a second virtual alias of the same physical page is seen at the first; code
; generated into a data buffer, run, and regenerated.
%include "guest.inc"
%include "boot.inc"

%define FAIL_PATCH_FUNC 0x91
%define FAIL_SAME_BLOCK 0x92
%define FAIL_BRANCH 0x93
%define FAIL_ALIAS 0x94
%define FAIL_LOOP 0x95
%define FAIL_NEXT_INSN 0x96

%define ALIAS_VA 0x40000000       ; second mapping of the code, beyond the identity GiB

main64:
  mov rsi, msg_start
  call puts64

  ; 1. A function that already ran gets a new immediate.
  call get_value
  cmp eax, 0x11111111
  CHECK e, FAIL_PATCH_FUNC
  call get_value
  cmp eax, 0x11111111
  CHECK e, FAIL_PATCH_FUNC
  mov dword [get_value.imm + 1], 0x22222222
  call get_value
  cmp eax, 0x22222222
  CHECK e, FAIL_PATCH_FUNC

  ; 2. A store into the block being executed: the instruction after the store is patched.
  mov byte [.same + 1], 0x42
.same:
  mov al, 0x00
  cmp al, 0x42
  CHECK e, FAIL_SAME_BLOCK
  ; ... and the very next instruction, several times in a loop (the block is re-translated
  ; each time it is patched).
  xor ebx, ebx
  mov ecx, 5
.loop:
  mov byte [.next + 2], cl          ; add bl, imm8 is 80 C3 ib
.next:
  add bl, 0x00
  dec ecx
  jnz .loop
  cmp bl, 5 + 4 + 3 + 2 + 1
  CHECK e, FAIL_LOOP
  ; 3. A patched branch displacement.
  call branchy
  cmp eax, 1
  CHECK e, FAIL_BRANCH
  mov byte [branchy.jump + 1], branchy.other - branchy.jump - 2
  call branchy
  cmp eax, 2
  CHECK e, FAIL_BRANCH

  ; 4. Writes through another virtual mapping of the same physical page.
  ; PDPT[1] -> a PD mapping ALIAS_VA.. to physical 0 with 2 MiB pages.
  mov qword [PDPT_ADDR + 8], 0x5000 | 7
  mov rdi, 0x5000
  mov ecx, 512
  xor eax, eax
  mov rdx, 0x87
.alias:
  mov [rdi], rdx
  add rdx, 0x200000
  add rdi, 8
  loop .alias
  mov rax, cr3
  mov cr3, rax
  call get_other
  cmp eax, 0x33333333
  CHECK e, FAIL_ALIAS
  mov rdi, ALIAS_VA + get_other.imm + 1
  mov dword [rdi], 0x44444444
  call get_other
  cmp eax, 0x44444444
  CHECK e, FAIL_ALIAS

  ; 5. Code generated into a buffer, run, regenerated with different bytes, run again.
  mov rdi, SCRATCH_ADDR
  mov byte [rdi], 0xB8              ; mov eax, imm32
  mov dword [rdi + 1], 0x55555555
  mov byte [rdi + 5], 0xC3          ; ret
  mov rax, SCRATCH_ADDR
  call rax
  cmp eax, 0x55555555
  CHECK e, FAIL_NEXT_INSN
  mov byte [rdi], 0x31              ; xor eax, eax ; inc eax ; ret
  mov byte [rdi + 1], 0xC0
  mov byte [rdi + 2], 0xFF
  mov byte [rdi + 3], 0xC0
  mov byte [rdi + 4], 0xC3
  mov rax, SCRATCH_ADDR
  call rax
  cmp eax, 1
  CHECK e, FAIL_NEXT_INSN

  mov rsi, msg_done
  call puts64
  EXIT PASS

get_value:
.imm:
  mov eax, 0x11111111
  ret

get_other:
.imm:
  mov eax, 0x33333333
  ret

branchy:
.jump:
  jmp short .one
.one:
  mov eax, 1
  ret
.other:
  mov eax, 2
  ret

msg_start: db "smc: self-modifying code", 10, 0
msg_done: db "smc: every patch was seen", 10, 0
