// Random instruction sequences for the differential harness.
//
// Instructions are picked from a table of safe mnemonics with their operand forms (integer ALU,
// shifts, multiply/divide, bit operations, conditional moves and sets, BMI, string operations,
// stack operations, SSE, AVX/AVX2/FMA and AVX-512 including opmasks) and encoded with the Zydis
// encoder. Memory operands only ever address the data region: the generator knows which
// registers hold which values (initial values, or values it loaded with MOV r64, imm64 right
// before) and computes the displacement so the access lands where it chose, using every
// addressing form (base, base+index*scale, index only, RIP-relative, absolute, 32-bit address
// size). Control flow is straight-line with forward jumps (Jcc/JMP over a few instructions).
// Instructions whose tested flags might be architecturally undefined at that point are not
// emitted, so undefined flags never leak into results.
//
// Everything is a pure function of (seed, index): a failing sequence is reproduced with
// ROVE_DIFF_SEED=<seed> ROVE_DIFF_INDEX=<index>.
#pragma once

#include <Zydis/Zydis.h>

#include <cstdint>
#include <string>
#include <vector>

#include "harness.h"

namespace rove::difftest {

// One element of a generated sequence: an encoder request (encoded at layout time, so that
// RIP-relative operands and jumps get their final displacements) or a forward jump over the
// next `skip` items.
struct SeqItem {
  ZydisEncoderRequest request{};
  bool is_jump = false;
  int skip = 0;  // jumps: number of following items jumped over
};

struct GeneratedSequence {
  std::vector<SeqItem> items;
  DiffInput input;  // code filled in by Layout()
  std::string layout_error;
};

class SequenceGenerator {
 public:
  explicit SequenceGenerator(uint64_t seed) : seed_(seed) {}
  // The index-th sequence of this seed.
  GeneratedSequence Generate(uint64_t index) const;

 private:
  uint64_t seed_;
};

// Encodes the items at kCodeVa (forward jumps resolved). Returns false if an item no longer
// encodes (cannot happen for generated sequences; possible for minimized ones).
bool Layout(const std::vector<SeqItem>& items, std::vector<uint8_t>* code,
            std::string* error = nullptr);

// Greedily removes items while the sequence still shows a difference. Returns the smallest
// failing item list found (at most max_runs differential runs).
std::vector<SeqItem> MinimizeFailure(const GeneratedSequence& seq, const RoveRunOptions& options,
                                     int max_runs);

}  // namespace rove::difftest
