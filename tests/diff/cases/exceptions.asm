; Precise exceptions: the vector, the faulting instruction, the error code and the complete
; state at the fault (RFLAGS included) for #UD, #DE, #BP, #DB (ICEBP), #GP (misaligned SSE,
; non-canonical address), #SS (non-canonical stack access), #PF (not present, write to
; read-only code, execution of no-execute data); faults in the middle of a block after stores;
; alignment checks before paging; shifts by zero leave RFLAGS alone; 32-bit address wrap-around
; in SSE/AVX/AVX-512 memory operands.
%include "prelude.inc"

%define UNMAPPED 0x50000000

CASE flags_at_ud2_first
  SETFLAGS FLAGS_SET
  ud2
CASE flags_at_ud2_after_alu
  mov eax, 0x7FFFFFFF
  add eax, 1
  ud2
CASE flags_at_div_zero
  mov ecx, 0
  mov eax, 5
  SETFLAGS FLAGS_SET
  div ecx
CASE flags_at_div_overflow_mid_block
  mov rax, 1
  mov rdx, 5
  mov rcx, 2
  mov [SCRATCH], rax
  SETFLAGS 0x0883
  div rcx
  mov eax, 7
CASE flags_at_sse_alignment_gp
  SETFLAGS FLAGS_SET
  movaps xmm0, [DATA(8)]
CASE flags_at_pf_read
  SETFLAGS FLAGS_SET
  mov rax, [abs UNMAPPED]
CASE flags_at_pf_after_cmp
  mov rbx, UNMAPPED
  cmp ebx, 0x50000001
  mov [rbx], eax
CASE flags_and_df_at_fault
  SETFLAGS 0x0CD7
  ud2
CASE stores_before_fault_visible
  mov qword [SCRATCH], 1
  add qword [SCRATCH + 8], 2
  mov byte [SCRATCH + 16], 3
  push rax
  ud2
CASE fault_after_taken_branch
  xor eax, eax
  jz .t
  mov eax, 1
.t:
  inc eax
  ud2
CASE pf_write_to_code
  mov eax, 1
  mov [rel $], eax
CASE pf_execute_data
  lea rax, [DATA(0x100)]
  jmp rax
CASE pf_not_present_push_unaffected_state
  mov rcx, UNMAPPED
  SETFLAGS FLAGS_SET
  add [rcx + 8], eax
CASE gp_noncanonical
  mov rax, 0x8000000000000000
  SETFLAGS FLAGS_SET
  mov rbx, [rax]
CASE ss_noncanonical_stack
  mov rsp, 0x8000000000000000
  push rax
CASE ss_noncanonical_pop
  SETFLAGS FLAGS_SET
  mov rsp, 0x0000800000000000
  pop rax
CASE ss_noncanonical_call
  mov rsp, 0x0000800000000008
  call .target
.target:
  nop
CASE ss_noncanonical_rbp_operand
  mov rbp, 0x8000000000000000
  SETFLAGS FLAGS_SET
  add [rbp + 8], eax
CASE ss_noncanonical_rbp_index
  mov rbp, 0x0000800000000000
  mov rbx, 0
  SETFLAGS FLAGS_SET
  mov eax, [rbx + rbp]
CASE ss_noncanonical_rbp_ds_override
  mov rbp, 0x0000800000000000
  mov eax, [ds:rbp + 16]
CASE ss_noncanonical_rbp_fs_override
  mov rbp, 0x0000800000000000
  mov eax, [fs:rbp + 16]
CASE ss_noncanonical_rsp_operand
  mov rax, rsp
  mov rsp, 0xFFFF000000000000
  mov [rsp + 8], eax
CASE ss_override_noncanonical
  mov rax, 0x8000000000000000
  mov rbx, [ss:rax]
CASE gp_noncanonical_push_source
  mov rax, 0x8000000000000000
  push qword [rax]
CASE int3_cc_and_cd03
  mov eax, 1
  int3
CASE int_03
  mov eax, 2
  int 3
CASE icebp_db
  mov eax, 3
  db 0xF1
CASE sse_alignment_before_paging
  mov rax, 0xFFFFFFFFFFFFFE00 + 8
  por xmm0, [rax]
CASE sse_alignment_legacy_ops
  SETFLAGS FLAGS_CLEAR
  pmullw xmm11, [DATA(0x7F2)]
CASE sse_alignment_absolute_address
  pmullw xmm11, [abs DATA_VA + 0x7F2]
CASE sse_alignment_base_index
  mov rbx, DATA_VA
  mov rcx, 0x100
  paddd xmm3, [rbx + rcx * 8 + 0x7F2]
CASE flags_at_vex_store_gp
  mov rcx, DATA_VA + 0x1008
  SETFLAGS FLAGS_SET
  vmovaps [rcx], ymm14
CASE flags_at_pf_index_only
  mov rbx, 0x0A000000
  SETFLAGS FLAGS_SET
  or al, [rbx * 8 + 0x23]
CASE flags_at_pf_rmw_variants
  mov rcx, UNMAPPED
  SETFLAGS FLAGS_SET
  inc dword [rcx]
CASE flags_at_pf_rmw_sub_byte
  mov rcx, UNMAPPED
  SETFLAGS FLAGS_SET
  sub byte [rcx], 1
CASE flags_at_pf_mov_store
  mov rcx, UNMAPPED
  SETFLAGS FLAGS_SET
  mov [rcx], eax
CASE flags_at_pf_cmp_mem
  mov rcx, UNMAPPED
  SETFLAGS FLAGS_SET
  cmp [rcx], eax
CASE vex_aligned_store_riprel
  vmovaps [DATA(0xFF3)], xmm4
CASE vex_aligned_load_riprel
  vmovdqa ymm5, [DATA(0xFF0)]
