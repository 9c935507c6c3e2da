// Guest workloads of the end-to-end benchmark (bench/run_bench.py), one static program with one
// sub-command per case. The same binary runs natively on the host and inside the guest (rove BT,
// QEMU TCG, KVM), so every engine runs the same instructions.
//
// Each case times itself with clock_gettime(CLOCK_MONOTONIC) -- the guest kernel's clock, whose
// clocksource the guest's /init records -- and prints one machine-readable line:
//
//   ROVEBENCH case=<name> value=<number> unit=<unit> elapsed_ns=<n> ops=<n> check=<hex>
//
// value is the figure of merit (ms for a fixed amount of work, ns or us per operation);
// elapsed_ns is the timed span, which the harness sums and compares with its own wall clock;
// check is a result digest so a miscomputing engine cannot look fast.
//
// Build: gcc -static -O2 -o workloads workloads.c
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t NowNs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void Report(const char* name, double value, const char* unit, uint64_t elapsed_ns,
                   uint64_t ops, uint64_t check) {
  printf("ROVEBENCH case=%s value=%.4f unit=%s elapsed_ns=%" PRIu64 " ops=%" PRIu64
         " check=%016" PRIx64 "\n",
         name, value, unit, elapsed_ns, ops, check);
  fflush(stdout);
}

static void Die(const char* what) {
  perror(what);
  exit(1);
}

// ---- integer kernel: hashing, compression, sorting -------------------------------------------

// Deterministic, moderately compressible data (runs and repeated phrases, like text).
static void FillData(uint8_t* buf, size_t len, uint32_t seed) {
  uint32_t x = seed;
  size_t i = 0;
  while (i < len) {
    x = x * 1103515245u + 12345u;
    size_t run = 1 + ((x >> 16) & 15);
    if ((x >> 8) & 1 && i > 64) {  // copy an earlier phrase
      size_t back = 1 + ((x >> 20) & 63);
      for (size_t k = 0; k < run && i < len; ++k, ++i) buf[i] = buf[i - back];
    } else {
      for (size_t k = 0; k < run && i < len; ++k, ++i) buf[i] = (uint8_t)('a' + ((x >> 24) % 26));
    }
  }
}

static uint64_t Fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

// A small LZ77 compressor (hash of 4 bytes -> last position), returns the compressed size.
static size_t Lz77(const uint8_t* in, size_t n, uint8_t* out) {
  enum { kBits = 14 };
  static uint32_t table[1 << kBits];
  memset(table, 0, sizeof table);
  size_t i = 0, o = 0, lit_start = 0;
  while (i + 4 <= n) {
    uint32_t v;
    memcpy(&v, in + i, 4);
    uint32_t h = (v * 2654435761u) >> (32 - kBits);
    uint32_t cand = table[h];
    table[h] = (uint32_t)i;
    if (cand < i && i - cand < 65535 && memcmp(in + cand, in + i, 4) == 0) {
      size_t len = 4;
      while (i + len < n && len < 255 && in[cand + len] == in[i + len]) ++len;
      // literals then a (distance, length) pair
      size_t lits = i - lit_start;
      out[o++] = (uint8_t)(lits > 255 ? 255 : lits);
      memcpy(out + o, in + lit_start, lits);
      o += lits;
      out[o++] = (uint8_t)(i - cand);
      out[o++] = (uint8_t)((i - cand) >> 8);
      out[o++] = (uint8_t)len;
      i += len;
      lit_start = i;
    } else {
      ++i;
    }
  }
  memcpy(out + o, in + lit_start, n - lit_start);
  return o + (n - lit_start);
}

// In-place quicksort (median of three, insertion sort below 16): unlike glibc's qsort it
// allocates nothing, so the timed span has no page faults.
static void SortU32(uint32_t* a, long lo, long hi) {
  while (hi - lo > 16) {
    long mid = lo + (hi - lo) / 2;
    uint32_t x = a[lo], y = a[mid], z = a[hi];
    uint32_t pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
    long i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) ++i;
      while (a[j] > pivot) --j;
      if (i <= j) {
        uint32_t t = a[i];
        a[i++] = a[j];
        a[j--] = t;
      }
    }
    if (j - lo < hi - i) {  // recurse into the smaller part
      SortU32(a, lo, j);
      lo = i;
    } else {
      SortU32(a, i, hi);
      hi = j;
    }
  }
  for (long i = lo + 1; i <= hi; ++i) {
    uint32_t v = a[i];
    long k = i - 1;
    while (k >= lo && a[k] > v) {
      a[k + 1] = a[k];
      --k;
    }
    a[k + 1] = v;
  }
}

