// Native half of the differential harness: runs a sequence on the host CPU in a forked worker
// process (one for many cases; a new one if it dies).
//
// The parent maps three MAP_SHARED regions at fixed addresses once (data at kDataVa, code at
// kCodeVa, and a context block at kCtxVa) so the worker writes its results where the parent can
// read them. A guest fault is caught by a signal handler on an alternate stack, which records the
// state and resumes the worker at a recovery trampoline. The trampolines below address the context
// block with absolute 32-bit addresses, so they need no free register: on entry every GPR is loaded
// from it, on exit every GPR is stored into it before anything else happens.
#include <fmt/format.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "../support/worker_process.h"
#include "harness.h"

namespace rove::difftest {
namespace {

constexpr uint64_t kCtxVa = 0x30000000;
constexpr uint64_t kCtxSize = 0x20000;
constexpr uint64_t kAltStackOffset = 0x10000;
constexpr uint64_t kAltStackSize = 0x10000;

// Must match the absolute offsets used by the assembly below.
struct NativeCtx {
  uint64_t in_gpr[16];   // 0x000
  uint64_t in_rflags;    // 0x080
  uint64_t entry;        // 0x088
  uint64_t host_rsp;     // 0x090
  uint64_t exit_addr;    // 0x098
  uint64_t in_gsbase;    // 0x0A0
  uint64_t rfbm;         // 0x0A8: EDX:EAX for XSAVE/XRSTOR
  uint32_t mxcsr_init;   // 0x0B0
  uint32_t pad1[3];      // 0x0B4
  uint8_t far_entry[8];  // 0x0C0: m16:32 far pointer into the 32-bit sequence
  uint8_t far_exit[8];   // 0x0C8: m16:32 far pointer back to 64-bit code
  uint64_t host_gsbase;  // 0x0D0
  uint64_t out_gsbase;   // 0x0D8
  uint32_t pad1b[8];     // 0x0E0
  uint64_t out_gpr[16];  // 0x100
  uint64_t out_rflags;   // 0x180
  uint64_t out_rip;      // 0x188
  uint64_t status;       // 0x190: 0 none, 1 completed, 2 fault
  uint64_t trapno;       // 0x198
  uint64_t err;          // 0x1A0
  uint64_t cr2;          // 0x1A8
  uint64_t signo;        // 0x1B0
  uint64_t si_code;      // 0x1B8
  uint8_t pad2[0x1000 - 0x1C0];
  alignas(64) uint8_t in_xsave[4096];   // 0x1000
  alignas(64) uint8_t out_xsave[4096];  // 0x2000
};
static_assert(offsetof(NativeCtx, in_rflags) == 0x80);
static_assert(offsetof(NativeCtx, rfbm) == 0xA8);
static_assert(offsetof(NativeCtx, mxcsr_init) == 0xB0);
static_assert(offsetof(NativeCtx, far_entry) == 0xC0);
static_assert(offsetof(NativeCtx, far_exit) == 0xC8);
static_assert(offsetof(NativeCtx, in_gsbase) == 0xA0);
static_assert(offsetof(NativeCtx, host_gsbase) == 0xD0);
static_assert(offsetof(NativeCtx, out_gsbase) == 0xD8);
static_assert(offsetof(NativeCtx, out_gpr) == 0x100);
static_assert(offsetof(NativeCtx, status) == 0x190);
static_assert(offsetof(NativeCtx, in_xsave) == 0x1000);
static_assert(offsetof(NativeCtx, out_xsave) == 0x2000);
static_assert(sizeof(NativeCtx) <= kAltStackOffset);

constexpr uint64_t kStatusCompleted = 1;
constexpr uint64_t kStatusFault = 2;

// Linux x86-64 user code segments.
constexpr uint16_t kUser32Cs = 0x23;
constexpr uint16_t kUser64Cs = 0x33;

}  // namespace
}  // namespace rove::difftest

extern "C" void rove_diff_native_enter();
extern "C" void rove_diff_native_exit();
extern "C" void rove_diff_native_recover();

