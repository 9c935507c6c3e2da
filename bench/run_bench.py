#!/usr/bin/env python3
"""End-to-end benchmark: the same guest workloads natively, under rove (--accel bt), under QEMU
TCG and, where /dev/kvm is usable, under rove --accel kvm and QEMU -accel kvm; plus the Google
Benchmark micro benchmarks. Writes bench/results/<date>-<host>.md and .json.

Every engine boots the same kernel, initramfs, command line, memory and vCPU count. One boot per
engine and configuration runs every case of that configuration REPS times:
  config "1cpu" (1 vCPU): int, fp, sha256, gzip, syscall, pagefault, fork, forkexec, pipe, loop
  config "2cpu" (2 vCPUs): int and int_x2 (the integer kernel in two processes at once)
Natively the same binary runs the same commands on the host.

Timing: each case times itself inside the guest with clock_gettime(CLOCK_MONOTONIC); the guest's
clocksource is recorded. The harness checks the guest's elapsed time over the whole plan against
its own wall clock (time between the two ROVEBENCH-NOW console lines). Boot figures: wall time
from process start to the kernel's "Run /init" line and to process exit (minus the time the plan
took, so the figure is boot + power-off only), and the guest's uptime at /init.

Accelerator columns: before booting Linux on an accelerator, a calibration guest
(bench/guest/calibrate.asm: a dec/jnz loop, no BIOS work beyond loading it) is timed with a hard
timeout; if an iteration costs over CALIBRATION_LIMIT x native, the column says "too slow" with
the measured figure instead of running the workloads.

Usage: bench/run_bench.py --rove build/bench/rove [--rove-bench build/bench/bench/rove_bench]
       [--reps 3] [--engines native,rove-bt,qemu-tcg,rove-kvm,qemu-kvm] [--smoke] [--out-dir D]
"""
import argparse
import gzip
import io
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
CMDLINE = "console=ttyS0 panic=-1 quiet"
CALIBRATION_LIMIT = 50  # an accelerator this many times slower than native per loop iteration
                        # cannot run the plan in the time budget

# Cases of each configuration: (case name as printed, workloads arguments). BUSYBOX and BUF are
# replaced by the guest's or the host's paths.
FULL_PLAN = {
    "1cpu": {
        "cpus": 1,
        "setup": [["genfile", "BUF", "2"]],
        "cases": [
            ("int", ["int", "2048"]),
            ("fp", ["fp", "128", "2"]),
            ("sha256", ["time", "sha256", "BUSYBOX", "sha256sum", "BUF"]),
            ("gzip", ["time", "gzip", "BUSYBOX", "gzip", "-c", "BUF"]),
            ("syscall", ["syscall", "30000"]),
            ("pagefault", ["pagefault", "8", "1"]),
            ("fork", ["fork", "20"]),
            ("forkexec", ["forkexec", "15"]),
            ("pipe", ["pipe", "300"]),
            ("loop", ["loop", "100000000"]),
        ],
    },
    "2cpu": {
        "cpus": 2,
        "setup": [],
        "cases": [
            ("int", ["int", "2048"]),
            ("int_x2", ["int_par", "2048", "2"]),
        ],
    },
}
SMOKE_PLAN = {
    "1cpu": {
        "cpus": 1,
        "setup": [],
        "cases": [("int", ["int", "64"]), ("syscall", ["syscall", "1000"])],
    },
}

# What each case measures, for the tables.
CASE_INFO = {
    "int": ("CPU", "integer kernel: FNV hash + LZ77 compression + quicksort over 2 MiB, "
                   "memory touched before timing (ms)"),
    "fp": ("CPU", "floating point/SIMD: 128x128 double matmul + float vector loop (ms)"),
    "sha256": ("CPU", "busybox sha256sum of a 2 MiB file, whole command (ms)"),
    "gzip": ("CPU", "busybox gzip -c of the same file, whole command (ms)"),
    "loop": ("CPU", "dec/jnz loop (ns per iteration)"),
    "syscall": ("syscall", "getppid via syscall() (ns per call)"),
    "pagefault": ("mm", "first touch of fresh anonymous 4 KiB pages (us per fault)"),
    "fork": ("mm", "fork + child _exit + waitpid (us per op)"),
    "forkexec": ("mm", "fork + exec of a static binary + waitpid (us per op)"),
    "pipe": ("switch", "1-byte pipe ping-pong between two processes (us per round trip)"),
    "int_x2": ("CPU", "integer kernel in 2 processes at once, 2 vCPUs (ms until both finish)"),
}

