// Shared runtime code at the start of the translation cache: entering translated code from
// C++, leaving it, and the thunks through which translated code calls C++ helpers.
//
// Register convention inside translated code: guest GPR n lives in host GPR n, except RSP:
// host RSP is the host stack of Run() and the guest RSP is kept in ctx.guest_rsp. Guest
// arithmetic flags and DF live in host RFLAGS. Guest vector/x87 state lives in the host
// registers; it is saved into CpuState::xsave (XSAVEOPT: only what changed since the last
// XRSTOR from that area, which every entry does) whenever C++ code runs.
#include <asmjit/x86.h>

#include <cstring>
#include <stdexcept>

#include "emit.h"
#include "impl.h"

namespace rove {

using namespace asmjit;
using bt::Gs;

namespace {

constexpr size_t kGprOffset = offsetof(CpuState, gpr);
constexpr size_t kRflagsOffset = offsetof(CpuState, rflags);
constexpr size_t kXsaveOffset = offsetof(CpuState, xsave);

x86::Mem StateGpr(const x86::Gp& base, unsigned reg) {
  return x86::qword_ptr(base, static_cast<int32_t>(kGprOffset + 8 * reg));
}

// Saves all guest GPRs (rax already in ctx.tmp_rax), the live flags and the vector state into
// CpuState. Clobbers rax, rcx, rdx. Host stack: must be at the translated-code level + `extra`.
void EmitSaveGuest(x86::Assembler& a) {
  a.pushfq();
  a.mov(x86::rax, Gs(ROVE_CTX(state)));
  for (unsigned r = 1; r < 16; ++r) {
    if (r == kRsp) continue;
    a.mov(StateGpr(x86::rax, r), bt::Reg64(r));
  }
  a.mov(x86::rcx, Gs(ROVE_CTX(tmp_rax)));
  a.mov(StateGpr(x86::rax, kRax), x86::rcx);
  a.mov(x86::rcx, Gs(ROVE_CTX(guest_rsp)));
  a.mov(StateGpr(x86::rax, kRsp), x86::rcx);
  a.pop(x86::rcx);
  a.mov(x86::rdx, x86::qword_ptr(x86::rax, kRflagsOffset));
  a.and_(x86::rcx, static_cast<int32_t>(rflags::kHostLive));
  a.mov(x86::rsi, static_cast<int64_t>(~rflags::kHostLive));
  a.and_(x86::rdx, x86::rsi);
  a.or_(x86::rdx, x86::rcx);
  a.mov(x86::qword_ptr(x86::rax, kRflagsOffset), x86::rdx);
  a.cld();
  a.mov(x86::rcx, x86::rax);
  a.mov(x86::eax, Gs(ROVE_CTX(xsave_mask), 4));
  a.xor_(x86::edx, x86::edx);
  a.xsaveopt64(x86::ptr(x86::rcx, kXsaveOffset));
}

// Inverse of EmitSaveGuest: vector state, flags, GPRs (guest rsp stays in ctx.guest_rsp).
void EmitRestoreGuest(x86::Assembler& a) {
  a.mov(x86::rcx, Gs(ROVE_CTX(state)));
  a.mov(x86::eax, Gs(ROVE_CTX(xsave_mask), 4));
  a.xor_(x86::edx, x86::edx);
  a.xrstor64(x86::ptr(x86::rcx, kXsaveOffset));
  a.mov(x86::rax, x86::rcx);
  a.mov(x86::rcx, x86::qword_ptr(x86::rax, kRflagsOffset));
  a.and_(x86::rcx, static_cast<int32_t>(rflags::kHostLive));
  a.or_(x86::rcx, 2);
  a.push(x86::rcx);
  a.popfq();
  for (unsigned r = 1; r < 16; ++r) {
    if (r == kRsp) continue;
    a.mov(bt::Reg64(r), StateGpr(x86::rax, r));
  }
  a.mov(x86::rax, StateGpr(x86::rax, kRax));
}

void EmitPopCalleeSavedAndReturn(x86::Assembler& a) {
  a.mov(x86::rsp, Gs(ROVE_CTX(host_rsp)));
  a.pop(x86::r15);
  a.pop(x86::r14);
  a.pop(x86::r13);
  a.pop(x86::r12);
  a.pop(x86::rbp);
  a.pop(x86::rbx);
  a.ret();
}

// A thunk called from translated code: saves the guest, calls `fn(impl, return_address)` on
// an aligned host stack, then either restores the guest and returns (fn returned 0) or leaves
// translated code altogether (fn returned non-zero; it has set exit_reason and state.rip).
void EmitThunk(x86::Assembler& a, void* impl, uint64_t (*fn)(void*, uintptr_t)) {
  a.mov(Gs(ROVE_CTX(tmp_rax)), x86::rax);
  EmitSaveGuest(a);
  a.mov(x86::rbx, x86::rsp);
  a.and_(x86::rsp, -16);
  a.mov(x86::rdi, reinterpret_cast<uint64_t>(impl));
  a.mov(x86::rsi, x86::qword_ptr(x86::rbx));  // return address into the block
  a.mov(x86::rax, reinterpret_cast<uint64_t>(fn));
  a.call(x86::rax);
  a.mov(x86::rsp, x86::rbx);
  Label leave = a.newLabel();
  a.test(x86::rax, x86::rax);
  a.jnz(leave);
  EmitRestoreGuest(a);
  a.ret();
  a.bind(leave);
  EmitPopCalleeSavedAndReturn(a);
}

uint64_t MemSlowTrampoline(void* impl, uintptr_t ret) {
  return static_cast<BtCpu::Impl*>(impl)->MemSlowPath(ret);
}
uint64_t MemPostTrampoline(void* impl, uintptr_t ret) {
  return static_cast<BtCpu::Impl*>(impl)->MemPostPath(ret);
}

}  // namespace

void BtCpu::Impl::EmitRuntime() {
  CodeHolder code;
  code.init(Environment::host(), reinterpret_cast<uint64_t>(cache));
  x86::Assembler a(&code);

  // void enter(void* host_code): called from C++ with GS already pointing at the context.
  Label enter = a.newLabel();
  a.bind(enter);
  a.push(x86::rbx);
  a.push(x86::rbp);
  a.push(x86::r12);
  a.push(x86::r13);
  a.push(x86::r14);
  a.push(x86::r15);
  a.mov(Gs(ROVE_CTX(host_rsp)), x86::rsp);
  a.mov(Gs(ROVE_CTX(jump_target)), x86::rdi);
  EmitRestoreGuest(a);
  a.jmp(Gs(ROVE_CTX(jump_target)));

  // Exit with rax live (used by the signal handler, which redirects a faulting thread here).
  Label exit_from_signal = a.newLabel();
  a.bind(exit_from_signal);
  a.mov(Gs(ROVE_CTX(tmp_rax)), x86::rax);
  // Common exit: guest rax already in tmp_rax.
  Label exit_common = a.newLabel();
  a.bind(exit_common);
  EmitSaveGuest(a);
  EmitPopCalleeSavedAndReturn(a);

  // Jump-cache miss (or a hit on an empty entry): target RIP in ctx.lookup_rip.
  Label lookup_miss = a.newLabel();
  a.bind(lookup_miss);
  a.mov(Gs(ROVE_CTX(tmp_rax)), x86::rax);
  a.mov(x86::rax, Gs(ROVE_CTX(lookup_rip)));
  a.mov(Gs(ROVE_CTX(jump_target)), x86::rax);
  a.mov(Gs(ROVE_CTX(exit_reason)), static_cast<int32_t>(bt::kExitLookup));
  a.jmp(exit_common);

  Label mem_slow = a.newLabel();
  a.bind(mem_slow);
  EmitThunk(a, this, &MemSlowTrampoline);
  Label mem_post = a.newLabel();
  a.bind(mem_post);
  EmitThunk(a, this, &MemPostTrampoline);

  code.flatten();
  if (code.resolveUnresolvedLinks() != kErrorOk) throw std::runtime_error("runtime link failed");
  size_t size = code.codeSize();
  if (size > cache_size) throw std::runtime_error("code cache too small");
  code.copyFlattenedData(cache, cache_size);
  runtime.enter = cache + code.labelOffsetFromBase(enter);
  runtime.exit_common = cache + code.labelOffsetFromBase(exit_common);
  runtime.exit_from_signal = cache + code.labelOffsetFromBase(exit_from_signal);
  runtime.exit_lookup_miss = cache + code.labelOffsetFromBase(lookup_miss);
  runtime.thunk_mem_slow = cache + code.labelOffsetFromBase(mem_slow);
  runtime.thunk_mem_post = cache + code.labelOffsetFromBase(mem_post);
  runtime.size = (size + 63) & ~size_t{63};
  cache_used = runtime.size;
}

}  // namespace rove