// The integer kernel's memory, allocated and touched before timing starts: the CPU-bound cases
// measure computation; first-touch page faults have a case of their own.
struct IntBuffers {
  size_t n;
  uint8_t* data;
  uint8_t* out;
};

static struct IntBuffers PrepareInt(size_t kib) {
  struct IntBuffers b = {kib * 1024, NULL, NULL};
  b.data = malloc(b.n);
  b.out = malloc(b.n + b.n / 2 + 64);
  if (!b.data || !b.out) Die("malloc");
  memset(b.out, 0, b.n + b.n / 2 + 64);
  FillData(b.data, b.n, 7);
  return b;
}

// Hashing, compression and sorting over the prepared buffers; returns a digest.
static uint64_t IntegerKernel(struct IntBuffers b) {
  size_t n = b.n;
  uint64_t digest = Fnv1a(b.data, n);
  digest ^= Lz77(b.data, n, b.out);
  digest = digest * 31 + Fnv1a(b.out, n / 4);
  size_t count = n / 16;
  uint32_t* keys = (uint32_t*)b.out;
  uint32_t x = 99;
  for (size_t k = 0; k < count; ++k) keys[k] = (x = x * 1664525u + 1013904223u);
  SortU32(keys, 0, (long)count - 1);
  for (size_t k = 1; k < count; ++k)
    if (keys[k - 1] > keys[k]) Die("sort");
  digest = digest * 31 + keys[count / 2] + keys[count - 1];
  return digest;
}

static int CaseInt(size_t kib) {
  struct IntBuffers b = PrepareInt(kib);
  uint64_t t0 = NowNs();
  uint64_t digest = IntegerKernel(b);
  uint64_t ns = NowNs() - t0;
  Report("int", ns / 1e6, "ms", ns, kib, digest);
  return 0;
}

// The integer kernel in `procs` processes at once; each prepares its buffers, then all start
// together when the parent closes the start pipe; value = wall time until all finish.
static int CaseIntParallel(size_t kib, int procs) {
  int results[2], ready[2], start[2];
  if (pipe(results) || pipe(ready) || pipe(start)) Die("pipe");
  for (int p = 0; p < procs; ++p) {
    pid_t pid = fork();
    if (pid < 0) Die("fork");
    if (pid == 0) {
      close(start[1]);
      struct IntBuffers b = PrepareInt(kib);
      char c = 1, go;
      if (write(ready[1], &c, 1) != 1) _exit(1);
      if (read(start[0], &go, 1) != 0) _exit(1);  // EOF: the parent closed it, start
      uint64_t d = IntegerKernel(b);
      if (write(results[1], &d, sizeof d) != sizeof d) _exit(1);
      _exit(0);
    }
  }
  close(start[0]);
  for (int p = 0; p < procs; ++p) {
    char c;
    if (read(ready[0], &c, 1) != 1) Die("ready");
  }
  uint64_t t0 = NowNs();
  close(start[1]);
  uint64_t digest = 0;
  for (int p = 0; p < procs; ++p) {
    uint64_t d;
    if (read(results[0], &d, sizeof d) != sizeof d) Die("read");
    digest += d;
  }
  uint64_t ns = NowNs() - t0;
  while (wait(NULL) > 0) {
  }
  char name[32];
  snprintf(name, sizeof name, "int_x%d", procs);
  Report(name, ns / 1e6, "ms", ns, kib * (size_t)procs, digest);
  return 0;
}

// ---- floating point / SIMD ----------------------------------------------------------------------