# Targets of issue 4: ratio of rove-bt against native / QEMU TCG, by case group.
TARGETS = {
    "CPU": {"native": 1.3, "qemu-tcg": 0.6},
    "syscall": {"native": 3.0},
    "mm": {"native": 3.0},
}


def log(*args):
    print("[bench]", *args, flush=True)


def summarize(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    med = statistics.median(values)
    return {"median": med, "min": min(values), "max": max(values), "n": len(values),
            "spread_pct": (max(values) - min(values)) / med * 100 if med else 0.0,
            "values": values}


# ---- building the guest side ---------------------------------------------------------------------

def build_workloads(work):
    out = os.path.join(work, "workloads")
    src = os.path.join(REPO, "bench/guest/workloads.c")
    subprocess.run(["gcc", "-static", "-O2", "-o", out, src], check=True)
    return out


def newc_cpio(files):
    """A newc cpio archive of (path, mode, data) entries; directories have data None."""
    buf = io.BytesIO()
    ino = 0x9000
    for name, mode, data in files + [("TRAILER!!!", 0, b"")]:
        ino += 1
        data = data or b""
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08X}" for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        buf.write(hdr.encode() + nb)
        buf.write(b"\0" * ((4 - (110 + len(nb)) % 4) % 4))
        buf.write(data)
        buf.write(b"\0" * ((4 - len(data) % 4) % 4))
    return buf.getvalue()


def plan_script(config, reps):
    """The shell lines /init sources: setup, then every case `reps` times."""
    def guest_args(args):
        return " ".join({"BUSYBOX": "/bin/busybox", "BUF": "/tmp/buf"}.get(a, a) for a in args)
    lines = [f"/bin/workloads {guest_args(s)}" for s in config["setup"]]
    lines.append(f"for rep in $(seq 1 {reps}); do")
    lines.append('  echo "ROVEBENCH-REP $rep"')
    for _, args in config["cases"]:
        lines.append(f"  /bin/workloads {guest_args(args)}")
    lines.append("done")
    return "\n".join(lines) + "\n"


def build_initramfs(work, base, workloads, config_name, config, reps):
    """The busybox initramfs with bench-init.sh as /init, plus a second archive with the
    workloads binary and this configuration's plan (the kernel unpacks both, in order)."""
    with open(workloads, "rb") as f:
        wl = f.read()
    extra = newc_cpio([
        ("bin/workloads", 0o100755, wl),
        ("etc/rovebench", 0o040755, None),
        ("etc/rovebench/plan.sh", 0o100644, plan_script(config, reps).encode()),
    ])
    out = os.path.join(work, f"initramfs-{config_name}.cpio.gz")
    with open(base, "rb") as f:
        data = f.read()
    with open(out, "wb") as f:
        f.write(data)
        f.write(gzip.compress(extra, mtime=0))
    return out


# ---- running --------------------------------------------------------------------------------------

CASE_RE = re.compile(r"ROVEBENCH case=(\S+) value=([0-9.eE+-]+) unit=(\S+) elapsed_ns=(\d+) "
                     r"ops=(\d+) check=([0-9a-f]+)")


def parse_cases(lines):
    """[(case, value, unit, elapsed_ns, check)] from ROVEBENCH lines."""
    out = []
    for line in lines:
        m = CASE_RE.search(line)
        if m:
            out.append((m.group(1), float(m.group(2)), m.group(3), int(m.group(4)), m.group(6)))
    return out


