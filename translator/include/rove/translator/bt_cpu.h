// The binary-translation vCPU core: runs guest code from CpuState::rip as translated host code
// until something needs the engine (an instruction to emulate, an exception to deliver, an exit
// request). One BtCpu per vCPU thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rove/mmu/guest_memory.h"
#include "rove/translator/cpu_state.h"
#include "rove/translator/exit.h"

namespace rove {

struct BtStats {
  uint64_t blocks_translated = 0;
  uint64_t instructions_translated = 0;
  uint64_t cache_flushes = 0;
  uint64_t tlb_misses = 0;
  uint64_t exits = 0;
  uint64_t chains = 0;
  uint64_t smc_invalidations = 0;
  uint64_t counted_loops = 0;      // blocks translated with a fast counted-loop version
  uint64_t loop_fast_entries = 0;  // headers that entered the fast version
};

struct BtOptions {
  // Size of the translation cache; it is flushed whole when full.
  size_t code_cache_bytes = 64ull << 20;
  // Upper bound on guest instructions per translated block.
  int max_block_instructions = 64;
  // Counted loops get a fast version with their memory ranges checked once per page.
  bool counted_loops = true;
  // Appends "host-address size name" lines for every translated block to this file (the
  // /tmp/perf-<pid>.map format, so `perf report` names translated code by guest RIP). Empty:
  // the ROVE_PERF_MAP environment variable, when set to 1, means /tmp/perf-<pid>.map.
  std::string perf_map_path;
};

class BtCpu : public TranslationControl {
 public:
  BtCpu(GuestMemory& memory, CpuState& state, BtOptions options = {});
  ~BtCpu() override;
  BtCpu(const BtCpu&) = delete;
  BtCpu& operator=(const BtCpu&) = delete;

  // Runs translated code until an exit. With `single_step` exactly one guest instruction is
  // executed (used after STI/MOV SS and for TF); an instruction that needs emulation returns
  // kEmulate without executing anything.
  Exit Run(bool single_step = false);

  // Thread-safe: the running (or next) Run() returns kRequest at the next block boundary.
  void RequestExit();
  void ClearExitRequest();
  // The vCPU loop says before each Run() whether an interrupt is waiting for IF=1: an STI
  // executed inline by translated code then leaves Run() (kRequest, interrupt shadow set) so
  // the interrupt is taken after the instruction that follows STI, as on hardware.
  void SetInterruptPending(bool pending);

  void FlushTlb(bool include_global) override;
  void FlushTlbPage(uint64_t linear) override;
  void FlushTranslations() override;

  const BtStats& stats() const;

  // Several vCPUs on one guest memory: translations live per vCPU, so a write to guest code
  // must reach every vCPU's cache, and a page one vCPU translates must stop being written
  // through the others' soft TLBs. The machine lists all BtCpus here and routes
  // GuestMemory's code-write observer to NotifyCodeWrite of each.
  void SetPeers(std::vector<BtCpu*> peers);
  // Thread-safe: the guest page at `page_gpa` was (is about to be) written. On the vCPU's own
  // thread the translations go at once; from other threads they go before this vCPU runs
  // translated code again (it is kicked out with an exit request).
  void NotifyCodeWrite(uint64_t page_gpa);
  // Thread-safe: a peer translated code in `page_gpa`.
  void NotifyCodeTranslated(uint64_t page_gpa);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace rove
