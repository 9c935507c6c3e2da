// The per-vCPU context that translated code reaches through the GS segment base. Only the
// translator knows this layout; offsets are taken with offsetof when code is emitted.
#pragma once

#include <cstddef>
#include <cstdint>

#include "rove/mmu/soft_tlb.h"
#include "rove/translator/cpu_state.h"
#include "rove/translator/exit.h"

namespace rove::bt {

// Indirect-branch lookup cache: per privilege view, direct-mapped by the low bits of the
// guest target. Entries hold the negated guest RIP so translated code can test for a hit
// with LEA + JRCXZ and leave RFLAGS untouched.
inline constexpr int kJumpCacheBits = 12;
inline constexpr uint64_t kJumpCacheEntries = 1ull << kJumpCacheBits;

struct JumpCache {
  int64_t neg_rip[kJumpCacheEntries];
  uint64_t host[kJumpCacheEntries];
};

// Internal exit reasons written by translated code into VcpuContext::exit_reason.
enum InternalExit : uint64_t {
  kExitEmulate = 1,    // state.rip = instruction to emulate
  kExitException = 2,  // pending_exception filled; state.rip = faulting instruction
  kExitRequest = 3,    // exit_request seen; state.rip = next instruction
  kExitLookup = 4,     // state.rip = branch target not found in the jump cache
  kExitChain = 5,      // state.rip = direct branch target; chain_site = rel32 to patch
  // Like kExitChain for a forward branch (target RIP > branch RIP): chained to the target's
  // unchecked entry, after its exit-request check. Every cycle of chained blocks contains a
  // backward branch (chaining stays within one page) or a jump-cache jump, both of which go to
  // a checked entry, so an exit request still stops a chained loop within one iteration.
  kExitChainForward = 6,
};

// One home slot per GPR: translated code saves a guest register there before using it as
// scratch; the side tables say which slots hold guest values at each point.
inline constexpr int kSpillSlots = 16;
inline constexpr size_t kBounceBytes = 8192;
inline constexpr uint64_t kBounceSkip = ~0ull;

// Address groups a counted loop's fast version may keep in host registers.
inline constexpr int kLoopGroups = 4;

struct alignas(64) VcpuContext {
  // --- touched by translated code on hot paths ---
  uint64_t guest_rsp = 0;
  uint64_t spill[kSpillSlots] = {};
  uint64_t spill_rcx = 0;
  uint64_t tmp_rax = 0;
  volatile uint64_t exit_request = 0;
  uint64_t host_rsp = 0;
  uint64_t exit_reason = 0;
  uint64_t chain_site = 0;
  uint64_t jump_target = 0;
  uint64_t lookup_rip = 0;
  uint64_t seg_base[kSegCount] = {};
  uint64_t seg_limit[kSegCount] = {};  // byte-granular, for TransMode::limit_checks
  // IA32_KERNEL_GS_BASE while translated code runs (inline SWAPGS swaps it with seg_base[GS];
  // BtCpu::Run copies both back to CpuState).
  uint64_t kernel_gs_base = 0;
  uint64_t tlb_index_mask = kTlbIndexMask;         // PEXT mask: soft-TLB index bits
  uint64_t jc_index_mask = kJumpCacheEntries - 1;  // PEXT mask: low bits of the target
  uint64_t page_hi_mask = ~(uint64_t{4096} - 1);   // PEXT mask: nonzero iff off-page
  uint64_t host_live_mask = rflags::kHostLive;     // PEXT/PDEP mask: flags in host RFLAGS
  uint64_t bit_offset_mask[3] = {15, 31, 63};      // PEXT masks: BT* offset modulo 16/32/64
  // Canonical check of a 64-bit branch target (BlockEmitter::EmitCanonicalCheck): PEXT of the
  // bits that must equal the sign bit (63..47, or 63..56 with LA57), then PDEP of (that + 1)
  // into bit 0 and bits 47..62, dropping the carry: 0 or 1 for a canonical target, else an
  // address that faults on the host. Set by BtCpu::Run from CR4.LA57.
  uint64_t canon_sign_mask = 0xFFFF800000000000ull;
  uint64_t canon_fault_mask = 0x7FFF800000000001ull;
  // The guest RFLAGS bits that do not live in the host RFLAGS, as PUSHF stores them (fixed bit
  // 1 set, RF and VM clear). Inline CLI/STI write IF here (byte 1); BtCpu::Run copies it from
  // and IF back to CpuState::rflags around translated code.
  uint64_t sys_rflags = 0;
  // Nonzero when the vCPU has an interrupt waiting for IF (BtCpu::SetInterruptPending): an
  // inline STI then leaves translated code with `sti_shadow` set so the interrupt is taken
  // after the instruction following STI.
  uint64_t irq_pending = 0;
  uint64_t sti_shadow = 0;
  // XSAVE components guest state may use: x87, SSE, AVX, AVX-512 (never AMX or PKRU, whose
  // state is not in CpuState::xsave), intersected with the host XCR0.
  uint64_t xsave_mask = 0xE7;
  CpuState* state = nullptr;
  void* owner = nullptr;  // BtCpu::Impl*

  // --- memory slow path arguments ---
  uint64_t mem_va = 0;
  uint64_t mem_host = 0;
  // A bounced access (MMIO, page-crossing, or masked with masked-off bytes on a page that is
  // not accessed): up to two physical pieces; kBounceSkip marks a piece that is not accessed.
  uint64_t bounce_phys[2] = {};
  uint32_t bounce_len[2] = {};
  bool bounce_active = false;

  GuestException pending_exception;

  // Counted loops (BlockEmitter loop versioning): the latch limit of the fast version and, per
  // hoisted address group, the host base register's value (reloaded after a slow path).
  uint64_t loop_limit = 0;
  uint64_t loop_fast_entries = 0;
  uint64_t loop_mxcsr = 0;  // MXCSR stored by the header (STMXCSR needs memory)
  uint64_t loop_base[kLoopGroups] = {};

  alignas(64) uint8_t bounce[kBounceBytes] = {};
  // One per TlbView: a jump cache maps a RIP to a block translated for that view only (the SMAP
  // AC view has its own, so kernel code after CLAC never reaches a block translated for STAC).
  JumpCache jump_cache[kTlbViewCount];
  SoftTlb tlb;
};

}  // namespace rove::bt