static int CaseFp(int n, int reps) {
  double* a = malloc(sizeof(double) * n * n);
  double* b = malloc(sizeof(double) * n * n);
  double* c = malloc(sizeof(double) * n * n);
  float* v = malloc(sizeof(float) * 65536);
  if (!a || !b || !c || !v) Die("malloc");
  for (int i = 0; i < n * n; ++i) {
    a[i] = (i % 17) * 0.25 - 1.0;
    b[i] = (i % 13) * 0.5 + 0.125;
  }
  for (int i = 0; i < 65536; ++i) v[i] = (float)(i % 101) * 0.01f;
  uint64_t t0 = NowNs();
  double sum = 0;
  for (int r = 0; r < reps; ++r) {
    memset(c, 0, sizeof(double) * n * n);
    for (int i = 0; i < n; ++i)  // i-k-j order: the inner loop vectorizes
      for (int k = 0; k < n; ++k) {
        double aik = a[i * n + k];
        for (int j = 0; j < n; ++j) c[i * n + j] += aik * b[k * n + j];
      }
    sum += c[(r * 7) % (n * n)];
    float acc = 0;
    for (int j = 0; j < 64; ++j)
      for (int i = 0; i < 65536; ++i) {
        v[i] = v[i] * 0.999f + 0.001f;
        acc += v[i];
      }
    sum += acc;
  }
  uint64_t ns = NowNs() - t0;
  uint64_t check;
  memcpy(&check, &sum, sizeof check);
  Report("fp", ns / 1e6, "ms", ns, (uint64_t)reps, check);
  free(a);
  free(b);
  free(c);
  free(v);
  return 0;
}

// ---- a file of test data, and timing another command (busybox sha256sum / gzip) ---------------

static int CaseGenFile(const char* path, size_t mib) {
  size_t n = mib << 20;
  uint8_t* data = malloc(n);
  if (!data) Die("malloc");
  FillData(data, n, 11);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) Die(path);
  for (size_t off = 0; off < n;) {
    ssize_t w = write(fd, data + off, n - off);
    if (w <= 0) Die("write");
    off += (size_t)w;
  }
  close(fd);
  free(data);
  return 0;
}

// Runs argv with stdout to /dev/null; value = wall ms of the whole command.
static int CaseTimeCommand(const char* name, char** argv) {
  uint64_t t0 = NowNs();
  pid_t pid = fork();
  if (pid < 0) Die("fork");
  if (pid == 0) {
    int fd = open("/dev/null", O_WRONLY);
    if (fd >= 0) dup2(fd, 1);
    execv(argv[0], argv);
    _exit(127);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) Die("waitpid");
  uint64_t ns = NowNs() - t0;
  Report(name, ns / 1e6, "ms", ns, 1, (uint64_t)status);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

// ---- kernel paths: system calls, page faults, fork, exec, pipes ---------------------------------

static int CaseSyscall(uint64_t n) {
  uint64_t sum = 0;
  uint64_t t0 = NowNs();
  for (uint64_t i = 0; i < n; ++i) sum += (uint64_t)syscall(SYS_getppid);
  uint64_t ns = NowNs() - t0;
  Report("syscall", (double)ns / (double)n, "ns/call", ns, n, sum / n);
  return 0;
}

static int CasePageFault(size_t mib, int rounds) {
  size_t len = mib << 20;
  uint64_t faults = 0, check = 0, ns = 0;
  for (int r = 0; r < rounds; ++r) {
    uint8_t* p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) Die("mmap");
    madvise(p, len, MADV_NOHUGEPAGE);  // one fault per 4 KiB page on every engine
    uint64_t t0 = NowNs();
    for (size_t off = 0; off < len; off += 4096) p[off] = (uint8_t)off + 1;
    ns += NowNs() - t0;
    for (size_t off = 0; off < len; off += 4096 * 61) check += p[off];
    faults += len / 4096;
    munmap(p, len);
  }
  Report("pagefault", ns / 1e3 / (double)faults, "us/fault", ns, faults, check);
  return 0;
}

static int CaseFork(uint64_t n) {
  uint64_t t0 = NowNs();
  for (uint64_t i = 0; i < n; ++i) {
    pid_t pid = fork();
    if (pid < 0) Die("fork");
    if (pid == 0) _exit(0);
    if (waitpid(pid, NULL, 0) < 0) Die("waitpid");
  }
  uint64_t ns = NowNs() - t0;
  Report("fork", ns / 1e3 / (double)n, "us/op", ns, n, n);
  return 0;
}

