// Accesses to guest linear (virtual) memory from C++: exception delivery, emulated
// instructions, loaders. Each access walks the guest page tables (no TLB), may span pages, and
// reports a page fault instead of performing a partial access.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "rove/mmu/guest_memory.h"
#include "rove/mmu/page_walker.h"

namespace rove {

struct PageFault {
  uint64_t linear = 0;  // goes to CR2
  uint32_t error_code = 0;
};

struct LinearAccessMode {
  bool user = false;                 // CPL 3 explicit access
  bool ac = false;                   // RFLAGS.AC
  bool implicit_supervisor = false;  // descriptor tables, TSS, IDT...
};

class LinearMemory {
 public:
  explicit LinearMemory(GuestMemory& memory) : memory_(memory) {}

  // On success nothing is returned; on a fault no byte has been written.
  std::optional<PageFault> Read(const PagingRegs& regs, LinearAccessMode mode, uint64_t linear,
                                void* dst, size_t len);
  std::optional<PageFault> Write(const PagingRegs& regs, LinearAccessMode mode, uint64_t linear,
                                 const void* src, size_t len);
  // Instruction fetch (execute permission, NX, SMEP).
  std::optional<PageFault> Fetch(const PagingRegs& regs, LinearAccessMode mode, uint64_t linear,
                                 void* dst, size_t len);
  // Translate one address without touching memory contents (A/D bits are set).
  WalkResult Translate(const PagingRegs& regs, LinearAccessMode mode, uint64_t linear,
                       Access access);

  GuestMemory& physical() { return memory_; }

 private:
  GuestMemory& memory_;
};

}  // namespace rove
