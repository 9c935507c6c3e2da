; Accesses and instructions that cross page boundaries. The harness maps the data pages in the
; physical order 2 0 3 1 and swaps the code pages in pairs, so a split access or a split
; instruction fetch is only right if both pages are translated. Also: a store crossing into an
; unmapped page must fault without writing its first part.
%include "prelude.inc"

%define B1 (DATA_VA + 0x1000)      ; page boundaries inside the data region
%define B2 (DATA_VA + 0x2000)
%define B3 (DATA_VA + 0x3000)
%define END (DATA_VA + DATA_SIZE)

CASE load_sizes_across
  mov ax, [abs B1 - 1]
  mov ebx, [abs B1 - 3]
  mov rcx, [abs B2 - 5]
  mov rdx, [abs B3 - 7]
  movzx esi, word [abs B2 - 1]
  movsx rdi, dword [abs B3 - 2]
CASE store_sizes_across
  mov rax, 0x0102030405060708
  mov [abs B1 - 1], ax
  mov [abs B1 - 10], eax
  mov [abs B2 - 3], eax
  mov [abs B3 - 4], rax
  mov [abs B1 - 7], rax
  mov qword [abs B2 - 6], -2
CASE rmw_across
  mov eax, 0x11111111
  add [abs B1 - 2], eax
  sub qword [abs B2 - 3], 0x1234
  inc word [abs B3 - 1]
  not dword [abs B1 - 3]
  shl qword [abs B2 - 5], 3
  xadd [abs B3 - 2], eax
  btc dword [abs B1 - 1], 17
CASE vector_across
  movdqu xmm0, [abs B1 - 8]
  movups [abs B2 - 3], xmm0
  vmovdqu ymm1, [abs B2 - 17]
  vmovdqu [abs B3 - 31], ymm1
  vmovdqu64 zmm2, [abs B1 - 40]
  vmovdqu64 [abs B3 - 1], zmm2
  vpaddd zmm3, zmm2, [abs B2 - 12]
  movq xmm4, [abs B3 - 4]
  pinsrd xmm4, [abs B1 - 2], 2
CASE masked_store_across
  vmovdqu64 zmm0, [abs DATA_VA + 0x400]
  mov eax, 0xF00F
  kmovw k1, eax
  vmovdqu32 [abs B2 - 32]{k1}, zmm0
  vmovdqu32 zmm1{k1}{z}, [abs B1 - 20]
CASE string_across
  mov rsi, B1 - 37
  mov rdi, B3 - 21
  mov ecx, 100
  rep movsb
  mov rdi, B2 - 12
  mov rax, 0x5A5A5A5A5A5A5A5A
  mov ecx, 5
  rep stosq
  std
  mov rsi, B1 + 16
  mov rdi, B2 + 9
  mov ecx, 70
  rep movsb
  cld
  mov rsi, B1 - 37
  mov rdi, B3 - 21
  mov ecx, 100
  repe cmpsb
CASE rep_movsd_element_straddles_source
  mov rsi, B2 - 0x21
  mov rdi, DATA_VA + 0x800
  mov ecx, 20
  rep movsd
CASE rep_movsq_element_straddles_dest
  mov rsi, DATA_VA + 0x800
  mov rdi, B1 - 0x43
  mov ecx, 20
  rep movsq
CASE rep_stosq_element_straddles_down
  std
  mov rdi, B2 + 0x22
  mov rax, 0x1122334455667788
  mov ecx, 12
  rep stosq
  cld
CASE rep_movsw_straddles_down
  std
  mov rsi, B3 + 1
  mov rdi, DATA_VA + 0x452
  mov ecx, 5
  rep movsw
  cld
CASE rep_lodsd_cmpsd_scasd_straddle
  mov rsi, B1 - 6
  mov ecx, 4
  rep lodsd
  mov rsi, B1 - 7
  mov rdi, B3 - 9
  mov ecx, 6
  repe cmpsd
  mov rdi, B2 - 2
  mov eax, [abs B2 - 2]
  mov ecx, 3
  repne scasd
CASE stack_across
  mov rbx, rsp
  mov rsp, B3 + 4
  push rax
  push word 0x1234
  pop cx
  pop rdx
  mov rsp, B2 + 2
  call .f
  jmp .done
.f:
  mov rax, [rsp]
  ret
.done:
  mov rsp, rbx
CASE store_into_unmapped_page
  mov rax, 0x1122334455667788
  mov [abs END - 4], rax
CASE load_from_unmapped_page
  mov rax, [abs END - 2]
CASE vector_store_into_unmapped
  vmovdqu64 zmm0, [abs DATA_VA + 0x100]
  vmovdqu64 [abs END - 16], zmm0
CASE string_into_unmapped
  mov rdi, END - 24
  mov rax, -1
  mov ecx, 8
  rep stosq
CASE code_across_pages
  ; Pad so that a long instruction straddles the first code page boundary.
  times 0x1000 - 4 - ($ - $$) nop
  mov rax, 0x0123456789ABCDEF          ; 10 bytes at +0xFFC: crosses into the next page
  add rax, 1
  lea rbx, [rel $]
CASE jump_to_page_boundary
  jmp .target
  times 0x1000 - ($ - $$) int3
.target:                               ; exactly at the first code page boundary
  mov eax, 1
  times 0x2000 - 2 - ($ - $$) nop
  jmp short .next                      ; a branch whose encoding ends at the boundary
.next:
  mov ebx, 2
CASE push_mem_across
  push qword [abs B1 - 3]
  mov rsp, B2 + 4
  push qword [abs B3 - 1]
  push qword [rsp + 2]
END_CASES
