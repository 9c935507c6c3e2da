; Miscellaneous integer instructions: sign extensions (CBW CWDE CDQE CWD CDQ CQO), MOVZX MOVSX
; MOVSXD, BSWAP, XLAT, MOV forms (moffs, imm64, high-byte registers), flag instructions (CLC STC
; CMC CLD STD), ADCX/ADOX, MOVBE, CRC32, fences, prefetches, CLFLUSH, multi-byte NOPs, ENDBR64,
; redundant prefixes.
%include "prelude.inc"

CASE sign_extend_acc
  mov rax, 0x1234567890AB80FF
  cbw
  mov rbx, rax
  mov rax, 0x12345678FFFF8000
  cwde
  mov rcx, rax
  mov rax, 0x1234567880000000
  cdqe
  mov rdx, 0x5555555555555555
  mov rax, 0x8000
  cwd
  mov rsi, rdx
  mov eax, 0x80000000
  cdq
  mov rdi, rdx
  mov rax, -5
  cqo
CASE movzx_movsx
  mov rbx, 0x1122334455667788
  mov rcx, 0x00000000000080F0
  movzx eax, bl
  movzx rdx, cx
  movsx rsi, cl
  movsx edi, ch
  movsx r8w, cl
  movsx r9, cx
  movsxd r10, ecx
  movsxd r11, dword [SCRATCH]
  movzx r12d, byte [SCRATCH + 3]
  movsx r13, word [SCRATCH + 5]
  movzx bp, bh
CASE bswap_forms
  mov rax, 0x0102030405060708
  mov r9, 0x1112131415161718
  bswap rax
  bswap r9d
  bswap ebx
CASE xlat
  lea rbx, [SCRATCH]
  mov eax, 0x12345617
  xlatb
CASE mov_forms
  mov rax, 0x123456789ABCDEF0
  mov al, [abs qword DATA_VA + 0x100]
  mov [abs qword DATA_VA + 0x108], rax
  mov eax, [abs qword DATA_VA + 0x110]
  mov ax, [abs qword DATA_VA + 0x120]
  mov [abs qword DATA_VA + 0x128], ax
  mov ah, 0x7F
  mov ch, ah
  mov dh, [SCRATCH]
  mov [SCRATCH + 1], bh
  mov r8b, 0x80
  mov r9w, 0xFFFF
  mov r10d, -1
  mov r11, -1
  mov qword [SCRATCH + 8], -2
  mov dword [SCRATCH + 16], 0x80000000
  mov ebx, ebx
CASE flag_ops
  clc
  setc al
  stc
  setc bl
  cmc
  setc cl
  cmc
  std
  cld
  std
CASE adcx_adox
  mov rax, -1
  mov rbx, 1
  mov rcx, 0x7FFFFFFFFFFFFFFF
  SETFLAGS FLAGS_CLEAR
  adcx rax, rbx
  adox rcx, rbx
  adcx rax, rbx
  adox rcx, rbx
  adcx edx, eax
  adox esi, ecx
  adcx r8, [SCRATCH]
CASE movbe_forms
  mov rax, 0x0102030405060708
  movbe [SCRATCH], rax
  movbe [SCRATCH + 8], eax
  movbe [SCRATCH + 12], ax
  movbe rbx, [SCRATCH + 1]
  movbe ecx, [SCRATCH + 2]
  movbe dx, [SCRATCH + 3]
CASE crc32_forms
  mov eax, 0xFFFFFFFF
  mov rbx, 0x0123456789ABCDEF
  crc32 eax, bl
  crc32 eax, bx
  crc32 eax, ebx
  crc32 rax, rbx
  crc32 eax, byte [SCRATCH]
  crc32 rax, qword [SCRATCH + 8]
CASE fences_prefetch_flush
  mov rbx, DATA_VA + 0x200
  mfence
  lfence
  sfence
  prefetcht0 [rbx]
  prefetchnta [rbx + 64]
  prefetchw [rbx + 128]
  clflush [rbx]
  clflushopt [rbx + 64]
  mov qword [rbx], 9
  pause
CASE nops
  nop
  db 0x66, 0x90
  db 0x0F, 0x1F, 0x00
  db 0x0F, 0x1F, 0x40, 0x00
  db 0x0F, 0x1F, 0x44, 0x00, 0x00
  db 0x66, 0x0F, 0x1F, 0x44, 0x00, 0x00
  db 0x0F, 0x1F, 0x80, 0x00, 0x00, 0x00, 0x00
  db 0x0F, 0x1F, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00
  db 0x66, 0x2E, 0x0F, 0x1F, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00
  endbr64
  mov eax, 1
CASE redundant_prefixes
  db 0x40, 0x01, 0xD8          ; rex add eax, ebx
  db 0x48, 0x48, 0x01, 0xD8    ; two REX.W (only the last counts)
  db 0x66, 0x66, 0x01, 0xD8    ; two operand-size prefixes
  mov eax, 1
CASE redundant_prefixes_setup
  lea rbx, [SCRATCH]
  db 0x2E, 0x3E, 0x8B, 0x03    ; cs ds mov eax, [rbx]
  db 0x66, 0x40, 0x01, 0xD8    ; o16 rex add ax, bx
  db 0xF2, 0x01, 0xD8          ; ignored repne on add
  db 0xF3, 0x48, 0x01, 0xD8    ; ignored rep on add
CASE rex_before_legacy_prefix
  ; REX must immediately precede the opcode: here it is followed by 66h and ignored.
  mov rax, 0x1111111122222222
  mov rbx, 0x3333333344444444
  db 0x48, 0x66, 0x01, 0xD8    ; add ax, bx (REX.W ignored)
CASE long_instruction_15_bytes
  ; cs cs cs REX.W add qword [rbx + rbx*1 + 0], imm32: 3 + 1 + 1 + 1 + 1 + 4 + 4 = 15 bytes
  lea rbx, [SCRATCH]
  shr rbx, 1
  db 0x2E, 0x2E, 0x2E, 0x48, 0x81, 0x84, 0x1B, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04
  mov eax, 1
CASE too_long_instruction_gp
  ; the same with one more prefix: 16 bytes
  lea rbx, [SCRATCH]
  shr rbx, 1
  db 0x2E, 0x2E, 0x2E, 0x2E, 0x48, 0x81, 0x84, 0x1B, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03
  db 0x04
  mov eax, 1
CASE ud2_and_after
  mov eax, 1
  ud2
  mov eax, 2
CASE int3_trap
  mov eax, 1
  int3
  mov eax, 2
CASE into_invalid_in_64bit
  mov eax, 1
  db 0xCE
CASE bcd_invalid_in_64bit
  mov eax, 1
  db 0x27        ; daa: #UD in 64-bit mode
END_CASES
