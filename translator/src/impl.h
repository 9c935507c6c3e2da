// Internal structure of the BT vCPU shared by the translator's source files.
#pragma once

#include <Zydis/Zydis.h>

#include <array>
#include <atomic>
#include <bitset>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "context.h"
#include "rove/mmu/guest_memory.h"
#include "rove/mmu/page_walker.h"
#include "rove/translator/bt_cpu.h"

namespace rove::bt {

// What a block was translated for; part of the lookup key.
struct TransMode {
  uint8_t code_bits = 64;   // 16, 32, 64
  uint8_t stack_bits = 64;  // 16, 32, 64
  uint8_t view = kTlbSupervisor;
  bool add_seg_base = false;  // DS/ES/SS bases must be added (real mode, non-flat segments)
  bool single_step = false;
  // CLI/STI/PUSHF run inline: not virtual-8086 mode and CPL <= IOPL (or real mode). IOPL and
  // NT are then part of the mode, so inline CLI/STI can store byte 1 of RFLAGS as a constant.
  bool sys_inline = false;
  uint8_t iopl = 0;
  bool nt = false;
  // 16/32-bit code with a segment whose limit is not 4 GiB (or real mode): every access checks
  // its offset against ctx.seg_limit.
  bool limit_checks = false;
  // Segments (bit per SegReg, never CS) whose accesses go to the emulator: unusable, expand-down,
  // read-only or code segments in protected mode, where the fault or rule is the emulator's.
  uint8_t emulated_segs = 0;
  bool cpl0 = false;  // SWAPGS runs inline (64-bit code at CPL 0)