// clang-format off
asm(R"(
  .text
  .globl rove_diff_native_enter
  .type rove_diff_native_enter, @function
rove_diff_native_enter:
  push %rbx
  push %rbp
  push %r12
  push %r13
  push %r14
  push %r15
  mov %rsp, 0x30000090
  xor %eax, %eax
  cpuid                      # serialize: the parent may just have written new code
  rdgsbase %rax              # the host does not use GS: lend it to the guest
  mov %rax, 0x300000D0
  mov 0x300000A0, %rax
  wrgsbase %rax
  mov $0x2b, %eax            # __USER_DS: compatibility-mode code needs usable DS/ES
  mov %eax, %ds
  mov %eax, %es
  mov 0x300000A8, %eax
  mov 0x300000AC, %edx
  xrstor64 0x30001000
  pushq 0x30000080
  popfq
  mov 0x30000000, %rax
  mov 0x30000008, %rcx
  mov 0x30000010, %rdx
  mov 0x30000018, %rbx
  mov 0x30000028, %rbp
  mov 0x30000030, %rsi
  mov 0x30000038, %rdi
  mov 0x30000040, %r8
  mov 0x30000048, %r9
  mov 0x30000050, %r10
  mov 0x30000058, %r11
  mov 0x30000060, %r12
  mov 0x30000068, %r13
  mov 0x30000070, %r14
  mov 0x30000078, %r15
  mov 0x30000020, %rsp
  jmp *0x30000088
  .size rove_diff_native_enter, . - rove_diff_native_enter

  .globl rove_diff_native_exit
  .type rove_diff_native_exit, @function
rove_diff_native_exit:
  mov %rax, 0x30000100
  mov %rcx, 0x30000108
  mov %rdx, 0x30000110
  mov %rbx, 0x30000118
  mov %rsp, 0x30000120
  mov %rbp, 0x30000128
  mov %rsi, 0x30000130
  mov %rdi, 0x30000138
  mov %r8, 0x30000140
  mov %r9, 0x30000148
  mov %r10, 0x30000150
  mov %r11, 0x30000158
  mov %r12, 0x30000160
  mov %r13, 0x30000168
  mov %r14, 0x30000170
  mov %r15, 0x30000178
  mov 0x30000090, %rsp
  rdgsbase %rax
  mov %rax, 0x300000D8
  mov 0x300000D0, %rax
  wrgsbase %rax
  pushfq
  popq 0x30000180
  mov 0x300000A8, %eax
  mov 0x300000AC, %edx
  xsave64 0x30002000
  cld
  fninit
  ldmxcsr 0x300000B0
  vzeroupper
  movq $1, 0x30000190
  pop %r15
  pop %r14
  pop %r13
  pop %r12
  pop %rbp
  pop %rbx
  ret
  .size rove_diff_native_exit, . - rove_diff_native_exit

  # Where the fault handler sends the thread after recording a guest fault: back onto the host
  # stack saved on entry, with a sane FP environment, returning from rove_diff_native_enter.
  .globl rove_diff_native_recover
  .type rove_diff_native_recover, @function
rove_diff_native_recover:
  mov 0x30000090, %rsp
  mov 0x300000D0, %rax
  wrgsbase %rax
  cld
  fninit
  ldmxcsr 0x300000B0
  vzeroupper
  pop %r15
  pop %r14
  pop %r13
  pop %r12
  pop %rbp
  pop %rbx
  ret
  .size rove_diff_native_recover, . - rove_diff_native_recover
)");
// clang-format on

