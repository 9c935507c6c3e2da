// A minimal 64-bit guest machine for tests: 4-level page tables, a GDT, a 64-bit TSS with an IST
// stack, and an IDT whose 256 gates all lead (on the IST stack) to small stubs that record the
// vector in guest memory and execute HLT with IF=0. The differential harness runs instruction
// sequences in it; the random-bytes tests throw garbage at it.
//
// Guest virtual layout (physical placement differs on purpose, so that the guest page tables
// really translate):
//   kDataVa  .. +kDataSize  data and stack, read/write, no-execute   -> kDataGpa.. (scattered)
//   kCodeVa  .. +kCodeSize  code, read/execute, not writable         -> kCodeGpa.. (scattered)
//   kSysVa   .. +kSysSize   GDT, TSS, IDT, stubs, IST stack (CPL0)    -> kSysGpa
// Nothing else is mapped, so any stray access is a #PF.
#pragma once

#include <cstddef>
#include <cstdint>

#include "rove/mmu/guest_memory.h"
#include "rove/translator/cpu_state.h"

namespace rove::testing {

inline constexpr uint64_t kDataVa = 0x10000000;
inline constexpr uint64_t kDataSize = 0x4000;
inline constexpr uint64_t kCodeVa = 0x20000000;
inline constexpr uint64_t kCodeSize = 0x10000;
inline constexpr uint64_t kSysVa = 0x3FE00000;
inline constexpr uint64_t kSysSize = 0x10000;

inline constexpr uint64_t kDataGpa = 0x100000;
inline constexpr uint64_t kCodeGpa = 0x200000;
inline constexpr uint64_t kSysGpa = 0x10000;
inline constexpr uint64_t kPml4Gpa = 0x1000;
inline constexpr uint64_t kTestRamBytes = 4ull << 20;

// Offsets inside the system region.
inline constexpr uint64_t kGdtOffset = 0x0;
inline constexpr uint64_t kTssOffset = 0x100;
inline constexpr uint64_t kIdtOffset = 0x1000;
inline constexpr uint64_t kStubOffset = 0x2000;    // 256 stubs, 16 bytes each
inline constexpr uint64_t kMarkOffset = 0x3000;    // u16: 0x100 | vector once a stub ran
inline constexpr uint64_t kIstTopOffset = 0x8000;  // IST1 stack top
inline constexpr uint64_t kRsp0TopOffset = 0xC000;

// Selectors of the test GDT.
inline constexpr uint16_t kKernelCs = 0x08;
inline constexpr uint16_t kKernelDs = 0x10;
inline constexpr uint16_t kUserDs = 0x18 | 3;
inline constexpr uint16_t kUserCs = 0x20 | 3;
inline constexpr uint16_t kTssSel = 0x28;
inline constexpr uint16_t kKernelCs32 = 0x38;  // 32-bit code: compatibility mode
inline constexpr uint16_t kUserCs32 = 0x40 | 3;

struct TestMachineConfig {
  // Run the code at CPL3 (user pages, user segments); exceptions still go to the CPL0 stubs.
  bool user_mode = false;
  // Run the code in compatibility mode (a 32-bit code segment in long mode).
  bool compat32 = false;
  // XCR0 given to the guest; 0 = the host's XCR0 restricted to x87/SSE/AVX/AVX-512.
  uint64_t xcr0 = 0;
};

// What the stubs recorded: the exception frame on the IST stack.
struct GuestException {
  bool taken = false;
  uint8_t vector = 0;
  bool has_error_code = false;
  uint64_t error_code = 0;
  uint64_t rip = 0, cs = 0, rflags = 0, rsp = 0, ss = 0;
};

// True for the vectors whose hardware exceptions push an error code.
bool VectorHasErrorCode(uint8_t vector);

// Writes page tables, GDT, TSS, IDT and stubs. Data and code regions are left as they are.
void BuildTestMachine(GuestMemory& mem, const TestMachineConfig& config);
// Long mode, paging on (CR4: PAE, OSFXSR, OSXMMEXCPT, OSXSAVE, FSGSBASE), CS/SS/DS/ES/FS/GS,
// GDTR/IDTR/TR, XCR0; RIP = kCodeVa, RFLAGS = 0x2.
// GPRs and the XSAVE image are left to the caller.
void SetTestMachineState(CpuState& state, const TestMachineConfig& config);
// Reads what the stubs recorded (taken == false if no stub ran).
GuestException ReadGuestException(GuestMemory& mem);

// The pages of the data and code regions are scattered over their physical ranges (not in
// order), so that an access or an instruction crossing a page boundary is only right if the
// engine translates each page separately. These helpers copy to and from guest virtual
// addresses of the data and code regions.
uint64_t TestRegionGpa(uint64_t va);
void WriteGuestVa(GuestMemory& mem, uint64_t va, const void* src, size_t len);
void ReadGuestVa(GuestMemory& mem, uint64_t va, void* dst, size_t len);

}  // namespace rove::testing
