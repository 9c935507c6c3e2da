; BT/BTS/BTR/BTC with a register bit offset in 32-bit code: the offset is signed, the unit
; address is EA + (offset SAR 5 or 4) * 4 or 2, wrapped to the address size.
%define CASE_MODE 32
%include "prelude.inc"

%define BITS32_AT (DATA_VA + 0x1800)

CASE bit_offset32_other_pages
  mov edx, BITS32_AT
  mov ecx, 0x1234 * 8 + 5
  bts dword [edx], ecx
  mov ecx, -0x1500 * 8 - 3
  btc dword [edx], ecx
  mov ecx, 0x800 * 8 + 9
  btr word [edx + 2], cx
  bt dword [edx], ecx
  setc al
  mov ecx, 0x701 * 8
  lock bts dword [edx], ecx

CASE bit_offset32_beyond_region
  mov edx, BITS32_AT
  mov ecx, 0x100000 * 8
  bts dword [edx], ecx

END_CASES