namespace rove::difftest {
namespace {

NativeCtx* Ctx() {
  return reinterpret_cast<NativeCtx*>(kCtxVa);
}

// Maps the three regions once per process. Returns an error message or "".
const std::string& MapRegions() {
  static const std::string error = [] {
    struct Region {
      uint64_t va, size;
    } regions[] = {{kCtxVa, kCtxSize}, {kDataVa, kDataSize}, {kCodeVa, kCodeSize}};
    for (const Region& r : regions) {
      void* p = mmap(reinterpret_cast<void*>(r.va), r.size, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (p == MAP_FAILED || p != reinterpret_cast<void*>(r.va)) {
        return fmt::format("cannot map native test region at {:#x}: {}", r.va,
                           std::strerror(errno));
      }
    }
    return std::string();
  }();
  return error;
}

// clang-format off
constexpr int kGregOfGpr[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI,
                                REG_RDI, REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13,
                                REG_R14, REG_R15};
// clang-format on

// Runs on the alternate stack in the worker: records the faulting state, then returns into
// rove_diff_native_recover, which unwinds to the caller of rove_diff_native_enter.
__attribute__((no_sanitize("address", "undefined"))) void FaultHandler(int sig, siginfo_t* si,
                                                                       void* uc_void) {
  NativeCtx* c = Ctx();
  auto* uc = static_cast<ucontext_t*>(uc_void);
  greg_t* g = uc->uc_mcontext.gregs;
  for (int i = 0; i < 16; ++i) c->out_gpr[i] = static_cast<uint64_t>(g[kGregOfGpr[i]]);
  c->out_rip = static_cast<uint64_t>(g[REG_RIP]);
  c->out_rflags = static_cast<uint64_t>(g[REG_EFL]);
  c->trapno = static_cast<uint64_t>(g[REG_TRAPNO]);
  c->err = static_cast<uint64_t>(g[REG_ERR]);
  c->cr2 = static_cast<uint64_t>(g[REG_CR2]);
  c->signo = static_cast<uint64_t>(sig);
  c->si_code = static_cast<uint64_t>(si->si_code);
  uint64_t gsbase;
  asm volatile("rdgsbase %0" : "=r"(gsbase));
  c->out_gsbase = gsbase;
  // The signal frame holds the XSAVE image (standard format) when FP_XSTATE_MAGIC1 is present.
  const auto* fp = reinterpret_cast<const uint8_t*>(uc->uc_mcontext.fpregs);
  volatile uint8_t* out = c->out_xsave;
  for (size_t i = 0; i < sizeof(c->out_xsave); ++i) out[i] = 0;
  if (fp) {
    uint32_t magic = 0, xstate_size = 0;
    __builtin_memcpy(&magic, fp + 464, 4);
    __builtin_memcpy(&xstate_size, fp + 464 + 16, 4);
    size_t n = 512;
    if (magic == 0x46505853u) n = xstate_size < 4096 ? xstate_size : 4096;
    for (size_t i = 0; i < n; ++i) out[i] = fp[i];
    if (n == 512) out[testing::kXstateBvOffset] = 3;
  }
  c->status = kStatusFault;
  g[REG_RIP] = reinterpret_cast<greg_t>(&rove_diff_native_recover);
  // The fault may have hit 32-bit code: resume in 64-bit mode (CS is bits 15:0 of CSGSFS).
  g[REG_CSGSFS] = (g[REG_CSGSFS] & ~static_cast<greg_t>(0xFFFF)) | kUser64Cs;
  g[REG_EFL] &= ~static_cast<greg_t>(rflags::kTf | rflags::kAc | rflags::kDf);
}

// Runs in the worker process for each case.
void RunCaseInWorker(void*) {
  static bool initialized = false;
  if (!initialized) {
    if (mprotect(reinterpret_cast<void*>(kCodeVa), kCodeSize, PROT_READ | PROT_EXEC) != 0) {
      _exit(10);
    }
    stack_t ss{};
    ss.ss_sp = reinterpret_cast<void*>(kCtxVa + kAltStackOffset);
    ss.ss_size = kAltStackSize;
    if (sigaltstack(&ss, nullptr) != 0) _exit(11);
    struct sigaction sa {};
    sa.sa_sigaction = FaultHandler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigfillset(&sa.sa_mask);
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP}) {
      if (sigaction(sig, &sa, nullptr) != 0) _exit(12);
    }
    initialized = true;
  }
  rove_diff_native_enter();
}

testing::WorkerProcess& NativeWorker() {
  static testing::WorkerProcess worker(64, RunCaseInWorker);
  return worker;
}

const uint8_t kUd2Fill[2] = {0x0F, 0x0B};

}  // namespace