def run_native(workloads, busybox, work, config, reps):
    def host_args(args):
        return [{"BUSYBOX": busybox, "BUF": os.path.join(work, "buf")}.get(a, a) for a in args]
    for s in config["setup"]:
        subprocess.run([workloads] + host_args(s), check=True)
    lines = []
    t0 = time.monotonic()
    for _ in range(reps):
        for _, args in config["cases"]:
            r = subprocess.run([workloads] + host_args(args), capture_output=True, text=True)
            lines += r.stdout.splitlines()
            if r.returncode != 0:
                log("native case failed:", args, r.stderr.strip())
    wall = time.monotonic() - t0
    cases = parse_cases(lines)
    guest_ns = sum(c[3] for c in cases)
    return {"cases": cases, "clock": {"timed_s": guest_ns / 1e9, "wall_s": wall}}


def run_console(cmd, timeout, log_path):
    """Runs a VM, timestamping console lines; returns (lines [(t, text)], seconds to exit, rc)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    lines = []
    killed = False
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    pending = b""
    while True:
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            proc.kill()
            killed = True
            break
        if not sel.select(timeout=min(left, 1.0)):
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        now = time.monotonic() - start
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            lines.append((now, raw.decode(errors="replace").rstrip("\r")))
    rc = proc.wait()
    if pending:
        lines.append((time.monotonic() - start, pending.decode(errors="replace")))
    t_exit = time.monotonic() - start
    with open(log_path, "w") as f:
        for t, text in lines:
            f.write(f"[{t:9.3f}] {text}\n")
        if killed:
            f.write(f"[harness] killed after {timeout} s\n")
    return lines, t_exit, (None if killed else rc)


def vm_command(engine, rove, kernel, initrd, mem, cpus):
    if engine.startswith("rove-"):
        return [rove, "run", "--kernel", kernel, "--initrd", initrd, "--append", CMDLINE,
                "--mem", str(mem), "--cpus", str(cpus), "--accel", engine[len("rove-"):],
                "--stats"]
    accel = engine[len("qemu-"):]
    return ["qemu-system-x86_64", "-accel", accel, "-m", str(mem), "-smp", str(cpus),
            "-kernel", kernel, "-initrd", initrd, "-append", CMDLINE, "-nographic",
            "-no-reboot", "-nodefaults", "-serial", "stdio"]


def run_vm(engine, rove, kernel, initrd, mem, cpus, timeout, log_path):
    lines, t_exit, rc = run_console(vm_command(engine, rove, kernel, initrd, mem, cpus), timeout,
                                    log_path)
    res = {"rc": rc, "wall_exit_s": t_exit}
    now_lines = []
    for t, text in lines:
        # With `quiet` the kernel does not print "Run /init"; the first line of /init is the
        # mark then (a few mounts later).
        if "to_init_s" not in res and ("Run /init as init process" in text or
                                       "ROVEBENCH-INIT" in text):
            res["to_init_s"] = t
        m = re.search(r"ROVEBENCH-INIT uptime ([0-9.]+) clocksource (\S+) cpus (\d+)", text)
        if m:
            res["uptime_at_init_s"] = float(m.group(1))
            res["clocksource"] = m.group(2)
            res["guest_cpus"] = int(m.group(3))
        m = re.search(r"ROVEBENCH-NOW (\d+)", text)
        if m:
            now_lines.append((t, int(m.group(1))))
    res["cases"] = parse_cases(text for _, text in lines)
    if len(now_lines) >= 2:
        (t0, g0), (t1, g1) = now_lines[0], now_lines[-1]
        res["clock"] = {"guest_s": (g1 - g0) / 1e9, "wall_s": t1 - t0,
                        "timed_s": sum(c[3] for c in res["cases"]) / 1e9}
        if rc is not None:
            # Boot + power-off without the plan: what a guest with an empty /init would take.
            res["to_poweroff_s"] = t_exit - (t1 - t0)
    if engine.startswith("rove-"):
        res["stats"] = [text for _, text in lines if text.startswith(("rove:", "stats:"))]
    return res


# ---- accelerator calibration ----------------------------------------------------------------------

def calibration_binary(work, outer):
    out = os.path.join(work, f"calibrate-{outer}.bin")
    if not os.path.exists(out):
        subprocess.run(["nasm", "-f", "bin", f"-DOUTER={outer}", "-o", out,
                        os.path.join(REPO, "bench/guest/calibrate.asm")], check=True)
    return out


def time_calibration(engine, rove, binary, timeout):
    if engine.startswith("rove-"):
        cmd = [rove, "run", "--kernel", binary, "--mem", "64", "--accel", engine[len("rove-"):]]
    else:
        cmd = ["qemu-system-x86_64", "-accel", engine[len("qemu-"):], "-m", "64", "-kernel", binary,
               "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-display", "none",
               "-serial", "none", "-nodefaults", "-no-reboot"]
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timeout"
    if r.returncode != 1:  # the debug-exit status for the value 0
        return None, f"exit status {r.returncode}: {r.stderr.decode(errors='replace')[-200:]}"
    return time.monotonic() - t0, None


def calibrate(engine, rove, work, timeout):
    """ns per loop iteration from two runs of the calibration guest (1M and 3M+ iterations)."""
    small = calibration_binary(work, 1)
    t_small, err = time_calibration(engine, rove, small, timeout)
    if t_small is None:
        return {"error": f"1M-iteration guest: {err} (hard timeout {timeout} s)"}
    outer = 3
    while True:
        t_big, err = time_calibration(engine, rove, calibration_binary(work, outer), timeout)
        if t_big is None:
            return {"error": f"{outer}M-iteration guest: {err}", "startup_s": t_small}
        if t_big - t_small >= 0.5 or outer >= 3000:
            break
        outer *= 10
    return {"ns_per_iter": (t_big - t_small) * 1e9 / ((outer - 1) * 1e6), "startup_s": t_small,
            "iterations": outer * 1000000}


def source_commit():
    """The commit measured: git's HEAD, or ROVE_COMMIT for a tree exported without .git."""
    r = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                       text=True)
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True)
    if r.returncode == 0:
        return r.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    return os.environ.get("ROVE_COMMIT", "unknown")


