// Why translated code stopped and handed control back to the engine.
#pragma once

#include <cstdint>

namespace rove {

enum class ExitReason : uint8_t {
  // The instruction at CpuState::rip is one the translator does not translate inline
  // (privileged, sensitive or rare); the engine emulates it and continues.
  kEmulate,
  // Deliver `exception`. For faults CpuState::rip is the faulting instruction and the state is
  // the state before it; for traps (INT3 reached through emulation, single-step) it is after.
  kException,
  // An exit request (pending interrupt, stop, pause) was seen at an instruction boundary.
  kRequest,
};

struct GuestException {
  uint8_t vector = 0;
  bool has_error_code = false;
  uint32_t error_code = 0;
  uint64_t cr2 = 0;  // for #PF
};

struct Exit {
  ExitReason reason = ExitReason::kRequest;
  GuestException exception;
  // Single-step runs: one guest instruction completed (reason kRequest).
  bool stepped = false;
};

// What the engine calls when guest state changes in ways that invalidate cached translations
// or TLB entries. Implemented by the translator's vCPU runner.
class TranslationControl {
 public:
  virtual ~TranslationControl() = default;
  // CR3 write without PCID no-flush, CR0.PG/WP or CR4 paging bit changes: drop non-global
  // entries (all entries if `include_global`).
  virtual void FlushTlb(bool include_global) = 0;
  // INVLPG / INVPCID single address.
  virtual void FlushTlbPage(uint64_t linear) = 0;
  // Everything translated must be retranslated (e.g. XCR0 or CR0.TS/EM changes that alter how
  // instructions are translated).
  virtual void FlushTranslations() = 0;
};

}  // namespace rove