  uint32_t Pack() const {
    auto size = [](uint8_t bits) -> uint32_t { return bits >> 5; };  // 16, 32, 64 -> 0, 1, 2
    const uint32_t segs = (emulated_segs & 1u) | ((emulated_segs >> 2) << 1);  // ES, SS..GS
    return size(code_bits) | (size(stack_bits) << 2) | (view << 4) | (add_seg_base << 6) |
           (single_step << 7) | (sys_inline << 8) | (iopl << 9) | (nt << 11) |
           (limit_checks << 12) | (segs << 13) | (cpl0 << 18);
  }
};

// Maps a host code range of a block back to the guest instruction it came from.
struct InsnMapEntry {
  uint32_t host_offset;  // start of the host code for this guest instruction
  uint64_t guest_rip;    // the instruction's RIP (offset in CS)
  uint64_t next_rip;     // RIP after it
  // Registers whose guest value is in ctx.spill[reg] (not in the register) from host_offset on:
  // scratch registers in use by the translation of this instruction, and dead registers that
  // an earlier instruction used as scratch and no instruction has rewritten yet.
  uint16_t saved_regs;
  // The guest RFLAGS were pushed on the host stack (at host RSP) before a flag-clobbering
  // soft-TLB check; the host RFLAGS do not hold the guest's arithmetic flags.
  bool flags_on_stack;
};

// Which elements of a masked vector memory operand are accessed (masked-off elements neither
// fault nor touch memory). Element i of the memory operand is accessed when:
//   kOpmask: a bit j < controls with j % elements == i is set in k[reg] (1:1 when controls ==
//            elements, one element for a broadcast or a scalar, repeated tuples otherwise);
//   kOpmaskPacked (VPEXPAND/VPCOMPRESS): i < popcount(k[reg] & low `controls` bits);
//   kVectorSign (VPMASKMOV/VMASKMOV): the sign bit of element i of vector register `reg`.
struct MaskedAccess {
  enum Kind : uint8_t { kNone, kOpmask, kOpmaskPacked, kVectorSign };
  Kind kind = kNone;
  uint8_t reg = 0;
  uint8_t element_bytes = 0;
  uint8_t elements = 0;
  uint8_t controls = 0;
};

// A call into the memory slow path, identified by its return address.
struct MemSiteInfo {
  uint32_t return_offset;
  uint32_t size;
  bool write;
  bool post;      // the call after the access (write-back / SMC check)
  bool stack;     // through SS (stack operations, RSP/RBP-based operands): #SS instead of #GP
  uint8_t align;  // the operand must be aligned to this many bytes (#GP otherwise), or 0
  MaskedAccess masked;
  uint8_t view;
  uint64_t guest_rip;
  uint64_t next_rip;
};

struct Block {
  uint64_t linear = 0;  // linear address of the first instruction
  uint64_t rip = 0;     // RIP of the first instruction
  uint64_t cs_base = 0;
  uint32_t mode = 0;
  uint64_t cs_limit = 0;  // BlockKeyCsLimit of the translation
  uint64_t phys_page[2] = {~0ull, ~0ull};
  uint8_t* host = nullptr;
  uint32_t host_size = 0;
  uint32_t guest_instructions = 0;
  uint32_t unchecked_offset = 0;  // entry after the exit-request check (forward chaining)
  bool valid = true;
  bool chainable_target = true;        // lies within one guest page
  bool emulate_only = false;           // first instruction needs the emulator
  std::vector<InsnMapEntry> insns;     // sorted by host_offset
  std::vector<MemSiteInfo> mem_sites;  // sorted by return_offset
};

struct BlockKey {
  uint64_t linear;
  uint64_t cs_base;
  uint64_t phys;
  uint32_t mode;
  uint64_t cs_limit;  // BlockKeyCsLimit
  bool operator==(const BlockKey&) const = default;
};

// The CS limit when the translation depends on it (16/32-bit code with limit checks: branches
// that may leave the limit and instructions reaching past it go to the emulator), else 0. A
// far transfer can change the limit and keep the base and mode, so it is part of the key.
inline uint64_t BlockKeyCsLimit(const TransMode& mode, uint64_t cs_limit) {
  return mode.limit_checks && mode.code_bits != 64 ? cs_limit : 0;
}

struct BlockKeyHash {
  size_t operator()(const BlockKey& k) const {
    uint64_t h = k.linear * 0x9E3779B97F4A7C15ull;
    h ^= (k.phys + k.mode) * 0xC2B2AE3D27D4EB4Full;
    h ^= (k.cs_base + k.cs_limit) * 0x165667B19E3779F9ull;
    return static_cast<size_t>(h ^ (h >> 29));
  }
};

// Entry points of the shared runtime code placed at the start of the code cache.
struct Runtime {
  uint8_t* enter = nullptr;             // void enter(void* host_code)
  uint8_t* exit_common = nullptr;       // rax saved in tmp_rax, exit_reason + state.rip set
  uint8_t* exit_from_signal = nullptr;  // like exit_common but rax still live
  uint8_t* exit_lookup_miss = nullptr;  // jump-cache miss; target in ctx.lookup_rip
  uint8_t* thunk_mem_slow = nullptr;    // call: C++ slow path for a memory access
  uint8_t* thunk_mem_post = nullptr;    // call: C++ after a slow-path write
  size_t size = 0;
};

}  // namespace rove::bt

namespace rove {

struct BtCpu::Impl {
  Impl(GuestMemory& memory, CpuState& state, BtOptions options);
  ~Impl();

  GuestMemory& memory;
  CpuState& state;
  BtOptions options;
  std::FILE* perf_map = nullptr;  // BtOptions::perf_map_path, opened for appending
  BtStats stats;

  std::unique_ptr<bt::VcpuContext> ctx;
  uint8_t* cache = nullptr;
  size_t cache_size = 0;
  size_t cache_used = 0;  // bytes used, runtime included
  bt::Runtime runtime;