def kvm_usable():
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
        return True
    except OSError as e:
        return str(e)


def rove_has_accel(rove, accel):
    r = subprocess.run([rove, "run", "--help"], capture_output=True, text=True)
    text = r.stdout + r.stderr
    m = re.search(r"--accel[^\n]*(\n\s+[^-\n][^\n]*)*", text)
    return bool(m and accel in m.group(0))


# ---- micro benchmarks -----------------------------------------------------------------------------

def run_micro(binary, work, smoke):
    out = os.path.join(work, "micro.json")
    cmd = [binary, f"--benchmark_out={out}", "--benchmark_out_format=json",
           "--benchmark_min_time=0.05" if not smoke else "--benchmark_min_time=0.01"]
    if smoke:
        cmd.append("--benchmark_filter=BM_ChainedBranch|BM_Cpuid")
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        log("micro benchmarks failed:", r.stderr[-500:])
        return None
    with open(out) as f:
        doc = json.load(f)
    rows = []
    for b in doc.get("benchmarks", []):
        if b.get("error_occurred"):
            rows.append({"name": b["name"], "error": b.get("error_message", "error")})
            continue
        counters = {k: v for k, v in b.items() if isinstance(v, (int, float)) and k not in (
            "real_time", "cpu_time", "iterations", "repetitions", "repetition_index", "threads",
            "family_index", "per_family_instance_index")}
        rows.append({"name": b["name"], "real_time": b["real_time"], "cpu_time": b["cpu_time"],
                     "time_unit": b.get("time_unit", "ns"), "counters": counters})
    return {"context": {k: doc.get("context", {}).get(k) for k in (
        "num_cpus", "mhz_per_cpu", "load_avg", "library_build_type")}, "rows": rows}


# ---- report ---------------------------------------------------------------------------------------

def fmt_num(v):
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_cell(s):
    if not s:
        return "n/a"
    return f"{fmt_num(s['median'])} ({fmt_num(s['min'])}-{fmt_num(s['max'])})"


