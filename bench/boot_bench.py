#!/usr/bin/env python3
"""Boot-time benchmark: the stock Debian kernel + the test initramfs, power-on to /init and to
power-off, under rove (BT) and QEMU TCG, same kernel, initramfs, command line, memory and vCPUs.

Wall time is measured outside the guest from process start to the console line
"Run /init as init process" and to process exit; the guest's own uptime at /init (printed by the
initramfs) is reported beside it. Writes a markdown and a JSON file to bench/results/.

Usage: bench/boot_bench.py --rove build/release/rove [--runs 3] [--cpus 1]
"""
import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_and_time(cmd, timeout):
    """Runs cmd, returns (seconds to the /init line, seconds to exit, guest uptime at init, rc)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    t_init = None
    uptime = None
    for raw in proc.stdout:
        line = raw.decode(errors="replace")
        if t_init is None and "Run /init as init process" in line:
            t_init = time.monotonic() - start
        m = re.search(r"rove-guest: init started, .* uptime ([0-9.]+) s", line)
        if m:
            uptime = float(m.group(1))
        if time.monotonic() - start > timeout:
            proc.kill()
            break
    rc = proc.wait()
    return t_init, time.monotonic() - start, uptime, rc


def summarize(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": len(values)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rove", default=os.path.join(REPO, "build/release/rove"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--mem", type=int, default=512)
    ap.add_argument("--timeout", type=int, default=600)
    args = ap.parse_args()

    subprocess.run(["bash", os.path.join(REPO, "scripts/fetch-guest.sh")], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["bash", os.path.join(REPO, "scripts/build-initramfs.sh")], check=True,
                   stdout=subprocess.DEVNULL)
    if not shutil.which("qemu-system-x86_64"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "qemu-system-x86"], check=True,
                       stdout=subprocess.DEVNULL)
    guest = os.path.join(REPO, "build/guest")
    kernel = os.path.join(guest, "vmlinuz")
    initrd = os.path.join(guest, "initramfs.cpio.gz")
    append = "console=ttyS0 panic=-1"

    peers = {
        "rove-bt": [args.rove, "run", "--kernel", kernel, "--initrd", initrd, "--append", append,
                    "--mem", str(args.mem), "--cpus", str(args.cpus)],
        "qemu-tcg": ["qemu-system-x86_64", "-accel", "tcg", "-m", str(args.mem), "-smp",
                     str(args.cpus), "-kernel", kernel, "-initrd", initrd, "-append", append,
                     "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"],
    }
    results = {}
    for name, cmd in peers.items():
        runs = [run_and_time(cmd, args.timeout) for _ in range(args.runs)]
        results[name] = {
            "to_init_s": summarize([r[0] for r in runs]),
            "to_poweroff_s": summarize([r[1] for r in runs if r[3] == 0]),
            "guest_uptime_at_init_s": summarize([r[2] for r in runs]),
            "exit_codes": [r[3] for r in runs],
        }
        print(name, json.dumps(results[name]), flush=True)

    def ratio(key):
        a = results["rove-bt"][key]
        b = results["qemu-tcg"][key]
        return a["median"] / b["median"] if a and b else None

    stamp = time.strftime("%Y-%m-%d-%H%M%S")
    host = platform.node()
    os.makedirs(os.path.join(REPO, "bench/results"), exist_ok=True)
    base = os.path.join(REPO, f"bench/results/boot-{stamp}-{host}")
    doc = {"date": stamp, "host": host, "cpus": args.cpus, "mem_mib": args.mem,
           "cmdline": append, "results": results,
           "ratio_rove_over_qemu": {"to_init": ratio("to_init_s"),
                                    "to_poweroff": ratio("to_poweroff_s")}}
    with open(base + ".json", "w") as f:
        json.dump(doc, f, indent=2)
    with open(base + ".md", "w") as f:
        f.write(f"# Boot benchmark {stamp} on {host}\n\n")
        f.write(f"Debian 12 kernel + busybox initramfs, {args.cpus} vCPU, {args.mem} MiB, "
                f"`{append}`; wall time from process start, median of {args.runs} (min-max).\n\n")
        f.write("| peer | to /init (s) | to power-off (s) | guest uptime at /init (s) |\n")
        f.write("| --- | --- | --- | --- |\n")
        for name, r in results.items():
            def fmt(s):
                return f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})" if s else "n/a"
            f.write(f"| {name} | {fmt(r['to_init_s'])} | {fmt(r['to_poweroff_s'])} | "
                    f"{fmt(r['guest_uptime_at_init_s'])} |\n")
        ri = doc["ratio_rove_over_qemu"]
        f.write(f"\nrove / QEMU TCG: to /init {ri['to_init']:.2f}x, to power-off "
                f"{ri['to_poweroff']:.2f}x (goal: below 1.0)\n" if ri["to_init"] and
                ri["to_poweroff"] else "\nratio: n/a\n")
    print("wrote", base + ".md", "and", base + ".json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
