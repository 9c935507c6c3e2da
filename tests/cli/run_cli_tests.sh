#!/usr/bin/env bash
# End-to-end tests of the rove command line: boot the demo guest, exit statuses, bad input.
set -uo pipefail
ROVE=$1
SRC=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
pass=0
fail=0
check() {  # name, condition result
  if [ "$2" = 0 ]; then pass=$((pass + 1)); echo "ok: $1"; else fail=$((fail + 1)); echo "FAIL: $1"; fi
}

nasm -w-zeroing -f bin -o "$WORK/hello.bin" "$SRC/scripts/demo/hello_multiboot.asm"
out=$("$ROVE" run --kernel "$WORK/hello.bin" 2>"$WORK/err"); rc=$?
check "demo boots and halts with status 0" $([ $rc = 0 ] && echo 0 || echo 1)
check "demo prints from protected mode" $(grep -q "32-bit protected mode" <<<"$out"; echo $?)
check "demo prints its long-mode checksum" $(grep -qE "checksum = 0x[0-9a-f]{16}" <<<"$out"; echo $?)

# A multiboot kernel that writes 5 to the debug-exit port: status (5<<1)|1 = 11.
cat > "$WORK/exit.asm" <<'ASM'
bits 32
org 0x100000
h: dd 0x1BADB002, 0x00010000, -(0x1BADB002 + 0x00010000), h, h, e, e, s
s: mov al, 5
   out 0xF4, al
   hlt
e:
ASM
nasm -f bin -o "$WORK/exit.bin" "$WORK/exit.asm"
"$ROVE" run --kernel "$WORK/exit.bin" >/dev/null 2>&1; rc=$?
check "debug-exit value 5 gives status 11" $([ $rc = 11 ] && echo 0 || echo 1)

# A triple fault: load an empty IDT and divide by zero.
cat > "$WORK/triple.asm" <<'ASM'
bits 32
org 0x100000
h: dd 0x1BADB002, 0x00010000, -(0x1BADB002 + 0x00010000), h, h, e, e, s
s: lidt [idt]
   xor ecx, ecx
   div ecx
   hlt
idt: dw 0
     dd 0
e:
ASM
nasm -f bin -o "$WORK/triple.bin" "$WORK/triple.asm"
"$ROVE" run --kernel "$WORK/triple.bin" >/dev/null 2>"$WORK/err"; rc=$?
check "triple fault gives status 3" $([ $rc = 3 ] && echo 0 || echo 1)
check "triple fault is reported" $(grep -qi "triple fault" "$WORK/err"; echo $?)

# RFLAGS.TF: a #DB trap after each instruction while TF is set (6 traps, see the comments).
cat > "$WORK/trap.asm" <<'ASM'
bits 32
org 0x100000
h: dd 0x1BADB002, 0x00010000, -(0x1BADB002 + 0x00010000), h, h, e, e, s
s: mov esp, 0x90000
   mov ax, cs
   mov [gate + 2], ax
   mov eax, handler
   mov [gate], ax
   shr eax, 16
   mov [gate + 6], ax
   lidt [idtr]
   xor ebx, ebx
   pushf
   or dword [esp], 0x100
   popf                        ; TF was clear at its start: no trap
   nop                         ; 1
   nop                         ; 2
   nop                         ; 3
   pushf                       ; 4
   and dword [esp], ~0x100     ; 5
   popf                        ; 6 (TF was set at its start)
   mov eax, ebx
   out 0xF4, al
   hlt
handler:
   inc ebx
   iret
align 8
idt: dq 0
gate: dw 0, 0
      db 0, 0x8E
      dw 0
idtr: dw 15
      dd idt
e:
ASM
nasm -f bin -o "$WORK/trap.bin" "$WORK/trap.asm"
"$ROVE" run --kernel "$WORK/trap.bin" >/dev/null 2>&1; rc=$?
check "TF single-step traps after each instruction (6 traps: status 13)" $([ $rc = 13 ] && echo 0 || echo "1 (status $rc)")

"$ROVE" run --kernel "$WORK/does-not-exist" >/dev/null 2>"$WORK/err"; rc=$?
check "missing kernel gives status 2" $([ $rc = 2 ] && echo 0 || echo 1)
check "missing kernel names the file" $(grep -q "does-not-exist" "$WORK/err"; echo $?)

head -c 4096 /dev/urandom > "$WORK/garbage.bin"
"$ROVE" run --kernel "$WORK/garbage.bin" >/dev/null 2>"$WORK/err"; rc=$?
check "unrecognised kernel gives status 2" $([ $rc = 2 ] && echo 0 || echo 1)

"$ROVE" run --kernel "$WORK/hello.bin" --no-such-flag >/dev/null 2>&1; rc=$?
check "bad flag is refused" $([ $rc != 0 ] && echo 0 || echo 1)
"$ROVE" run --kernel "$WORK/hello.bin" --accel tcg >/dev/null 2>&1; rc=$?
check "unknown accelerator is refused" $([ $rc != 0 ] && echo 0 || echo 1)

# Accelerators. ROVE_KVM_DEVICE points rove at another device path (a missing one, a non-KVM one).
ROVE_KVM_DEVICE=$WORK/no-kvm "$ROVE" run --kernel "$WORK/hello.bin" --accel kvm >/dev/null 2>"$WORK/err"; rc=$?
check "--accel kvm without KVM exits with status 2" $([ $rc = 2 ] && echo 0 || echo 1)
check "--accel kvm without KVM says the device does not exist" $(grep -q "no-kvm does not exist" "$WORK/err"; echo $?)
ROVE_KVM_DEVICE=/dev/null "$ROVE" run --kernel "$WORK/hello.bin" --accel kvm >/dev/null 2>"$WORK/err"; rc=$?
check "--accel kvm on a non-KVM device exits with status 2" $([ $rc = 2 ] && echo 0 || echo 1)
check "--accel kvm on a non-KVM device says so" $(grep -q "/dev/null is not a KVM device" "$WORK/err"; echo $?)
out=$(ROVE_KVM_DEVICE=$WORK/no-kvm "$ROVE" run --kernel "$WORK/hello.bin" --accel auto 2>"$WORK/err"); rc=$?
check "--accel auto without KVM falls back to bt and boots" $([ $rc = 0 ] && grep -qE "checksum = 0x" <<<"$out" && echo 0 || echo 1)
check "--accel auto without KVM prints one accel: line naming bt and the reason" \
  $([ "$(grep -c '^accel:' "$WORK/err")" = 1 ] && grep -q "^accel: bt (kvm unusable: .*no-kvm does not exist" "$WORK/err" && echo 0 || echo 1)
out=$("$ROVE" run --kernel "$WORK/hello.bin" --accel auto 2>"$WORK/err"); rc=$?
sed -n 's/^accel:/  (this host) accel:/p' "$WORK/err"
check "--accel auto boots the demo" $([ $rc = 0 ] && grep -qE "checksum = 0x" <<<"$out" && echo 0 || echo 1)
check "--accel auto prints exactly one accel: line with its choice and figures" \
  $([ "$(grep -c '^accel:' "$WORK/err")" = 1 ] && grep -qE "^accel: (bt|kvm) \((calibration: bt [0-9.]+ ns/iter, kvm [0-9.]+ ns/iter|kvm unusable: .+)\)$" "$WORK/err" && echo 0 || echo 1)

echo "$pass passed, $fail failed"
[ $fail = 0 ]