def build_report(doc):
    engines = doc["engines"]
    md = [f"# rove benchmark {doc['date']} on {doc['host']}", ""]
    md.append(f"Commit {doc.get('commit', 'unknown')}. {doc['machine']}; load average at start {doc['load_start']}, at end "
              f"{doc['load_end']}. Kernel `{doc['kernel']}`, command line `{CMDLINE}`, "
              f"{doc['mem_mib']} MiB. Each cell: median (min-max) of {doc['reps']} runs inside one "
              f"boot; guest timing by clock_gettime(CLOCK_MONOTONIC), clocksource per engine "
              f"below. Smaller is better everywhere. Total harness time: "
              f"{doc.get('total_s', 0):.0f} s.")
    md.append("")
    md.append("## Workloads")
    md.append("")
    head = ("| case | config | " + " | ".join(engines) +
            " | rove/native | rove/QEMU TCG | TCG/native | target |")
    md.append(head)
    md.append("|" + " --- |" * (len(engines) + 6))
    for row in doc["table"]:
        cells = []
        for e in engines:
            col = row["engines"].get(e)
            cells.append(col if isinstance(col, str) else fmt_cell(col))
        r_nat = row.get("rove_over_native")
        r_tcg = row.get("rove_over_qemu_tcg")
        t_nat = row.get("qemu_tcg_over_native")
        md.append(f"| {row['case']} ({row['unit']}) | {row['config']} | " + " | ".join(cells) +
                  f" | {fmt_num(r_nat) + 'x' if r_nat else 'n/a'}"
                  f" | {fmt_num(r_tcg) + 'x' if r_tcg else 'n/a'}"
                  f" | {fmt_num(t_nat) + 'x' if t_nat else 'n/a'} | {row.get('target', '')} |")
    md.append("")
    for name, (_, text) in CASE_INFO.items():
        if any(r["case"] == name for r in doc["table"]):
            md.append(f"- **{name}**: {text}")
    md.append("")
    md.append("## Boot")
    md.append("")
    md.append("| engine | config | to /init, wall (s) | boot + power-off without the plan, wall (s) "
              "| guest uptime at /init (s) | clocksource | guest CPUs | exit |")
    md.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for b in doc["boot"]:
        md.append(f"| {b['engine']} | {b['config']} | {fmt_num(b.get('to_init_s'))} | "
                  f"{fmt_num(b.get('to_poweroff_s'))} | {fmt_num(b.get('uptime_at_init_s'))} | "
                  f"{b.get('clocksource', 'n/a')} | {b.get('guest_cpus', 'n/a')} | "
                  f"{b.get('rc', 'killed')} |")
    md.append("")
    md.append("## Guest clock against the wall clock")
    md.append("")
    md.append("| engine | config | guest elapsed over the plan (s) | host wall over the same span (s) "
              "| guest/wall | sum of timed spans (s) |")
    md.append("| --- | --- | --- | --- | --- | --- |")
    for c in doc["clock_check"]:
        ratio = c["guest_s"] / c["wall_s"] if c.get("guest_s") and c.get("wall_s") else None
        md.append(f"| {c['engine']} | {c['config']} | {fmt_num(c.get('guest_s'))} | "
                  f"{fmt_num(c.get('wall_s'))} | {fmt_num(ratio)} | {fmt_num(c.get('timed_s'))} |")
    md.append("")
    md.append("## Accelerator calibration (dec/jnz loop guest, no Linux)")
    md.append("")
    md.append("| engine | ns per iteration | startup (s) | note |")
    md.append("| --- | --- | --- | --- |")
    for e, c in doc["calibration"].items():
        md.append(f"| {e} | {fmt_num(c.get('ns_per_iter'))} | {fmt_num(c.get('startup_s'))} | "
                  f"{c.get('note', c.get('error', ''))} |")
    md.append("")
    if doc.get("micro"):
        md.append("## Micro benchmarks (Google Benchmark, bench/rove_bench)")
        md.append("")
        md.append("| benchmark | time | counters |")
        md.append("| --- | --- | --- |")
        for r in doc["micro"]["rows"]:
            if "error" in r:
                md.append(f"| {r['name']} | error | {r['error']} |")
                continue
            counters = ", ".join(f"{k}={fmt_num(v)}" for k, v in sorted(r["counters"].items()))
            md.append(f"| {r['name']} | {fmt_num(r['real_time'])} {r['time_unit']} | {counters} |")
        md.append("")
    if doc.get("rove_stats"):
        md.append("## rove --stats (profile of each boot: emulator exits by instruction)")
        md.append("")
        for run, stats in doc["rove_stats"].items():
            md.append(f"- {run}:")
            for line in stats:
                md.append(f"  - `{line}`")
        md.append("")
    if doc.get("targets"):
        md.append("## Targets (issue 4)")
        md.append("")
        for t in doc["targets"]:
            md.append(f"- {t}")
        md.append("")
    return "\n".join(md)