  std::unordered_map<bt::BlockKey, bt::Block*, bt::BlockKeyHash> blocks;
  std::map<uintptr_t, bt::Block*> blocks_by_host;  // host start -> block (for faults)
  std::vector<std::unique_ptr<bt::Block>> block_storage;
  std::unordered_map<uint64_t, std::vector<bt::Block*>> blocks_by_page;  // phys page -> blocks
  // Dispatcher caches (Run): instruction-fetch translations (linear page + user bit -> physical
  // page; dropped with the soft TLB, like a hardware ITLB) and recently looked-up blocks
  // (checked against the key and Block::valid; cleared when the cache is flushed).
  struct FetchEntry {
    uint64_t tag = ~0ull;  // linear page | user
    uint64_t phys_page = 0;
    bool global = false;  // the translation survives CR3 writes
  };
  static constexpr size_t kFetchEntries = 256;
  std::array<FetchEntry, kFetchEntries> fetch_cache;
  struct LookupEntry {
    bt::BlockKey key{};
    bt::Block* block = nullptr;
  };
  static constexpr size_t kLookupEntries = 2048;
  std::array<LookupEntry, kLookupEntries> lookup_cache;
  // Linear code pages (hashed) that jump-cache entries may point into: INVLPG of another page
  // leaves the jump cache alone.
  std::bitset<4096> jump_cache_pages;
  static size_t JumpCachePageBit(uint64_t linear) {
    return static_cast<size_t>(((linear >> 12) * 0x9E3779B97F4A7C15ull) >> 52);
  }
  // The supervisor jump caches (with and without SMAP's AC) hold only blocks fetched through
  // global translations (or with paging off): then a CR3 write, which keeps global
  // translations, keeps them too.
  bool supervisor_jc_all_global = true;
  void FlushFetchCache(bool include_global = true) {
    for (auto& e : fetch_cache)
      if (include_global || !e.global) e.tag = ~0ull;
  }
  static size_t LookupIndex(uint64_t linear) {
    return static_cast<size_t>((linear ^ (linear >> 11)) & (kLookupEntries - 1));
  }
  bt::Block* current_block = nullptr;  // block whose code is running (for SMC)
  bool current_block_invalidated = false;

  ZydisDecoder decoder64, decoder32, decoder16;

  // Multi-vCPU code coherence (see BtCpu::SetPeers).
  BtCpu* self = nullptr;
  std::vector<BtCpu*> peers;
  std::thread::id owner_thread;
  std::mutex remote_mu;
  std::vector<uint64_t> remote_writes;      // code pages written by other threads
  std::vector<uint64_t> remote_translated;  // pages peers translated: drop our write entries
  std::atomic<bool> remote_pending{false};
  void DrainRemote();
  // Records a page as holding translations: marks it in GuestMemory, stops writes to it going
  // through this vCPU's TLB and tells the peers to do the same.
  void MarkCode(uint64_t phys_page);
  // Makes a freshly translated block findable (lookup, fault mapping, SMC invalidation).
  void RegisterBlock(const bt::BlockKey& key, bt::Block* block);

  // bt_cpu.cpp
  bt::TransMode CurrentMode() const;
  PagingRegs Paging() const;
  void FlushCache();
  void InvalidatePage(uint64_t phys_page);
  void FlushJumpCache();
  void FlushJumpCacheView(int view);  // one TlbView's jump cache
  void FlushSoftTlb(bool include_global);
  void InvalidateTlbEntry(TlbSet& set, uint64_t idx);
  void FlushSoftTlbForCodePage(uint64_t phys_page);
  bt::Block* FindBlockByHost(uintptr_t pc);
  uint64_t MemSlowPath(uintptr_t return_address);
  // Bit b set: byte b of a masked access is accessed (from the guest's k or vector registers,
  // in CpuState::xsave while the slow path runs).
  uint64_t MaskedBytes(const bt::MaskedAccess& m) const;
  uint32_t xsave_ymm_hi_offset = 0;  // standard-format offsets of the AVX and opmask components
  uint32_t xsave_opmask_offset = 0;
  uint64_t MemPostPath(uintptr_t return_address);

  // runtime.cpp
  void EmitRuntime();

  // block_translator.cpp: translates the block at state.rip for `mode`; returns nullptr and
  // fills `fault` when the first instruction cannot be fetched.
  bt::Block* Translate(const bt::TransMode& mode, uint64_t linear, uint64_t phys,
                       GuestException* fault);
  // Copies finished code into the cache; returns nullptr when the cache is full.
  uint8_t* AllocateCode(size_t bytes);
};

}  // namespace rove
