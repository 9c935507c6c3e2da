// The BT vCPU core: block lookup and chaining, the soft-TLB slow path, self-modifying-code
// invalidation, and mapping host faults in translated code back to precise guest exceptions.
#include <cpuid.h>
#include <immintrin.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "impl.h"
#include "rove/mmu/page_walker.h"

namespace rove {

namespace {

thread_local BtCpu::Impl* t_current = nullptr;
// Empty soft-TLB entries point here (see GuardPage).
uint8_t* g_guard_page = nullptr;
struct sigaction g_previous[65];
std::once_flag g_signals_once;

void FaultHandler(int sig, siginfo_t* info, void* uc_void);

void InstallSignalHandlers() {
  std::call_once(g_signals_once, [] {
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP}) {
      struct sigaction sa {};
      sa.sa_sigaction = FaultHandler;
      sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
      sigemptyset(&sa.sa_mask);
      sigaction(sig, &sa, &g_previous[sig]);
    }
  });
}

void ChainToPrevious(int sig, siginfo_t* info, void* uc) {
  const struct sigaction& prev = g_previous[sig];
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction) {
      prev.sa_sigaction(sig, info, uc);
      return;
    }
  } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN && prev.sa_handler) {
    prev.sa_handler(sig);
    return;
  }
  // Default action: restore it and return; the faulting instruction re-executes and the
  // process ends with the original signal.
  signal(sig, SIG_DFL);
}

// Whether the memory accesses of the instruction at `rip` in `block` are all stack accesses
// (MemSiteInfo::stack).
bool StackAccessAt(const bt::Block& block, uint64_t rip) {
  bool any = false;
  for (const auto& site : block.mem_sites) {
    if (site.guest_rip != rip || site.post) continue;
    if (!site.stack) return false;
    any = true;
  }
  return any;
}

void FaultHandler(int sig, siginfo_t* info, void* uc_void) {
  auto* uc = static_cast<ucontext_t*>(uc_void);
  BtCpu::Impl* impl = t_current;
  uintptr_t pc = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
  if (!impl || pc < reinterpret_cast<uintptr_t>(impl->cache) + impl->runtime.size ||
      pc >= reinterpret_cast<uintptr_t>(impl->cache) + impl->cache_used) {
    ChainToPrevious(sig, info, uc_void);
    return;
  }
  bt::Block* block = impl->FindBlockByHost(pc);
  GuestException ex;
  switch (sig) {
    case SIGFPE:
      // The kernel reports the vector: #MF (x87, pending at FWAIT or the next x87
      // instruction) and #XM (SSE/AVX) both arrive as SIGFPE with floating-point codes. A guest
      // with CR0.NE=0 would want FERR#/IRQ 13 instead of #MF; that legacy path is not modelled.
      if (info->si_code == FPE_INTDIV || info->si_code == FPE_INTOVF)
        ex.vector = kDe;
      else if (uc->uc_mcontext.gregs[REG_TRAPNO] == kMf)
        ex.vector = kMf;
      else
        ex.vector = kXm;
      break;
    case SIGILL:
      ex.vector = kUd;
      break;
    case SIGTRAP:
      ex.vector = kDb;
      break;
    default:
      ex.vector = kGp;
      ex.has_error_code = true;
      ex.error_code = 0;
      break;
  }
  static const int kGregOf[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP,
                                  REG_RSI, REG_RDI, REG_R8,  REG_R9,  REG_R10, REG_R11,
                                  REG_R12, REG_R13, REG_R14, REG_R15};
  bt::VcpuContext* ctx = impl->ctx.get();
  uint64_t guest_rip = impl->state.rip;
  if (block) {
    uint32_t off = static_cast<uint32_t>(pc - reinterpret_cast<uintptr_t>(block->host));
    auto it =
        std::upper_bound(block->insns.begin(), block->insns.end(), off,
                         [](uint32_t o, const bt::InsnMapEntry& e) { return o < e.host_offset; });
    if (it != block->insns.begin()) {
      --it;
      guest_rip = it->guest_rip;
      for (int reg = 0; reg < 16; ++reg) {
        if (reg != kRsp && (it->saved_regs & (1u << reg)))
          uc->uc_mcontext.gregs[kGregOf[reg]] = static_cast<greg_t>(ctx->spill[reg]);
      }
      if (sig == SIGSEGV && g_guard_page && info->si_addr >= g_guard_page &&
          info->si_addr < g_guard_page + kPageSize && StackAccessAt(*block, it->guest_rip)) {
        // A forged soft-TLB match on an empty entry, whose tag is a non-canonical page: the
        // guest address was non-canonical, and a stack access raises #SS for it.
        ex.vector = kSsFault;
      }
      if (it->flags_on_stack) {
        // The guest flags were pushed before a flag-clobbering soft-TLB check.
        const uint64_t pushed = *reinterpret_cast<const uint64_t*>(uc->uc_mcontext.gregs[REG_RSP]);
        uint64_t efl = static_cast<uint64_t>(uc->uc_mcontext.gregs[REG_EFL]);
        efl = (efl & ~rflags::kHostLive) | (pushed & rflags::kHostLive);
        uc->uc_mcontext.gregs[REG_EFL] = static_cast<greg_t>(efl);
      }
    }
  }
  impl->state.rip = guest_rip;
  ctx->pending_exception = ex;
  ctx->exit_reason = bt::kExitException;
  uc->uc_mcontext.gregs[REG_RIP] = reinterpret_cast<greg_t>(impl->runtime.exit_from_signal);
}

