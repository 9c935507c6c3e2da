#!/bin/sh
# Default /init of the rove acceptance initramfs (built by scripts/build-initramfs.sh).
#
# Every line it prints starts with "rove-guest: " so tests can pick them out of the console:
#   init started / processors: N / sha256 ... OK|MISMATCH / workload ... / date: ... / done
# then it powers the machine off (poweroff -f: straight to the kernel, ACPI S5).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t devtmpfs devtmpfs /dev 2>/dev/null
# If the kernel found no /dev/console before devtmpfs was mounted, stdio is closed: reopen it.
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

say() { echo "rove-guest: $*"; }

say "init started, kernel $(uname -r), uptime $(cut -d' ' -f1 /proc/uptime) s"
say "processors: $(grep -c '^processor' /proc/cpuinfo)"

mib=$(cat /etc/rove/sha256-mib)
expected=$(cat /etc/rove/sha256-expected)
hash_zeros() { dd if=/dev/zero bs=1048576 count="$mib" 2>/dev/null | sha256sum | cut -d' ' -f1; }

got=$(hash_zeros)
if [ "$got" = "$expected" ]; then
  say "sha256 of $mib MiB of zeros: $got OK"
else
  say "sha256 of $mib MiB of zeros: $got MISMATCH (expected $expected)"
fi

# Two-process workload: two hashing processes at once. The busy ticks each CPU gained while they
# ran show whether both CPUs did work.
busy_ticks() { awk '/^cpu[0-9]/ { print $1, $2 + $3 + $4 }' /proc/stat; }
busy_ticks >/tmp/ticks-before
hash_zeros >/tmp/worker1 &
hash_zeros >/tmp/worker2 &
wait
busy_ticks >/tmp/ticks-after
results=OK
for w in /tmp/worker1 /tmp/worker2; do
  [ "$(cat "$w")" = "$expected" ] || results=MISMATCH
done
ticks=$(awk 'NR == FNR { before[$1] = $2; next } { printf "%s=%d ", $1, $2 - before[$1] }' \
  /tmp/ticks-before /tmp/ticks-after)
say "workload: 2 processes $results, busy ticks ${ticks% }"

say "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "done, uptime $(cut -d' ' -f1 /proc/uptime) s, powering off"
poweroff -f
# Not reached unless power-off failed.
say "poweroff failed"
sleep 5