def update_doc(path, report, source):
    with open(path) as f:
        text = f.read()
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    if begin not in text or end not in text:
        log(f"{path}: no {begin} ... {end} section, not updated")
        return
    # The report's own headings one level down, under the document's section.
    body = "\n".join("#" + line if line.startswith("#") else line for line in report.splitlines())
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(f"{head}{begin}\n(generated by scripts/bench.sh from {source}.md)\n\n{body}\n{end}{tail}")
    log(f"updated {path}")


def make_table(doc, results, plan):
    table = []
    for config_name, config in plan.items():
        for case, _ in config["cases"]:
            row = {"case": case, "config": config_name, "engines": {}, "unit": None}
            for e in doc["engines"]:
                r = results.get((e, config_name))
                if isinstance(r, str):
                    row["engines"][e] = r
                    continue
                if not r:
                    row["engines"][e] = "not run"
                    continue
                vals = [c[1] for c in r["cases"] if c[0] == case]
                for c in r["cases"]:
                    if c[0] == case:
                        row["unit"] = c[2]
                row["engines"][e] = summarize(vals) or "no result"
            med = {e: v["median"] for e, v in row["engines"].items() if isinstance(v, dict)}
            if "rove-bt" in med and "native" in med and med["native"]:
                row["rove_over_native"] = med["rove-bt"] / med["native"]
            if "rove-bt" in med and "qemu-tcg" in med and med["qemu-tcg"]:
                row["rove_over_qemu_tcg"] = med["rove-bt"] / med["qemu-tcg"]
            if "qemu-tcg" in med and "native" in med and med["native"]:
                row["qemu_tcg_over_native"] = med["qemu-tcg"] / med["native"]
            group = CASE_INFO.get(case, ("", ""))[0]
            goals = TARGETS.get(group, {})
            parts = []
            for peer, limit in goals.items():
                ratio = row.get("rove_over_native" if peer == "native" else "rove_over_qemu_tcg")
                verdict = "n/a" if ratio is None else ("met" if ratio <= limit else "not met")
                parts.append(f"≤{limit}x {'native' if peer == 'native' else 'TCG'}: {verdict}")
            row["target"] = "; ".join(parts)
            row["unit"] = row["unit"] or "?"
            table.append(row)
    return table


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rove", default=os.path.join(REPO, "build/bench/rove"))
    ap.add_argument("--rove-bench", default=os.path.join(REPO, "build/bench/bench/rove_bench"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--engines", default="native,rove-bt,qemu-tcg,rove-kvm,qemu-kvm")
    ap.add_argument("--mem", type=int, default=512)
    ap.add_argument("--smoke", action="store_true",
                    help="tiny plan, one repetition, a few micro benchmarks (for CI)")
    ap.add_argument("--work", default=os.path.join(REPO, "build/bench-run"))
    ap.add_argument("--out-dir", default=os.path.join(REPO, "bench/results"))
    ap.add_argument("--boot-timeout", type=int, default=420)
    ap.add_argument("--calibration-timeout", type=int, default=20)
    ap.add_argument("--doc", help="also put the report into this markdown file, between the "
                    "lines <!-- bench:begin --> and <!-- bench:end -->")
    args = ap.parse_args()
    t_start = time.monotonic()
    plan = SMOKE_PLAN if args.smoke else FULL_PLAN
    reps = 1 if args.smoke else args.reps
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out_dir, exist_ok=True)
    logs = os.path.join(args.work, "logs")
    os.makedirs(logs, exist_ok=True)

    guest_dir = os.environ.get("ROVE_GUEST_DIR", os.path.join(REPO, "build/guest"))
    env = dict(os.environ, ROVE_GUEST_DIR=guest_dir, ROVE_SHA_MIB="1")
    subprocess.run(["bash", os.path.join(REPO, "scripts/fetch-guest.sh")], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    base = os.path.join(args.work, "initramfs-base.cpio.gz")
    subprocess.run(["bash", os.path.join(REPO, "scripts/build-initramfs.sh"), "--init",
                    os.path.join(REPO, "bench/guest/bench-init.sh"), "--out", base], check=True,
                   env=env, stdout=subprocess.DEVNULL)
    kernel = os.path.join(guest_dir, "vmlinuz")
    busybox = os.path.join(guest_dir, "busybox")
    workloads = build_workloads(args.work)
    initrds = {name: build_initramfs(args.work, base, workloads, name, cfg, reps)
               for name, cfg in plan.items()}

    stamp = time.strftime("%Y-%m-%d-%H%M%S", time.gmtime())
    host = platform.node()
    cpu_model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu_model = m.group(1) if m else cpu_model
    except OSError:
        pass
    doc = {"date": stamp, "host": host, "smoke": args.smoke, "reps": reps, "mem_mib": args.mem,
           "machine": f"{cpu_model}, {os.cpu_count()} CPUs", "cmdline": CMDLINE,
           "kernel": open(kernel + ".package").read().strip()
           if os.path.exists(kernel + ".package") else kernel,
           "commit": source_commit(),
           "load_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
           "engines": engines, "calibration": {}, "boot": [], "clock_check": []}

    results = {}
    native_loop = None
    if "native" in engines:
        for name, cfg in plan.items():
            log(f"native, {name}")
            r = run_native(workloads, busybox, args.work, cfg, reps)
            results[("native", name)] = r
            doc["clock_check"].append(dict(engine="native", config=name, **r["clock"]))
            loops = [c[1] for c in r["cases"] if c[0] == "loop"]
            native_loop = statistics.median(loops) if loops else native_loop
    if native_loop is None:
        out = subprocess.run([workloads, "loop", "200000000"], capture_output=True, text=True)
        native_loop = parse_cases(out.stdout.splitlines())[0][1]
    doc["calibration"]["native"] = {"ns_per_iter": native_loop, "note": "workloads loop, host"}

    for engine in [e for e in engines if e != "native"]:
        if engine.startswith("qemu-") and not shutil.which("qemu-system-x86_64"):
            for name in plan:
                results[(engine, name)] = "qemu not installed"
            continue
        if engine.startswith("rove-") and not rove_has_accel(args.rove, engine[len("rove-"):]):
            for name in plan:
                results[(engine, name)] = f"rove has no --accel {engine[len('rove-'):]}"
            doc["calibration"][engine] = {"note": f"`rove run --help` lists no {engine[5:]} accel"}
            continue
        if engine.endswith("-kvm"):
            usable = kvm_usable()
            if usable is not True:
                for name in plan:
                    results[(engine, name)] = f"/dev/kvm unusable: {usable}"
                doc["calibration"][engine] = {"note": f"/dev/kvm unusable: {usable}"}
                continue
        if not args.smoke or engine.endswith("-kvm"):
            log(f"{engine}, calibration")
            cal = calibrate(engine, args.rove, args.work, args.calibration_timeout)
            doc["calibration"][engine] = cal
            per = cal.get("ns_per_iter")
            if per is not None:
                cal["note"] = f"{per / native_loop:.1f}x native"
            if engine.endswith("-kvm") and (per is None or per > CALIBRATION_LIMIT * native_loop):
                figure = (f"{per:.0f} ns/loop iteration = {per / native_loop:.0f}x native"
                          if per is not None else cal.get("error", "no figure"))
                if per is not None and cal.get("startup_s"):
                    figure += f", {cal['startup_s']:.1f} s to start the calibration guest"
                cal["note"] = "too slow: " + figure
                short = (f"too slow: {per / native_loop:.0f}x native per loop iteration"
                         if per is not None else "too slow: calibration timed out")
                for name in plan:
                    results[(engine, name)] = short
                continue
        for name, cfg in plan.items():
            log(f"{engine}, {name} ({cfg['cpus']} vCPU)")
            r = run_vm(engine, args.rove, kernel, initrds[name], args.mem, cfg["cpus"],
                       args.boot_timeout, os.path.join(logs, f"{engine}-{name}.log"))
            results[(engine, name)] = r
            doc["boot"].append({"engine": engine, "config": name, **{
                k: r.get(k) for k in ("to_init_s", "to_poweroff_s", "uptime_at_init_s",
                                      "clocksource", "guest_cpus", "rc", "wall_exit_s")}})
            if "clock" in r:
                doc["clock_check"].append(dict(engine=engine, config=name, **r["clock"]))
            if r.get("stats"):
                doc.setdefault("rove_stats", {})[f"{engine}-{name}"] = r["stats"]
            if not r["cases"]:
                log(f"{engine} {name}: no results (exit {r['rc']}); see {logs}")

    # Results must agree across engines (a fast wrong answer is not a result).
    checks = {}
    for (engine, name), r in results.items():
        if isinstance(r, dict):
            for case, _, _, _, check in r["cases"]:
                if case not in ("syscall",):  # getppid differs between host and guest
                    checks.setdefault((name, case), {}).setdefault(check, set()).add(engine)
    doc["check_mismatches"] = [{"config": n, "case": c, "digests": {k: sorted(v) for k, v in d.items()}}
                               for (n, c), d in checks.items() if len(d) > 1]

    if args.rove_bench and os.path.exists(args.rove_bench):
        log("micro benchmarks")
        doc["micro"] = run_micro(args.rove_bench, args.work, args.smoke)

    doc["table"] = make_table(doc, results, plan)
    targets = []
    for row in doc["table"]:
        if row.get("target"):
            targets.append(f"{row['case']} ({row['config']}): rove/native "
                           f"{fmt_num(row.get('rove_over_native'))}x, rove/TCG "
                           f"{fmt_num(row.get('rove_over_qemu_tcg'))}x -- {row['target']}")
    boots = {(b["engine"], b["config"]): b for b in doc["boot"]}
    rb, qb = boots.get(("rove-bt", "1cpu")), boots.get(("qemu-tcg", "1cpu"))
    if rb and qb and rb.get("to_init_s") and qb.get("to_init_s"):
        ratio = rb["to_init_s"] / qb["to_init_s"]
        targets.append(f"boot to /init (1 vCPU): rove {rb['to_init_s']:.1f} s, QEMU TCG "
                       f"{qb['to_init_s']:.1f} s wall = {ratio:.2f}x -- faster than TCG: "
                       f"{'met' if ratio < 1 else 'not met'}")
    for mm in doc["check_mismatches"]:
        targets.append(f"RESULT MISMATCH {mm['config']} {mm['case']}: {mm['digests']}")
    doc["targets"] = targets
    doc["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    doc["total_s"] = time.monotonic() - t_start
    base_out = os.path.join(args.out_dir, f"{'smoke-' if args.smoke else ''}{stamp}-{host}")
    with open(base_out + ".json", "w") as f:
        json.dump(doc, f, indent=2, default=list)
    with open(base_out + ".md", "w") as f:
        f.write(build_report(doc))
    if args.doc:
        update_doc(args.doc, build_report(doc), os.path.relpath(base_out, REPO))
    log(f"wrote {base_out}.md and {base_out}.json in {doc['total_s']:.0f} s")
    print(base_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