std::once_flag g_guard_once;

uint8_t* GuardPage() {
  std::call_once(g_guard_once, [] {
    void* p = mmap(nullptr, kPageSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("cannot map the TLB guard page");
    g_guard_page = static_cast<uint8_t*>(p);
  });
  return g_guard_page;
}

using EnterFn = void (*)(void* host_code);

}  // namespace

BtCpu::Impl::Impl(GuestMemory& memory_in, CpuState& state_in, BtOptions options_in)
    : memory(memory_in), state(state_in), options(options_in) {
  InstallSignalHandlers();
  ctx = std::make_unique<bt::VcpuContext>();
  ctx->state = &state;
  ctx->xsave_mask = 0xE7 & _xgetbv(0);
  ctx->owner = this;
  unsigned eax, ebx, ecx, edx;
  if ((ctx->xsave_mask & 0x04) && __get_cpuid_count(0xD, 2, &eax, &ebx, &ecx, &edx))
    xsave_ymm_hi_offset = ebx;
  if ((ctx->xsave_mask & 0x20) && __get_cpuid_count(0xD, 5, &eax, &ebx, &ecx, &edx))
    xsave_opmask_offset = ebx;
  // ROVE_COUNTED_LOOPS=0 turns counted-loop versioning off, for comparisons.
  if (const char* loops = std::getenv("ROVE_COUNTED_LOOPS"); loops && std::string(loops) == "0")
    options.counted_loops = false;
  if (options.perf_map_path.empty()) {
    const char* env = std::getenv("ROVE_PERF_MAP");
    if (env && std::string(env) == "1")
      options.perf_map_path = "/tmp/perf-" + std::to_string(getpid()) + ".map";
  }
  if (!options.perf_map_path.empty()) {
    perf_map = std::fopen(options.perf_map_path.c_str(), "a");
    if (!perf_map) throw std::runtime_error("cannot open " + options.perf_map_path);
  }
  cache_size = options.code_cache_bytes;
  void* p = mmap(nullptr, cache_size, PROT_READ | PROT_WRITE | PROT_EXEC,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    throw std::runtime_error(std::string("cannot map the translation cache: ") + strerror(errno));
  cache = static_cast<uint8_t*>(p);
  ZydisDecoderInit(&decoder64, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  ZydisDecoderInit(&decoder32, ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32);
  ZydisDecoderInit(&decoder16, ZYDIS_MACHINE_MODE_LEGACY_16, ZYDIS_STACK_WIDTH_16);
  EmitRuntime();
  FlushSoftTlb(true);
  FlushJumpCache();
}

BtCpu::Impl::~Impl() {
  if (perf_map) std::fclose(perf_map);
  if (cache) munmap(cache, cache_size);
}

uint8_t* BtCpu::Impl::AllocateCode(size_t bytes) {
  size_t start = (cache_used + 15) & ~size_t{15};
  if (start + bytes > cache_size) return nullptr;
  cache_used = start + bytes;
  return cache + start;
}

PagingRegs BtCpu::Impl::Paging() const {
  PagingRegs r;
  r.cr0 = state.cr0;
  r.cr3 = state.cr3;
  r.cr4 = state.cr4;
  r.efer = state.efer;
  return r;
}

bt::TransMode BtCpu::Impl::CurrentMode() const {
  bt::TransMode m;
  m.code_bits = static_cast<uint8_t>(state.code_bits());
  m.stack_bits = static_cast<uint8_t>(state.stack_bits());
  if (state.cpl() == 3)
    m.view = kTlbUser;
  else if ((state.cr4 & cr4::kSmap) && (state.rflags & rflags::kAc))
    m.view = kTlbSupervisorAc;
  else
    m.view = kTlbSupervisor;
  if (!state.v86_mode() &&
      (!state.protected_mode() ||
       state.cpl() <= static_cast<int>((state.rflags & rflags::kIoplMask) >> rflags::kIoplShift))) {
    m.sys_inline = true;
    m.iopl = static_cast<uint8_t>((state.rflags & rflags::kIoplMask) >> rflags::kIoplShift);
    m.nt = (state.rflags & rflags::kNt) != 0;
  }
  m.cpl0 = m.code_bits == 64 && state.cpl() == 0;
  if (m.code_bits != 64) {
    if (!state.protected_mode() || state.v86_mode()) {
      m.add_seg_base = true;
    } else {
      m.add_seg_base = state.seg[kCs].base != 0 || state.seg[kDs].base != 0 ||
                       state.seg[kEs].base != 0 || state.seg[kSs].base != 0;
    }
    // Limits: real and virtual-8086 mode always (64 KiB, or what unreal mode left cached);
    // protected mode when a segment is not 4 GiB. Segments with other rules go to the emulator.
    const bool legacy_pm = state.protected_mode() && !state.v86_mode();
    m.limit_checks = !legacy_pm;
    for (int s = 0; s < kSegCount; ++s) {
      const SegmentCache& c = state.seg[s];
      if (c.limit != 0xFFFFFFFFu) m.limit_checks = true;
      if (!legacy_pm || s == kCs) continue;
      const bool code = (c.attr & seg_attr::kTypeCode) != 0;
      if ((c.attr & seg_attr::kUnusable) || code || !(c.attr & seg_attr::kTypeWritable) ||
          (c.attr & seg_attr::kTypeExpandDown))
        m.emulated_segs |= static_cast<uint8_t>(1u << s);
    }
  }
  return m;
}

void BtCpu::Impl::FlushJumpCacheView(int view) {
  bt::JumpCache& jc = ctx->jump_cache[view];
  for (uint64_t i = 0; i < bt::kJumpCacheEntries; ++i) {
    jc.neg_rip[i] = 0;  // matches only RIP 0, whose "hit" lands on the miss routine
    jc.host[i] = reinterpret_cast<uint64_t>(runtime.exit_lookup_miss);
  }
}

void BtCpu::Impl::FlushJumpCache() {
  jump_cache_pages.reset();
  for (int view = 0; view < kTlbViewCount; ++view) FlushJumpCacheView(view);
  supervisor_jc_all_global = true;
}

void BtCpu::Impl::InvalidateTlbEntry(TlbSet& set, uint64_t idx) {
  TlbEntry& e = set.entry[idx];
  const uint64_t guard = reinterpret_cast<uint64_t>(GuardPage());
  e.read_neg_tag = kTlbInvalidTag;
  e.write_neg_tag = kTlbInvalidTag;
  e.host_page = guard;
  e.addend = guard - kTlbInvalidTag;
  set.phys_page[idx] = ~0ull;
  set.global[idx] = 0;
}

void BtCpu::Impl::FlushSoftTlb(bool include_global) {
  FlushFetchCache(include_global);
  const uint64_t guard = reinterpret_cast<uint64_t>(GuardPage());
  for (auto& set : ctx->tlb.set) {
    for (uint64_t i = 0; i < kTlbEntries; ++i) {
      TlbEntry& e = set.entry[i];
      if (e.read_neg_tag == kTlbInvalidTag && e.write_neg_tag == kTlbInvalidTag &&
          e.host_page == guard)
        continue;  // already empty
      if (!include_global && set.global[i] && e.read_neg_tag != kTlbInvalidTag) continue;
      InvalidateTlbEntry(set, i);
    }
  }
}

void BtCpu::Impl::FlushSoftTlbForCodePage(uint64_t phys_page) {
  for (auto& set : ctx->tlb.set)
    for (uint64_t i = 0; i < kTlbEntries; ++i)
      if (set.phys_page[i] == phys_page) set.entry[i].write_neg_tag = kTlbInvalidTag;
}

bt::Block* BtCpu::Impl::FindBlockByHost(uintptr_t pc) {
  auto it = blocks_by_host.upper_bound(pc);
  if (it == blocks_by_host.begin()) return nullptr;
  --it;
  bt::Block* b = it->second;
  if (pc >= reinterpret_cast<uintptr_t>(b->host) + b->host_size) return nullptr;
  return b;
}

void BtCpu::Impl::InvalidatePage(uint64_t phys_page) {
  auto it = blocks_by_page.find(phys_page);
  if (it == blocks_by_page.end()) {
    memory.ClearCodePage(phys_page);
    return;
  }
  for (bt::Block* b : it->second) {
    if (!b->valid) continue;
    b->valid = false;
    if (b == current_block) current_block_invalidated = true;
    blocks.erase(bt::BlockKey{b->linear, b->cs_base, b->phys_page[0], b->mode, b->cs_limit});
    stats.smc_invalidations++;
  }
  blocks_by_page.erase(it);
  memory.ClearCodePage(phys_page);
  FlushJumpCache();
}

void BtCpu::Impl::FlushCache() {
  for (auto& [page, list] : blocks_by_page) memory.ClearCodePage(page);
  blocks.clear();
  blocks_by_page.clear();
  blocks_by_host.clear();
  block_storage.clear();
  for (auto& e : lookup_cache) e.block = nullptr;
  current_block = nullptr;
  cache_used = runtime.size;
  FlushJumpCache();
  stats.cache_flushes++;
}

namespace {

bool Canonical64(uint64_t v) {
  return static_cast<uint64_t>(static_cast<int64_t>(v << 16) >> 16) == v;
}

const bt::MemSiteInfo* FindSite(bt::Block* b, uintptr_t ret) {
  if (!b) return nullptr;
  uint32_t off = static_cast<uint32_t>(ret - reinterpret_cast<uintptr_t>(b->host));
  auto it =
      std::lower_bound(b->mem_sites.begin(), b->mem_sites.end(), off,
                       [](const bt::MemSiteInfo& s, uint32_t o) { return s.return_offset < o; });
  if (it == b->mem_sites.end() || it->return_offset != off) return nullptr;
  return &*it;
}

}  // namespace

uint64_t BtCpu::Impl::MemSlowPath(uintptr_t ret) {
  bt::Block* b = FindBlockByHost(ret);
  const bt::MemSiteInfo* site = FindSite(b, ret);
  if (!site) throw std::logic_error("translator: unknown memory slow-path call site");
  const uint64_t va = ctx->mem_va;
  const uint32_t size = site->size;
  const bool write = site->write;
  const bool user = site->view == kTlbUser;
  const bool ac = site->view == kTlbSupervisorAc;
  const PagingRegs regs = Paging();
  const bool paging = PagingEnabled(regs);
  const bool long_mode = state.long_mode_active();
  stats.tlb_misses++;

  auto raise = [&](GuestException ex) -> uint64_t {
    state.rip = site->guest_rip;
    ctx->pending_exception = ex;
    ctx->exit_reason = bt::kExitException;
    return 1;
  };

  // A segment-limit violation found by translated 16/32-bit code (EmitLimitPoison): bit 62 of
  // the linear address, with bit 61 for the stack segment.
  if (!state.code64() && (va >> 62)) {
    GuestException ex;
    ex.vector = (va >> 61) & 1 ? kSsFault : kGp;
    ex.has_error_code = true;
    return raise(ex);
  }
  const uint64_t last = va + size - 1;
  if (long_mode && state.code64() && (!Canonical64(va) || !Canonical64(last))) {
    GuestException ex;
    ex.vector = site->stack ? kSsFault : kGp;
    ex.has_error_code = true;
    return raise(ex);
  }
  // Alignment comes before paging (and a page-crossing or MMIO access runs on the aligned
  // bounce buffer, where the host instruction cannot see it).
  if (site->align && (va & (site->align - 1))) {
    GuestException ex;
    ex.vector = kGp;
    ex.has_error_code = true;
    return raise(ex);
  }
  const uint64_t lin_mask = long_mode ? ~0ull : 0xFFFFFFFFull;
  uint64_t pages[2] = {va & kPageMask & lin_mask, last & kPageMask & lin_mask};
  const int npages = pages[0] == pages[1] ? 1 : 2;
  const uint64_t offset = va & (kPageSize - 1);
  // A masked vector access does not touch (walk, fault on, read or write) a page that holds
  // none of the bytes of its enabled elements.
  bool skip[2] = {false, false};
  if (site->masked.kind != bt::MaskedAccess::kNone && size <= 64) {
    const uint64_t bytes = MaskedBytes(site->masked);
    const uint64_t first_len = npages == 1 ? size : kPageSize - offset;
    const uint64_t first_mask = first_len >= 64 ? ~0ull : (1ull << first_len) - 1;
    skip[0] = (bytes & first_mask) == 0;
    skip[1] = npages == 2 && (bytes & ~first_mask) == 0;
  }
  uint64_t phys[2] = {};
  WalkResult walks[2];
  for (int i = 0; i < npages; ++i) {
    if (skip[i]) continue;
    if (paging) {
      WalkRequest req;
      req.linear = pages[i];
      req.access = write ? Access::kWrite : Access::kRead;
      req.user = user;
      req.ac = ac;
      walks[i] = WalkPageTables(memory, regs, req);
      if (!walks[i].ok) {
        GuestException ex;
        ex.vector = kPf;
        ex.has_error_code = true;
        ex.error_code = walks[i].error_code;
        ex.cr2 = i == 0 ? va : pages[1];
        return raise(ex);
      }
      phys[i] = walks[i].phys & kPageMask;
    } else {
      phys[i] = pages[i];
      walks[i].ok = true;
      walks[i].writable = true;
    }
  }

  if (npages == 1 && !skip[0] && memory.IsRam(phys[0])) {
    if (write && memory.IsCodePage(phys[0])) memory.NotifyWrite(phys[0] + offset, size);
    TlbSet& set = ctx->tlb.set[site->view];
    const uint64_t idx = SoftTlb::Index(pages[0]);
    const uint64_t neg_tag = 0 - pages[0];
    TlbEntry& e = set.entry[idx];
    if (e.read_neg_tag != neg_tag) e.write_neg_tag = kTlbInvalidTag;
    e.read_neg_tag = neg_tag;
    e.host_page = reinterpret_cast<uint64_t>(memory.host_base()) + phys[0];
    e.addend = e.host_page + neg_tag;
    set.phys_page[idx] = phys[0];
    set.global[idx] = paging && walks[0].global;
    if (write && !memory.IsCodePage(phys[0])) e.write_neg_tag = neg_tag;
    ctx->mem_host = reinterpret_cast<uint64_t>(memory.host_base()) + phys[0] + offset;
    ctx->bounce_active = false;
    return 0;
  }
  // MMIO, a page-crossing access or a masked one with a page skipped: go through the bounce
  // buffer.
  ctx->bounce_phys[0] = skip[0] ? bt::kBounceSkip : phys[0] + offset;
  ctx->bounce_len[0] = npages == 1 ? size : static_cast<uint32_t>(kPageSize - offset);
  ctx->bounce_phys[1] = skip[1] ? bt::kBounceSkip : phys[1];
  ctx->bounce_len[1] = npages == 1 ? 0 : size - ctx->bounce_len[0];
  // Reads see current memory; a write-only access still needs the old bytes for partial
  // writes of the bounce area, so the buffer is always filled (MMIO reads are skipped for
  // pure writes so device side effects do not happen twice). Skipped pieces read as zeros.
  bool is_mmio = false;
  for (int i = 0; i < npages; ++i) is_mmio |= !skip[i] && !memory.IsRam(phys[i]);
  uint8_t* piece = ctx->bounce;
  for (int i = 0; i < 2; ++i) {
    if (!ctx->bounce_len[i]) continue;
    if (ctx->bounce_phys[i] == bt::kBounceSkip || (write && is_mmio))
      std::memset(piece, 0, ctx->bounce_len[i]);
    else
      memory.Read(ctx->bounce_phys[i], piece, ctx->bounce_len[i]);
    piece += ctx->bounce_len[i];
  }
  ctx->bounce_active = true;
  ctx->mem_host = reinterpret_cast<uint64_t>(ctx->bounce);
  return 0;
}

uint64_t BtCpu::Impl::MaskedBytes(const bt::MaskedAccess& m) const {
  const uint8_t* area = state.xsave;
  uint64_t bv;
  std::memcpy(&bv, area + 512, 8);  // XSTATE_BV: a clear component is all zeros
  uint64_t elements = 0;            // bit i: element i of the operand is accessed
  if (m.kind == bt::MaskedAccess::kVectorSign) {
    uint8_t v[32] = {};
    if (bv & 0x02) std::memcpy(v, area + 160 + 16 * m.reg, 16);
    if ((bv & 0x04) && xsave_ymm_hi_offset)
      std::memcpy(v + 16, area + xsave_ymm_hi_offset + 16 * m.reg, 16);
    for (unsigned i = 0; i < m.elements && (i + 1) * m.element_bytes <= sizeof(v); ++i)
      if (v[(i + 1) * m.element_bytes - 1] & 0x80) elements |= 1ull << i;
  } else {
    uint64_t k = 0;
    if ((bv & 0x20) && xsave_opmask_offset)
      std::memcpy(&k, area + xsave_opmask_offset + 8 * m.reg, 8);
    if (m.controls < 64) k &= (1ull << m.controls) - 1;
    if (m.kind == bt::MaskedAccess::kOpmaskPacked) {
      const int n = __builtin_popcountll(k);
      elements = n >= 64 ? ~0ull : (1ull << n) - 1;
    } else {
      for (unsigned j = 0; j < m.controls; ++j)
        if ((k >> j) & 1) elements |= 1ull << (j % m.elements);
    }
  }
  uint64_t bytes = 0;
  for (unsigned i = 0; i < m.elements; ++i) {
    if (!((elements >> i) & 1)) continue;
    for (unsigned b = i * m.element_bytes; b < (i + 1) * m.element_bytes && b < 64; ++b)
      bytes |= 1ull << b;
  }
  return bytes;
}

uint64_t BtCpu::Impl::MemPostPath(uintptr_t ret) {
  bt::Block* b = FindBlockByHost(ret);
  const bt::MemSiteInfo* site = FindSite(b, ret);
  if (!site) throw std::logic_error("translator: unknown memory post-path call site");
  if (ctx->bounce_active) {
    ctx->bounce_active = false;
    if (ctx->bounce_phys[0] != bt::kBounceSkip)
      memory.Write(ctx->bounce_phys[0], ctx->bounce, ctx->bounce_len[0]);
    if (ctx->bounce_len[1] && ctx->bounce_phys[1] != bt::kBounceSkip)
      memory.Write(ctx->bounce_phys[1], ctx->bounce + ctx->bounce_len[0], ctx->bounce_len[1]);
  }
  if (current_block_invalidated) {
    // The running block's code was overwritten: continue with a fresh translation.
    current_block_invalidated = false;
    state.rip = site->next_rip;
    ctx->lookup_rip = site->next_rip;
    ctx->exit_reason = bt::kExitLookup;
    return 1;
  }
  return 0;
}

// ------------------------------------------------------------------------------------------

BtCpu::BtCpu(GuestMemory& memory, CpuState& state, BtOptions options)
    : impl_(std::make_unique<Impl>(memory, state, options)) {
  Impl* impl = impl_.get();
  impl->self = this;
  impl->peers = {this};
  memory.SetCodeWriteObserver([this](uint64_t page) { NotifyCodeWrite(page); });
}

void BtCpu::SetPeers(std::vector<BtCpu*> peers) {
  impl_->peers = std::move(peers);
}

void BtCpu::NotifyCodeWrite(uint64_t page_gpa) {
  Impl& im = *impl_;
  if (im.owner_thread == std::this_thread::get_id() || im.owner_thread == std::thread::id()) {
    im.InvalidatePage(page_gpa & kPageMask);
    return;
  }
  {
    std::lock_guard lock(im.remote_mu);
    im.remote_writes.push_back(page_gpa & kPageMask);
  }
  im.remote_pending.store(true);
  RequestExit();
}

void BtCpu::NotifyCodeTranslated(uint64_t page_gpa) {
  Impl& im = *impl_;
  {
    std::lock_guard lock(im.remote_mu);
    im.remote_translated.push_back(page_gpa & kPageMask);
  }
  im.remote_pending.store(true);
  RequestExit();
}

void BtCpu::Impl::DrainRemote() {
  if (!remote_pending.exchange(false)) return;
  std::vector<uint64_t> writes, translated;
  {
    std::lock_guard lock(remote_mu);
    writes.swap(remote_writes);
    translated.swap(remote_translated);
  }
  for (uint64_t page : writes) InvalidatePage(page);
  for (uint64_t page : translated) FlushSoftTlbForCodePage(page);
}

void BtCpu::Impl::RegisterBlock(const bt::BlockKey& key, bt::Block* block) {
  blocks.emplace(key, block);
  lookup_cache[LookupIndex(key.linear)] = {key, block};
  blocks_by_host.emplace(reinterpret_cast<uintptr_t>(block->host), block);
  for (uint64_t page : block->phys_page) {
    if (page == ~0ull) continue;
    blocks_by_page[page].push_back(block);
    MarkCode(page);
  }
}

void BtCpu::Impl::MarkCode(uint64_t phys_page) {
  // Already a code page: no write entry for it was filled since it was marked (the slow path
  // never fills one for a code page) and the peers were told then.
  if (memory.IsCodePage(phys_page)) return;
  for (BtCpu* peer : peers)
    if (peer != self) peer->NotifyCodeTranslated(phys_page);
  memory.MarkCodePage(phys_page);
  FlushSoftTlbForCodePage(phys_page);
}

BtCpu::~BtCpu() = default;

const BtStats& BtCpu::stats() const {
  impl_->stats.loop_fast_entries = impl_->ctx->loop_fast_entries;
  return impl_->stats;
}

void BtCpu::RequestExit() {
  __atomic_store_n(&impl_->ctx->exit_request, 1, __ATOMIC_SEQ_CST);
}
void BtCpu::ClearExitRequest() {
  __atomic_store_n(&impl_->ctx->exit_request, 0, __ATOMIC_SEQ_CST);
}
void BtCpu::SetInterruptPending(bool pending) {
  impl_->ctx->irq_pending = pending ? 1 : 0;
}

void BtCpu::FlushTlb(bool include_global) {
  impl_->FlushSoftTlb(include_global);
  if (include_global || !impl_->supervisor_jc_all_global) {
    impl_->FlushJumpCache();
  } else {
    impl_->FlushJumpCacheView(kTlbUser);  // user code; jump_cache_pages stays a superset
  }
}

void BtCpu::FlushTlbPage(uint64_t linear) {
  uint64_t page = linear & kPageMask;
  uint64_t idx = SoftTlb::Index(page);
  for (auto& set : impl_->ctx->tlb.set) {
    const TlbEntry& e = set.entry[idx];
    if (e.read_neg_tag == 0 - page || e.write_neg_tag == 0 - page)
      impl_->InvalidateTlbEntry(set, idx);
  }
  Impl::FetchEntry& f = impl_->fetch_cache[(page >> 12) % Impl::kFetchEntries];
  if ((f.tag & kPageMask) == page) f.tag = ~0ull;
  // Jump-cache entries lead to blocks by linear RIP: only a page they may point into matters.
  if (impl_->jump_cache_pages.test(Impl::JumpCachePageBit(page))) impl_->FlushJumpCache();
}

void BtCpu::FlushTranslations() {
  impl_->FlushCache();
}

Exit BtCpu::Run(bool single_step) {
  Impl& im = *impl_;
  bt::VcpuContext* ctx = im.ctx.get();
  CpuState& st = im.state;
  _writegsbase_u64(reinterpret_cast<uint64_t>(ctx));
  t_current = &im;
  struct Reset {
    ~Reset() { t_current = nullptr; }
  } reset;

  ctx->guest_rsp = st.gpr[kRsp];
  for (int s = 0; s < kSegCount; ++s) {
    ctx->seg_base[s] = st.seg[s].base;
    ctx->seg_limit[s] = st.seg[s].limit;
  }
  ctx->kernel_gs_base = st.msr.kernel_gs_base;
  // Inline SWAPGS works on the context: GS base and IA32_KERNEL_GS_BASE go back on return.
  struct SyncGs {
    CpuState& st;
    bt::VcpuContext* ctx;
    ~SyncGs() {
      st.seg[kGs].base = ctx->seg_base[kGs];
      st.msr.kernel_gs_base = ctx->kernel_gs_base;
    }
  } sync_gs{st, ctx};
  if (st.cr4 & cr4::kLa57) {
    ctx->canon_sign_mask = 0xFF00000000000000ull;
    ctx->canon_fault_mask = 0x7F00000000000001ull;
  } else {
    ctx->canon_sign_mask = 0xFFFF800000000000ull;
    ctx->canon_fault_mask = 0x7FFF800000000001ull;
  }
  // Inline CLI/STI/PUSHF work on ctx.sys_rflags; IF goes back to CpuState when Run returns.
  ctx->sys_rflags =
      (st.rflags & ~(rflags::kHostLive | rflags::kRf | rflags::kVm)) | rflags::kFixed1;
  ctx->sti_shadow = 0;
  struct SyncIf {
    CpuState& st;
    bt::VcpuContext* ctx;
    ~SyncIf() { st.rflags = (st.rflags & ~rflags::kIf) | (ctx->sys_rflags & rflags::kIf); }
  } sync_if{st, ctx};

  static thread_local uint64_t last_mode_key = 0;
  static thread_local uint64_t last_cs_base = ~0ull;
  static thread_local uint64_t last_cs_limit = ~0ull;

  im.owner_thread = std::this_thread::get_id();
  Exit exit;
  for (;;) {
    im.DrainRemote();
    if (__atomic_load_n(&ctx->exit_request, __ATOMIC_RELAXED)) {
      exit.reason = ExitReason::kRequest;
      break;
    }
    bt::TransMode mode = im.CurrentMode();
    mode.single_step = single_step;
    // The jump caches are per view (user, supervisor), so what may differ between their blocks
    // without a flush is the view and what follows from it: user/kernel transitions (CPL 3 <->
    // 0, where sys_inline usually differs) keep them. IOPL, NT, VM, PE and a CPL of 1 or 2
    // (which shares the supervisor jump cache with CPL 0) decide sys_inline and are compared.
    bt::TransMode key_mode = mode;
    key_mode.view = 0;
    key_mode.sys_inline = false;
    key_mode.iopl = 0;
    key_mode.nt = false;
    key_mode.cpl0 = false;
    const int cpl = st.cpl();
    const uint64_t flush_key = (uint64_t{key_mode.Pack()} << 32) |
                               (st.rflags & (rflags::kIoplMask | rflags::kNt | rflags::kVm)) |
                               (st.protected_mode() ? 1 : 0) |
                               (static_cast<uint64_t>(cpl == 3 ? 0 : cpl) << 2);
    // The jump cache is looked up by RIP alone: blocks translated for another CS limit must
    // not be found there either.
    const uint64_t key_cs_limit = bt::BlockKeyCsLimit(mode, st.seg[kCs].limit);
    if (flush_key != last_mode_key || st.seg[kCs].base != last_cs_base ||
        key_cs_limit != last_cs_limit) {
      im.FlushJumpCache();
      last_mode_key = flush_key;
      last_cs_base = st.seg[kCs].base;
      last_cs_limit = key_cs_limit;
    }
    const uint64_t rip_mask =
        mode.code_bits == 64 ? ~0ull : (mode.code_bits == 32 ? 0xFFFFFFFFull : 0xFFFFull);
    st.rip &= rip_mask;
    uint64_t linear = st.seg[kCs].base + st.rip;
    if (!st.long_mode_active()) linear &= 0xFFFFFFFFull;
    if (mode.code_bits == 64 && !Canonical64(linear)) {
      exit.reason = ExitReason::kException;
      exit.exception = GuestException{kGp, true, 0, 0};
      break;
    }
    // Instruction fetch translation.
    uint64_t phys = linear;
    bool fetch_global = true;  // paging off: nothing a CR3 write changes
    PagingRegs regs = im.Paging();
    if (PagingEnabled(regs)) {
      const bool user = mode.view == kTlbUser;
      const uint64_t tag = (linear & kPageMask) | (user ? 1 : 0);
      Impl::FetchEntry& fe = im.fetch_cache[(linear >> 12) % Impl::kFetchEntries];
      if (fe.tag == tag) {
        phys = fe.phys_page | (linear & (kPageSize - 1));
        fetch_global = fe.global;
      } else {
        WalkRequest req;
        req.linear = linear;
        req.access = Access::kExecute;
        req.user = user;
        WalkResult w = WalkPageTables(im.memory, regs, req);
        if (!w.ok) {
          exit.reason = ExitReason::kException;
          exit.exception = GuestException{kPf, true, w.error_code, linear};
          break;
        }
        phys = w.phys;
        fe.tag = tag;
        fe.phys_page = phys & kPageMask;
        fe.global = fetch_global = w.global;
      }
    }
    bt::BlockKey key{linear, st.seg[kCs].base, phys & kPageMask, mode.Pack(), key_cs_limit};
    bt::Block* block = nullptr;
    Impl::LookupEntry& le = im.lookup_cache[Impl::LookupIndex(linear)];
    auto found = im.blocks.end();
    if (le.block && le.key == key && le.block->valid) {
      block = le.block;
    } else if ((found = im.blocks.find(key)) != im.blocks.end()) {
      block = found->second;
      le = {key, block};
    } else {
      GuestException fault;
      block = im.Translate(mode, linear, phys, &fault);
      if (!block && fault.vector == kPf) {
        exit.reason = ExitReason::kException;
        exit.exception = fault;
        break;
      }
      if (!block) {
        im.FlushCache();
        block = im.Translate(mode, linear, phys, &fault);
        if (!block) throw std::runtime_error("translator: block does not fit in an empty cache");
      }
      im.RegisterBlock(key, block);
    }
    if (block->emulate_only) {
      exit.reason = ExitReason::kEmulate;
      break;
    }
    if (!single_step) {
      bt::JumpCache& jc = ctx->jump_cache[mode.view];
      uint64_t idx = st.rip & (bt::kJumpCacheEntries - 1);
      jc.neg_rip[idx] = -static_cast<int64_t>(st.rip);
      jc.host[idx] = reinterpret_cast<uint64_t>(block->host);
      im.jump_cache_pages.set(Impl::JumpCachePageBit(linear));
      // A block whose first instruction straddles into a second page also depends on that
      // page's translation: treat it as not global.
      if (mode.view != kTlbUser && (!fetch_global || block->phys_page[1] != ~0ull))
        im.supervisor_jc_all_global = false;
      if (block->phys_page[1] != ~0ull)
        im.jump_cache_pages.set(Impl::JumpCachePageBit(linear + kPageSize));
    }
    im.current_block = block;
    im.current_block_invalidated = false;
    ctx->guest_rsp = st.gpr[kRsp];
    ctx->exit_reason = 0;
    reinterpret_cast<EnterFn>(im.runtime.enter)(block->host);
    im.stats.exits++;
    if (ctx->sti_shadow) {
      // An inline STI left for a pending interrupt: one more instruction runs first.
      ctx->sti_shadow = 0;
      st.interrupt_shadow = true;
    }
    im.current_block = nullptr;
    uint64_t reason = ctx->exit_reason;
    if (reason != bt::kExitException) st.rip = ctx->lookup_rip;
    if (reason == bt::kExitEmulate) {
      exit.reason = ExitReason::kEmulate;
      break;
    }
    if (reason == bt::kExitException) {
      exit.reason = ExitReason::kException;
      exit.exception = ctx->pending_exception;
      break;
    }
    if (reason == bt::kExitRequest) {
      exit.reason = ExitReason::kRequest;
      break;
    }
    if (single_step) {
      exit.reason = ExitReason::kRequest;
      exit.stepped = true;
      break;
    }
    if (reason == bt::kExitChain || reason == bt::kExitChainForward) {
      // Chain the exited block's direct jump to the target when both are valid and the
      // target lies in the same page (guaranteed by the emitter) and within one page.
      uint64_t tlinear = st.seg[kCs].base + st.rip;
      if (!st.long_mode_active()) tlinear &= 0xFFFFFFFFull;
      bt::BlockKey tkey{tlinear, st.seg[kCs].base, (phys & kPageMask), mode.Pack(), key_cs_limit};
      auto t = im.blocks.find(tkey);
      if ((tlinear & kPageMask) == (linear & kPageMask) && block->valid) {
        bt::Block* target = nullptr;
        if (t != im.blocks.end()) {
          target = t->second;
        } else {
          GuestException fault;
          uint64_t tphys = (phys & kPageMask) | (tlinear & (kPageSize - 1));
          target = im.Translate(mode, tlinear, tphys, &fault);
          if (target) {
            im.RegisterBlock(tkey, target);
          }
        }
        if (target && target->valid && target->chainable_target && !target->emulate_only &&
            block->valid) {
          uint8_t* site = reinterpret_cast<uint8_t*>(ctx->chain_site);
          uint8_t* entry = target->host;
          if (reason == bt::kExitChainForward) entry += target->unchecked_offset;
          int64_t rel = reinterpret_cast<int64_t>(entry) - reinterpret_cast<int64_t>(site);
          int32_t rel32 = static_cast<int32_t>(rel);
          std::memcpy(site - 4, &rel32, 4);
          im.stats.chains++;
        }
      }
    }
  }
  st.gpr[kRsp] = ctx->guest_rsp;
  return exit;
}

}  // namespace rove
