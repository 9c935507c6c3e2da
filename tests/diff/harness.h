// Differential harness: runs a 64-bit instruction sequence natively on the host and under rove
// from the same initial state, and compares the final architectural state.
//
// Native run: in a forked child, the data region is mapped at kDataVa and the code at kCodeVa
// (MAP_FIXED_NOREPLACE); an assembly trampoline loads GPRs, RFLAGS and XSAVE state, jumps to
// the code, and the sequence ends in a jump back to a trampoline that stores everything. A fault
// (SIGFPE/SIGSEGV/SIGILL/...) ends the run with "exception vector N at instruction k" and the
// state the kernel saved at the faulting instruction.
//
// rove run: a GuestMemory holding the test machine of tests/support/test_machine.h (long mode,
// CPL0, IDT gates to stubs that record the vector and halt), the same code bytes at the same
// virtual address followed by HLT, and the same data at the same virtual address.
#pragma once

#include <Zydis/Zydis.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "../support/test_machine.h"
#include "../support/xsave_layout.h"

namespace rove::difftest {

using testing::kCodeSize;
using testing::kCodeVa;
using testing::kDataSize;
using testing::kDataVa;

// Exception vectors the tests name.
inline constexpr uint8_t kVecDe = 0;
inline constexpr uint8_t kVecUd = 6;
inline constexpr uint8_t kVecGp = 13;
inline constexpr uint8_t kVecPf = 14;

// Initial stack pointer: the top quarter of the data region is the stack.
inline constexpr uint64_t kStackTop = kDataVa + kDataSize - 0x400;
// Bytes reserved at the end of the code region for the terminator.
inline constexpr size_t kMaxSequenceBytes = kCodeSize - 64;

// GS base given to the sequences by default (the host does not use GS, so natively the harness
// can lend it; under rove it is the guest's GS base).
inline constexpr uint64_t kDefaultGsBase = kDataVa + 0x2000;

struct MachineState {
  uint64_t gpr[16] = {};
  uint64_t rip = 0;
  uint64_t rflags = 0x2;
  uint64_t gs_base = kDefaultGsBase;
  alignas(64) uint8_t xsave[testing::kXsaveImageSize] = {};
};

struct DiffInput {
  std::string name;
  std::vector<uint8_t> code;  // without terminator
  MachineState init;          // rip is ignored (execution starts at kCodeVa)
  std::vector<uint8_t> data;  // kDataSize bytes
  // Extra RFLAGS bits not to compare (on top of the undefined flags found by analysis).
  uint64_t ignore_flags = 0;
  // 32-bit code, run in compatibility mode (natively: the kernel's 32-bit user code segment;
  // under rove: a 32-bit code segment in long mode). Only the low halves of RAX..RDI are
  // compared (the upper halves are undefined across the mode switches).
  bool compat32 = false;
};

struct Outcome {
  // Harness-level failure (child crashed for a reason other than a guest fault, timeout,
  // engine stop with an unexpected reason...). Empty when the run itself went fine.
  std::string failure;
  // rove only: the engine is not linked into this build.
  bool unavailable = false;
  MachineState state;
  bool exception = false;
  uint8_t vector = 0;
  uint64_t error_code = 0;
  uint64_t cr2 = 0;  // #PF: the faulting linear address
  std::vector<uint8_t> data;
  std::string stop_message;  // engine stop message, if any
};

// Deterministic default initial state: distinct GPR values, RSP = kStackTop, RFLAGS = 0x2,
// vector registers filled from `seed`, opmasks patterned, data region filled from `seed`.
DiffInput MakeDefaultInput(std::string name, std::vector<uint8_t> code, uint64_t seed);

Outcome RunNative(const DiffInput& input);

struct RoveRunOptions {
  uint64_t max_exits = 1u << 20;
  unsigned timeout_ms = 20000;  // watchdog: RequestStop() after this
  // Run in a worker process so an engine crash fails the case instead of the process.
  bool isolate = false;
};
Outcome RunRove(const DiffInput& input, const RoveRunOptions& options = {});
bool RoveAvailable();

// Instruction boundaries and the RFLAGS bits architecturally undefined at the end of the
// sequence (from Zydis' per-instruction cpu_flags, propagated along straight-line code; forward
// branches merge conservatively).
struct SequenceInfo {
  std::vector<uint32_t> offsets;  // start offset of each instruction
  // RFLAGS bits that may be undefined when instruction i starts (for faults at i).
  std::vector<uint64_t> undefined_before;
  uint64_t undefined_flags = 0;  // ... and at the end of the sequence
  bool decode_error = false;
};
SequenceInfo AnalyzeSequence(const std::vector<uint8_t>& code, bool compat32 = false);
// True for a shift/rotate whose count may be zero (CL, or an immediate that masks to 0): such an
// instruction may leave RFLAGS unchanged, so it does not make undefined flags defined.
bool ShiftCountMayBeZero(const ZydisDecodedInstruction& insn, const ZydisDecodedOperand* ops);
// Index of the instruction starting at code offset `offset`, or -1.
int InstructionIndexAt(const SequenceInfo& info, uint64_t offset);
// Intel-syntax listing with offsets, one instruction per line.
std::string Disassemble(const std::vector<uint8_t>& code, bool compat32 = false);

// Empty if the outcomes agree; otherwise a readable description of every difference.
std::string CompareOutcomes(const DiffInput& input, const SequenceInfo& info, const Outcome& native,
                            const Outcome& rove);
// Short description of an outcome ("completed" / "#DE at insn 3 (rip ...)").
std::string DescribeOutcome(const SequenceInfo& info, const Outcome& o);

// Runs both sides and returns "" on agreement, else a report with the disassembly.
// `native_out` receives the native outcome (for tests of the harness itself).
std::string RunDifferential(const DiffInput& input, const RoveRunOptions& options = {},
                            Outcome* native_out = nullptr, Outcome* rove_out = nullptr);

}  // namespace rove::difftest
