; GS-relative memory operands (translated code uses a segment base of its own, so guest GS
; accesses have to be rewritten): loads, stores, RMW, vector and string operations with a GS
; override, RIP-relative with GS, 32-bit address size with GS, RDGSBASE/WRGSBASE and accesses
; through the new base. The harness starts every case with GS base = DATA_VA + 0x2000 (natively
; it lends the host's unused GS base for the duration of the sequence).
%include "prelude.inc"

%define GSB (DATA_VA + 0x2000)

CASE gs_load_store
  mov rax, [gs:0x10]
  mov rbx, 0x1122334455667788
  mov [gs:0x18], rbx
  mov ecx, [gs:rbx * 0 + 0x20]
  mov rsi, 0x40
  mov dx, [gs:rsi + 2]
  mov byte [gs:rsi * 2 - 1], 0x7F
CASE gs_rmw_and_flags
  SETFLAGS FLAGS_SET
  add qword [gs:0x100], 5
  adc dword [gs:0x108], -1
  inc word [gs:0x10C]
  lock xadd [gs:0x110], rax
  lock cmpxchg [gs:0x118], rbx
  bts qword [gs:0x120], 5
  setc cl
CASE gs_negative_and_large_disp
  mov rax, [gs:-0x800]
  mov [gs:0x1FF8], rax
  mov rbx, -0x1000
  add [gs:rbx + 0x10], eax
CASE gs_vectors
  movdqu xmm0, [gs:0x200]
  paddd xmm0, [gs:0x210]
  movdqu [gs:0x220], xmm0
  vmovdqu ymm1, [gs:0x240]
  vpaddq ymm2, ymm1, [gs:0x260]
  vmovdqu64 zmm3, [gs:0x280]
  mov eax, 0x00FF
  kmovw k1, eax
  vmovdqu32 [gs:0x2C0]{k1}, zmm3
  vpaddd zmm4, zmm3, [gs:0x300]{1to16}
CASE gs_string_source
  mov rsi, 0x10
  lea rdi, [DATA(0x400)]
  mov ecx, 24
  db 0x65, 0xF3, 0xA4      ; gs rep movsb (source gs:rsi)
  mov rsi, 0x40
  db 0x65, 0x48, 0xAD      ; gs lodsq
CASE gs_riprel
  ; RIP-relative plus the GS base: [gs:rel X] reads GS base + X's address.
  mov rax, [gs:rel $ - 0x20000000 + 0x10]
CASE gs_a32
  mov ebx, 0x30
  mov eax, [gs:ebx + 8]
  mov ecx, 0xFFFFFFF0
  add [gs:ecx + 0x20], eax
CASE gs_a32_offset_wraps_before_base
  ; The 32-bit offset wraps at 4 GiB; the GS base is added afterwards (64-bit linear
  ; address 0x1_1000_1800: not mapped, #PF).
  mov ecx, 0xFFFFF000
  mov eax, [gs:ecx + 0x800]
CASE gs_a32_offset_negative_disp
  mov ecx, 0x100
  mov eax, [gs:ecx - 0x200]
CASE gs_push_pop_mem
  push qword [gs:0x40]
  pop qword [gs:0x48]
  lea rax, [.f]
  mov [gs:0x50], rax
  call [gs:0x50]
  jmp .done
.f:
  mov edx, 3
  ret
.done:
CASE rdgsbase_wrgsbase
  rdgsbase rax
  mov rbx, DATA_VA + 0x100
  wrgsbase rbx
  mov rcx, [gs:0]
  mov qword [gs:8], 0x55
  rdgsbase rdx
  wrgsbase rax
  mov rsi, [gs:8]
CASE wrgsbase_32bit_and_noncanonical
  rdgsbase eax
  mov rbx, 0x8000000000000000
  wrgsbase rbx
CASE fs_and_gs_lea_unaffected
  lea rax, [gs:0x1234]
  lea rbx, [fs:rax + 8]
CASE gs_push_mem
  push qword [gs:0x10]
  mov rsi, 0x40
  push qword [gs:rsi + 8]
  push qword [gs:rsi * 2 - 8]
END_CASES
