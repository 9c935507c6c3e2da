#!/bin/sh
# /init of the benchmark initramfs (bench/run_bench.py adds /bin/workloads and
# /etc/rovebench/plan.sh to the busybox initramfs of scripts/build-initramfs.sh).
#
# Prints, for the harness that reads the console:
#   ROVEBENCH-INIT uptime <s> clocksource <name> cpus <n>
#   ROVEBENCH-NOW <guest CLOCK_MONOTONIC ns>      before and after the plan (clock check)
#   ROVEBENCH case=...                            one line per case and repetition
#   ROVEBENCH-END uptime <s>
# then powers the machine off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t devtmpfs devtmpfs /dev 2>/dev/null
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null)
echo "ROVEBENCH-INIT uptime $(cut -d' ' -f1 /proc/uptime) clocksource ${clocksource:-unknown} cpus $(grep -c '^processor' /proc/cpuinfo)"

/bin/workloads now
. /etc/rovebench/plan.sh
/bin/workloads now
echo "ROVEBENCH-END uptime $(cut -d' ' -f1 /proc/uptime)"
poweroff -f
echo "ROVEBENCH-POWEROFF-FAILED"
sleep 5
