; 32-bit code (compatibility mode): PUSHA/POPA, INTO (#OF), BOUND (#BR), SALC, ARPL, XLAT,
; 32-bit addressing (absolute disp32, [EBP+disp], [ESP], SIB), 16-bit addressing through the
; address-size prefix (LEA, and a real access that faults below 64 KiB), string operations
; with ESI/EDI/ECX, CALL/RET/ENTER/LEAVE with a 32-bit stack, JECXZ/LOOP, CMPXCHG8B.
%define CASE_MODE 32
%include "prelude.inc"

%define SCR (DATA_VA + 0x800)

CASE pusha_popa
  mov eax, 1
  mov ecx, 2
  mov edx, 3
  mov ebx, 4
  mov ebp, 5
  mov esi, 6
  mov edi, 7
  pushad
  mov eax, [esp + 28]
  mov ebx, [esp + 12]        ; the ESP value before PUSHAD
  not dword [esp + 4]
  popad
  pushaw
  popaw
CASE into_not_taken
  SETFLAGS FLAGS_CLEAR
  into
  mov eax, 1
CASE into_taken_of
  SETFLAGS FLAGS_SET
  into
  mov eax, 1
CASE bound_inside
  mov dword [SCR], -5
  mov dword [SCR + 4], 100
  mov eax, 50
  bound eax, [SCR]
  mov ebx, 1
CASE bound_outside_br
  mov dword [SCR], -5
  mov dword [SCR + 4], 100
  mov eax, 101
  bound eax, [SCR]
  mov ebx, 1
CASE salc
  SETFLAGS FLAGS_SET
  db 0xD6
  mov ebx, eax
  SETFLAGS FLAGS_CLEAR
  db 0xD6
CASE arpl_forms
  mov eax, 0x1233
  mov ebx, 0x0001
  arpl bx, ax
  setz cl
  mov edx, 0x0003
  arpl dx, ax
  setz ch
  mov word [SCR], 0x0010
  arpl [SCR], ax
CASE xlat32
  mov ebx, SCR
  mov byte [SCR + 0x42], 0x99
  mov eax, 0xFFFFFF42
  xlatb
CASE addressing_32
  mov ebx, SCR
  mov esi, 3
  mov eax, [DATA_VA + 0x810]          ; absolute disp32
  add [ebx + esi * 8 + 4], eax
  mov ebp, SCR + 0x100
  mov ecx, [ebp - 4]
  mov edx, [ebp]                       ; [ebp] needs disp8 0
  mov edi, [esp]
  add [esp + 4], ecx
  lea eax, [ebx + ebx * 4 + 0x12345678]
CASE addressing_16_lea
  mov ebx, 0x12345678
  mov esi, 0x9ABCDEF0
  mov ebp, 0x11112222
  mov edi, 0x33334444
  a16 lea ax, [bx + si + 0x10]
  a16 lea cx, [bp + di - 4]
  a16 lea edx, [bx + 0x7FFF]
  a16 lea si, [di]
CASE addressing_16_access_faults
  mov ebx, 0x1000
  mov esi, 0x0234
  a16 mov eax, [bx + si]
CASE string_ops_32
  mov esi, SCR
  mov edi, SCR + 0x200
  mov ecx, 17
  rep movsb
  mov edi, SCR + 0x300
  mov eax, 0xA5A5A5A5
  mov ecx, 9
  std
  rep stosd
  cld
  mov esi, SCR
  mov edi, SCR + 0x200
  mov ecx, 17
  repe cmpsb
CASE call_ret_enter_leave_32
  call .f
  jmp .done
.f:
  enter 16, 0
  mov dword [ebp - 4], 7
  mov eax, [ebp - 4]
  push eax
  call .g
  pop ecx
  leave
  ret
.g:
  mov edx, [esp + 4]
  ret 4
.done:
CASE enter_nested_32
  lea ebp, [esp - 128]
  enter 8, 3
  mov eax, esp
  mov ebx, ebp
  leave
CASE jecxz_loop_32
  xor eax, eax
  mov ecx, 12
.l:
  add eax, ecx
  loop .l
  jecxz .z
  mov eax, -1
.z:
CASE cmpxchg8b_32
  mov eax, [SCR]
  mov edx, [SCR + 4]
  mov ebx, 0x11111111
  mov ecx, 0x22222222
  lock cmpxchg8b [SCR]
  setz al
CASE push_pop_32
  push dword 0x12345678
  push word 0xABCD
  pop bx
  pop ecx
  push esp
  pop edx
  push dword [SCR]
  pop dword [SCR + 8]
CASE vzeroupper_keeps_ymm8_15
  vmovdqu ymm0, [DATA_VA + 0x1000]
  vzeroupper
CASE vzeroall_keeps_ymm8_15
  vzeroall
CASE maskmovdqu_edi
  movdqu xmm0, [DATA_VA + 0x1000]
  movdqu xmm7, [DATA_VA + 0x1010]
  mov edi, DATA_VA + 0x2003
  maskmovdqu xmm0, xmm7
CASE vex_registers_0_7_only
  vmovdqu ymm1, [DATA_VA + 0x1000]
  vpaddd ymm2, ymm1, [DATA_VA + 0x1020]
  vpxor xmm7, xmm7, xmm1
END_CASES