static int CaseForkExec(const char* self, uint64_t n) {
  uint64_t ok = 0;
  uint64_t t0 = NowNs();
  for (uint64_t i = 0; i < n; ++i) {
    pid_t pid = fork();
    if (pid < 0) Die("fork");
    if (pid == 0) {
      execl(self, self, "nop", (char*)NULL);
      _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0) Die("waitpid");
    ok += WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  uint64_t ns = NowNs() - t0;
  Report("forkexec", ns / 1e3 / (double)n, "us/op", ns, n, ok);
  return ok == n ? 0 : 1;
}

// One byte back and forth between two processes: two context switches per round trip.
static int CasePipe(uint64_t n) {
  int to_child[2], to_parent[2];
  if (pipe(to_child) || pipe(to_parent)) Die("pipe");
  pid_t pid = fork();
  if (pid < 0) Die("fork");
  if (pid == 0) {
    close(to_child[1]);  // else the read below never sees EOF
    close(to_parent[0]);
    char c;
    while (read(to_child[0], &c, 1) == 1) {
      c++;
      if (write(to_parent[1], &c, 1) != 1) _exit(1);
    }
    _exit(0);
  }
  close(to_child[0]);
  close(to_parent[1]);
  uint64_t sum = 0;
  uint64_t t0 = NowNs();
  for (uint64_t i = 0; i < n; ++i) {
    char c = (char)i;
    if (write(to_child[1], &c, 1) != 1 || read(to_parent[0], &c, 1) != 1) Die("pipe io");
    sum += (uint8_t)c;
  }
  uint64_t ns = NowNs() - t0;
  close(to_child[1]);
  waitpid(pid, NULL, 0);
  Report("pipe", ns / 1e3 / (double)n, "us/roundtrip", ns, n, sum);
  return 0;
}

// A busy loop of `n` iterations (dec/jnz), for clock calibration between engines.
static int CaseLoop(uint64_t n) {
  uint64_t t0 = NowNs();
  uint64_t i = n;
  __asm__ volatile("1: dec %0; jnz 1b" : "+r"(i));
  uint64_t ns = NowNs() - t0;
  Report("loop", (double)ns / (double)n, "ns/iter", ns, n, i);
  return 0;
}

static uint64_t Arg(int argc, char** argv, int i, uint64_t def) {
  return i < argc ? strtoull(argv[i], NULL, 0) : def;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr,
            "usage: %s now | nop | int KIB | int_par KIB PROCS | fp N REPS | genfile PATH MIB |\n"
            "       time NAME CMD... | syscall N | pagefault MIB ROUNDS | fork N | forkexec N |\n"
            "       pipe N | loop N\n",
            argv[0]);
    return 2;
  }
  const char* c = argv[1];
  if (!strcmp(c, "now")) {  // the guest clock, for the harness's wall-clock check
    printf("ROVEBENCH-NOW %" PRIu64 "\n", NowNs());
    return 0;
  }
  if (!strcmp(c, "nop")) return 0;
  if (!strcmp(c, "int")) return CaseInt(Arg(argc, argv, 2, 4096));
  if (!strcmp(c, "int_par"))
    return CaseIntParallel(Arg(argc, argv, 2, 4096), (int)Arg(argc, argv, 3, 2));
  if (!strcmp(c, "fp")) return CaseFp((int)Arg(argc, argv, 2, 128), (int)Arg(argc, argv, 3, 4));
  if (!strcmp(c, "genfile") && argc >= 4) return CaseGenFile(argv[2], Arg(argc, argv, 3, 16));
  if (!strcmp(c, "time") && argc >= 4) return CaseTimeCommand(argv[2], argv + 3);
  if (!strcmp(c, "syscall")) return CaseSyscall(Arg(argc, argv, 2, 1000000));
  if (!strcmp(c, "pagefault"))
    return CasePageFault(Arg(argc, argv, 2, 64), (int)Arg(argc, argv, 3, 1));
  if (!strcmp(c, "fork")) return CaseFork(Arg(argc, argv, 2, 1000));
  if (!strcmp(c, "forkexec")) return CaseForkExec(argv[0], Arg(argc, argv, 2, 500));
  if (!strcmp(c, "pipe")) return CasePipe(Arg(argc, argv, 2, 10000));
  if (!strcmp(c, "loop")) return CaseLoop(Arg(argc, argv, 2, 100000000));
  fprintf(stderr, "%s: unknown case %s\n", argv[0], c);
  return 2;
}