CASE evex_aligned_store_riprel
  vmovdqa64 [DATA(0xFE8)], zmm6
CASE sse_alignment_pxor
  pxor xmm1, [DATA(0x801)]
CASE unaligned_sse_across_pages_no_gp
  movups xmm0, [DATA(0xFF9)]          ; page-crossing: bounced, must not fault
  movdqu [DATA(0x1FF3)], xmm0
  lddqu xmm1, [DATA(0x2FFB)]
  movupd xmm2, [DATA(0xFFC)]
  mov eax, 5
  mov edx, 5
  pcmpestri xmm1, [DATA(0x1FF7)], 0x0C
  cvtps2pd xmm3, [DATA(0x2FFC)]       ; 8-byte operand
  movhps xmm4, [DATA(0xFFD)]
CASE cmpxchg16b_alignment_before_paging
  mov rsi, UNMAPPED + 8
  lock cmpxchg16b [rsi]
CASE cmpxchg16b_alignment_across_pages
  lock cmpxchg16b [DATA(0xFF8)]
CASE vex_aligned_before_paging
  mov rax, UNMAPPED + 0x20
  vmovdqa ymm1, [rax]                 ; aligned to 32: #PF
CASE vex_misaligned_before_paging
  mov rax, UNMAPPED + 0x10
  vmovntdq [rax], ymm1                ; 16 is not 32: #GP, not #PF
CASE evex_masked_aligned_move_misaligned
  mov eax, 1
  kmovw k1, eax
  vmovdqa32 zmm2{k1}, [DATA(0x1FE0)]  ; misaligned and page-crossing even though masked: #GP
CASE avx_no_alignment_needed
  vpxor xmm1, xmm2, [DATA(0x801)]
  vpaddd ymm3, ymm4, [DATA(0x803)]
  vmovdqu32 zmm5, [DATA(0x805)]
CASE shift_mem_by_zero_keeps_flags
  mov qword [SCRATCH], 0x1234
  SETFLAGS FLAGS_SET
  shr word [SCRATCH], 0
  sar dword [SCRATCH], 0
  mov cl, 0
  shl qword [SCRATCH], cl
  rol byte [SCRATCH], 0
  rcr word [SCRATCH], cl
  mov cl, 64
  shl qword [SCRATCH], cl
CASE shift_mem_by_zero_keeps_flags_clear
  mov qword [SCRATCH], 0x8001
  SETFLAGS FLAGS_CLEAR
  shr word [SCRATCH], 0
  mov cl, 32
  sar dword [SCRATCH], cl
CASE shift_reg_by_zero_keeps_flags
  SETFLAGS FLAGS_SET
  shr ax, 0
  mov cl, 0
  sar ebx, cl
  rcl rdx, cl
CASE a32_wrap_sse
  mov ebp, 0xFFFFF000
  mov ecx, (DATA_VA + 0x1000 + 0x1000) / 2
  movdqu xmm0, [ebp + ecx * 2]
  paddd xmm0, [ebp + ecx * 2 + 16]
CASE a32_wrap_vex
  mov ebp, 0xFFFFF000
  mov ecx, (DATA_VA + 0x1000 + 0x1000) / 2
  vpblendd xmm5, xmm1, [ebp + ecx * 2 - 0x20], 0x49
  vmovdqu ymm6, [ebp + ecx * 2 + 0x40]
CASE a32_wrap_evex
  mov ebp, 0xFFFFF000
  mov ecx, (DATA_VA + 0x1000 + 0x1000) / 2
  vmovdqu32 zmm7, [ebp + ecx * 2 + 0x80]
  vpaddq zmm8, zmm7, [ebp + ecx * 2]{1to8}
CASE a32_upper_bits_ignored_vex
  mov rbp, 0xFFFFFFFF00000000 | (DATA_VA + 0x1000)
  vmovdqu xmm0, [ebp]
  vpaddd xmm1, xmm0, [ebp + 16]
CASE push_mem_pf_source
  mov rdi, UNMAPPED
  SETFLAGS FLAGS_SET
  push qword [rdi + 8]
CASE push_mem_pf_source_flags_dead_after
  SETFLAGS FLAGS_SET
  mov rdi, UNMAPPED
  push qword [rdi]
  add eax, 1
CASE push_mem_pf_stack_write
  SETFLAGS FLAGS_SET
  lea rsi, [SCRATCH]
  mov rsp, UNMAPPED + 0x100
  push qword [rsi]
CASE push_mem_pf_stack_write_flags_dead_after
  SETFLAGS FLAGS_SET
  lea rsi, [SCRATCH]
  mov rsp, UNMAPPED + 0x100
  push qword [rsi]
  add eax, 1
CASE push_mem_pf_stack_write_readonly
  SETFLAGS FLAGS_SET
  lea rsi, [SCRATCH]
  lea rsp, [rel $ + 8]
  push qword [rsi]
CASE push_mem_pf_source_before_stack
  mov rdi, UNMAPPED
  mov rsp, UNMAPPED + 0x2000
  push qword [rdi]
CASE push_mem_gp_noncanonical_source
  mov rax, 0x8000000000000000
  SETFLAGS FLAGS_SET
  push qword [rax]
; CLFLUSH/CLFLUSHOPT/CLWB fault like a 1-byte read: #PF on an unmapped page (the flags of the
; instruction before it intact), #GP on a non-canonical address.
CASE clflush_unmapped_page
  mov rbx, 0x50000000
  mov eax, 1
  cmp eax, 3
  clflush [rbx + 0x40]
CASE clflushopt_unmapped_page
  mov rbx, 0x50000000
  clflushopt [rbx]
CASE clwb_noncanonical
  mov rbx, 0x8000000000000000
  clwb [rbx]

END_CASES
