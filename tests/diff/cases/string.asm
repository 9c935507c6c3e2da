; String instructions: MOVS STOS LODS CMPS SCAS in byte/word/dword/qword forms, without and with
; REP/REPE/REPNE, DF clear and set, counts 0/1/7/37, early termination of REPE/REPNE, 32-bit
; address size, overlapping copies and long REP STOS/MOVS.
%include "prelude.inc"

%define SRC DATA(0x1000)
%define DST DATA(0x2000)
%define SRC_ABS (DATA_VA + 0x1000)
%define DST_ABS (DATA_VA + 0x2000)
%define AREA 0x400

; STRCASE op(movsb...), prefix(none/rep/repe/repne), df(0/1), count
%macro STRCASE 4
  CASE %1_%2_df%3_n%4
    %if %3
      mov rsi, SRC + AREA - 16
      mov rdi, DST + AREA - 16
    %else
      mov rsi, SRC
      mov rdi, DST
    %endif
    ; Make DST a copy of SRC with one difference at +24/-24 and a byte 0x5A at +40/-40.
    mov rax, [SRC + 24]
    mov [DST + 24], rax
    mov rax, [SRC + AREA - 40]
    mov [DST + AREA - 40], rax
    mov rax, [SRC]
    mov [DST], rax
    mov rax, [SRC + AREA - 16]
    mov [DST + AREA - 16], rax
    not byte [DST + 26]
    not byte [DST + AREA - 42]
    mov byte [DST + 40], 0x5A
    mov byte [DST + AREA - 56], 0x5A
    mov rax, 0x3C3C3C3C3C3C3C5A
    mov rcx, %4
    %if %3
      SETFLAGS 0x402 | FLAGS_SET
    %else
      SETFLAGS FLAGS_CLEAR
    %endif
    %ifidn %2, none
      %1
    %else
      %2 %1
    %endif
%endmacro

%macro STRCOUNTS 3  ; op, prefix, df
  STRCASE %1, %2, %3, 0
  STRCASE %1, %2, %3, 1
  STRCASE %1, %2, %3, 7
  STRCASE %1, %2, %3, 37
%endmacro

%macro STROP 2  ; op, prefixes: 0 = rep, 1 = repe/repne
  STRCASE %1, none, 0, 1
  STRCASE %1, none, 1, 1
  %if %2 == 0
    STRCOUNTS %1, rep, 0
    STRCOUNTS %1, rep, 1
  %else
    STRCOUNTS %1, repe, 0
    STRCOUNTS %1, repe, 1
    STRCOUNTS %1, repne, 0
    STRCOUNTS %1, repne, 1
  %endif
%endmacro

STROP movsb, 0
STROP movsw, 0
STROP movsd, 0
STROP movsq, 0
STROP stosb, 0
STROP stosw, 0
STROP stosd, 0
STROP stosq, 0
STROP lodsb, 0
STROP lodsw, 0
STROP lodsd, 0
STROP lodsq, 0
STROP cmpsb, 1
STROP cmpsw, 1
STROP cmpsd, 1
STROP cmpsq, 1
STROP scasb, 1
STROP scasw, 1
STROP scasd, 1
STROP scasq, 1

CASE repe_cmpsb_finds_difference
  mov rsi, SRC
  mov rdi, DST
  mov ecx, 64
  rep movsb
  not byte [DST + 20]
  mov rsi, SRC
  mov rdi, DST
  mov ecx, 40
  repe cmpsb
CASE repne_scasb_finds_byte
  mov rdi, DST
  mov al, 0x77
  mov ecx, 256
  rep stosb
  mov byte [DST + 99], 0x11
  mov rdi, DST
  mov al, 0x11
  mov ecx, 256
  repne scasb
CASE repe_scasd_runs_out
  mov rdi, DST
  mov eax, 0xDEADBEEF
  mov ecx, 16
  rep stosd
  mov rdi, DST
  mov ecx, 16
  repe scasd
CASE a32_rep_movsb
  mov rsi, 0xFFFFFFFF00000000 | SRC_ABS
  mov rdi, 0xFFFFFFFF00000000 | DST_ABS
  mov rcx, 0xFFFFFFFF00000010
  a32 rep movsb
CASE a32_rep_stosd_df
  std
  mov edi, DST_ABS + 0x100
  mov rcx, 0x1234567800000009
  mov eax, 0x01020304
  a32 rep stosd
  cld
CASE overlap_forward_fill
  mov rsi, DST
  mov rdi, DST + 1
  mov byte [DST], 0xAB
  mov ecx, 200
  rep movsb
CASE overlap_backward
  std
  mov rsi, DST + 300
  mov rdi, DST + 307
  mov ecx, 300
  rep movsb
  cld
CASE long_rep_stosq
  mov rdi, DST
  mov rax, 0x0102030405060708
  mov ecx, 250
  rep stosq
CASE long_rep_movsq
  mov rsi, SRC
  mov rdi, DST
  mov ecx, 250
  rep movsq
CASE long_rep_movsb_unaligned
  mov rsi, SRC + 3
  mov rdi, DST + 5
  mov ecx, 1999
  rep movsb
CASE rep_lodsq_last_value
  mov rsi, SRC
  mov ecx, 33
  rep lodsq
CASE rep_prefix_on_nonstring
  mov ecx, 3
  rep nop
END_CASES
