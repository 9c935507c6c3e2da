// Robustness: random instruction bytes and random register values in every mode must only ever
// produce guest-visible outcomes (exceptions, halts, shutdown reports), never a crash or a
// sanitizer report. The seed is fixed and printed so a failure reproduces.
#include <random>

#include "emulator_test_env.h"

namespace rove::test {
namespace {

class EmulatorFuzzTest : public EmulatorTest, public ::testing::WithParamInterface<int> {
 protected:
  void SetupMode(int mode) {
    switch (mode) {
      case 0:
        SetupReal();
        break;
      case 1:
        SetupProtected32();
        break;
      case 2:
        SetupProtected32();
        EnterUser32();
        break;
      case 3:
        SetupLong64();
        break;
      default:
        SetupLong64();
        EnterUser64();
        break;
    }
  }
};

TEST_P(EmulatorFuzzTest, RandomBytesNeverEscapeTheEmulator) {
  const int mode = GetParam();
  const uint32_t seed = 0x5EED0000u + static_cast<uint32_t>(mode);
  SCOPED_TRACE(testing::Message() << "seed " << std::hex << seed << " mode " << mode);
  std::mt19937_64 rng(seed);
  // Prefixes and opcodes weighted towards what the emulator handles.
  static const uint8_t kInteresting[] = {
      0x0F, 0x0F, 0x0F, 0xF3, 0xF2, 0x66, 0x67, 0x48, 0xCF, 0xCD, 0xCC, 0xFA, 0xFB, 0x9C, 0x9D,
      0xA4, 0xA5, 0xAA, 0xAB, 0xAC, 0xA6, 0xAE, 0x6C, 0x6E, 0xE4, 0xE6, 0xEC, 0xEE, 0x8E, 0x8C,
      0xEA, 0x9A, 0xCA, 0xCB, 0xFF, 0xC4, 0x62, 0x01, 0x00, 0x20, 0x22, 0x21, 0x23, 0x30, 0x32,
      0xA2, 0x31, 0x05, 0x07, 0x34, 0x35, 0xAE, 0xC7, 0x90, 0x27, 0xD4, 0xD5, 0x60, 0x61, 0xC8};
  uint64_t outcomes[4] = {};
  SetupMode(mode);
  for (int i = 0; i < 20000; ++i) {
    if (i % 50 == 0) SetupMode(mode);  // keep the state from drifting too far
    uint8_t code[15];
    for (uint8_t& b : code) {
      b = (rng() % 3 == 0) ? kInteresting[rng() % sizeof(kInteresting)]
                           : static_cast<uint8_t>(rng());
    }
    for (int r = 0; r < 16; ++r) {
      if (r == kRsp) continue;
      switch (rng() % 4) {
        case 0:
          s.gpr[r] = rng() % 0x200000;
          break;  // mapped, plausible addresses
        case 1:
          s.gpr[r] = rng();
          break;
        case 2:
          s.gpr[r] = rng() % 64;
          break;
        default:
          break;
      }
    }
    s.halted = false;
    uint64_t linear = (s.seg[kCs].base + s.rip) & (s.code64() ? ~0ull : 0xFFFFFFFFull);
    if (linear + sizeof(code) > mem->ram_size() || s.rip > 0xFFFFFFFF) SetupMode(mode);
    linear = (s.seg[kCs].base + s.rip) & 0xFFFFFFFFull;
    mem->Write(linear, code, sizeof(code));
    EmulationResult r = emu.EmulateInstruction();
    outcomes[static_cast<int>(r.outcome)]++;
    if (r.outcome == EmulationOutcome::kShutdown) {
      EXPECT_FALSE(r.message.empty());
      SetupMode(mode);
    }
  }
  // Most random bytes end in an exception delivered to a handler (kContinue).
  EXPECT_GT(outcomes[static_cast<int>(EmulationOutcome::kContinue)], 5000u);
}

INSTANTIATE_TEST_SUITE_P(Modes, EmulatorFuzzTest, ::testing::Values(0, 1, 2, 3, 4));

}  // namespace
}  // namespace rove::test