Outcome RunNative(const DiffInput& input) {
  Outcome out;
  if (const std::string& err = MapRegions(); !err.empty()) {
    out.failure = err;
    return out;
  }
  if (input.code.size() > kMaxSequenceBytes || input.data.size() != kDataSize) {
    out.failure = "bad input: code too long or data region of the wrong size";
    return out;
  }
  const testing::XsaveLayout& layout = testing::HostXsaveLayout();

  auto* data = reinterpret_cast<uint8_t*>(kDataVa);
  std::memcpy(data, input.data.data(), kDataSize);
  auto* code = reinterpret_cast<uint8_t*>(kCodeVa);
  for (uint64_t i = 0; i < kCodeSize; ++i) code[i] = kUd2Fill[i & 1];
  uint8_t c_far_entry[8] = {}, c_far_exit[8] = {};
  if (!input.code.empty()) std::memcpy(code, input.code.data(), input.code.size());
  // jmp qword [abs kCtxVa + 0x98]
  const uint8_t jump_back[] = {0xFF, 0x24, 0x25, 0x98, 0x00, 0x00, 0x30};
  uint64_t entry = kCodeVa;
  if (!input.compat32) {
    std::memcpy(code + input.code.size(), jump_back, sizeof(jump_back));
  } else {
    // 32-bit sequence, then "jmp far [abs kCtxVa + 0xC8]" back to 64-bit code that jumps
    // to the exit trampoline; the entry is 64-bit code doing "jmp far [abs kCtxVa + 0xC0]".
    uint8_t* p = code + input.code.size();
    const uint8_t far_back[] = {0xFF, 0x2D, 0xC8, 0x00, 0x00, 0x30};
    std::memcpy(p, far_back, sizeof(far_back));
    p += sizeof(far_back);
    const uint64_t exit_thunk = kCodeVa + static_cast<uint64_t>(p - code);
    std::memcpy(p, jump_back, sizeof(jump_back));
    p += sizeof(jump_back);
    entry = kCodeVa + static_cast<uint64_t>(p - code);
    const uint8_t far_in[] = {0xFF, 0x2C, 0x25, 0xC0, 0x00, 0x00, 0x30};
    std::memcpy(p, far_in, sizeof(far_in));
    const uint32_t entry32 = static_cast<uint32_t>(kCodeVa),
                   exit32 = static_cast<uint32_t>(exit_thunk);
    std::memcpy(c_far_entry, &entry32, 4);
    std::memcpy(c_far_entry + 4, &kUser32Cs, 2);
    std::memcpy(c_far_exit, &exit32, 4);
    std::memcpy(c_far_exit + 4, &kUser64Cs, 2);
  }

  NativeCtx* c = Ctx();
  std::memset(c, 0, sizeof(NativeCtx));
  std::memcpy(c->in_gpr, input.init.gpr, sizeof(c->in_gpr));
  c->in_rflags = (input.init.rflags & rflags::kHostLive) | rflags::kFixed1;
  c->in_gsbase = input.init.gs_base;
  c->entry = entry;
  std::memcpy(c->far_entry, c_far_entry, 8);
  std::memcpy(c->far_exit, c_far_exit, 8);
  c->exit_addr = reinterpret_cast<uint64_t>(&rove_diff_native_exit);
  c->rfbm = layout.guest_xcr0;
  c->mxcsr_init = 0x1F80;
  std::memcpy(c->in_xsave, input.init.xsave, sizeof(c->in_xsave));
  // XRSTOR faults on a malformed header; keep XCOMP_BV and the reserved header bytes clear.
  std::memset(c->in_xsave + testing::kXcompBvOffset, 0, 64 - 8);

  const std::string worker_error = NativeWorker().Call(60000);
  if (!worker_error.empty()) {
    out.failure = "native worker: " + worker_error;
    return out;
  }
  switch (c->status) {
    case kStatusCompleted:
      out.state.rip = kCodeVa + input.code.size();
      break;
    case kStatusFault:
      out.exception = true;
      out.vector = static_cast<uint8_t>(c->trapno);
      out.error_code = c->err;
      out.cr2 = c->cr2;
      out.state.rip = c->out_rip;
      // A fault outside the code region is only expected as an instruction fetch from the
      // (no-execute) data region.
      if ((c->out_rip < kCodeVa || c->out_rip >= kCodeVa + kCodeSize) &&
          (c->out_rip < kDataVa || c->out_rip >= kDataVa + kDataSize)) {
        out.failure = fmt::format("native fault outside the code region (signal {}, rip {:#x})",
                                  c->signo, c->out_rip);
      }
      break;
    default:
      out.failure = "native child exited without reporting";
      return out;
  }
  std::memcpy(out.state.gpr, c->out_gpr, sizeof(out.state.gpr));
  out.state.rflags = c->out_rflags;
  out.state.gs_base = c->out_gsbase;
  std::memcpy(out.state.xsave, c->out_xsave, sizeof(out.state.xsave));
  out.data.assign(data, data + kDataSize);
  return out;
}

}  // namespace rove::difftest
