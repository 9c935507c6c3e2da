// Randomly generated sequences, run natively and under rove.
//
//   ROVE_DIFF_SEED=<n>    seed (default: from the clock; always printed)
//   ROVE_DIFF_COUNT=<n>   number of sequences (default 5000)
//   ROVE_DIFF_FIRST=<i>   start at sequence i (default 0)
//   ROVE_DIFF_INDEX=<i>   run only sequence i of the seed and print it
//   ROVE_DIFF_VERBOSE=1   print every sequence's outcome
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <string>

#include "random_gen.h"

namespace rove::difftest {
namespace {

uint64_t EnvU64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 0) : fallback;
}

uint64_t Seed() {
  static const uint64_t seed =
      EnvU64("ROVE_DIFF_SEED",
             static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) %
                 1000000007ull);
  return seed;
}

std::string Reproduce(uint64_t index) {
  return "reproduce with: ROVE_DIFF_SEED=" + std::to_string(Seed()) +
         " ROVE_DIFF_INDEX=" + std::to_string(index) +
         " rove_diff_tests --gtest_filter='RandomSequences.*'";
}

// The generator's promises, checked natively (no engine needed): every sequence lays out, runs
// to the end or to an arithmetic/alignment exception, never touches memory outside the data
// region (#PF) and never crashes the harness.
TEST(RandomSequences, GeneratorProducesValidSequences) {
  const uint64_t seed = Seed();
  std::printf("ROVE_DIFF_SEED=%llu\n", static_cast<unsigned long long>(seed));
  SequenceGenerator gen(seed);
  const uint64_t count = std::min<uint64_t>(EnvU64("ROVE_DIFF_COUNT", 5000), 500);
  uint64_t completed = 0, instructions = 0;
  std::map<int, uint64_t> vectors;
  for (uint64_t i = 0; i < count; ++i) {
    const GeneratedSequence seq = gen.Generate(i);
    ASSERT_FALSE(seq.input.code.empty())
        << "layout failed: " << seq.layout_error << "; " << Reproduce(i);
    const SequenceInfo info = AnalyzeSequence(seq.input.code, seq.input.compat32);
    ASSERT_FALSE(info.decode_error)
        << Disassemble(seq.input.code, seq.input.compat32) << Reproduce(i);
    instructions += info.offsets.size();
    const Outcome o = RunNative(seq.input);
    ASSERT_EQ(o.failure, "") << Disassemble(seq.input.code, seq.input.compat32) << Reproduce(i);
    if (!o.exception) {
      ++completed;
    } else {
      ++vectors[o.vector];
      if (std::getenv("ROVE_DIFF_VERBOSE")) {
        std::printf("#%llu %s\n%s", (unsigned long long)i, DescribeOutcome(info, o).c_str(),
                    Disassemble(seq.input.code, seq.input.compat32).c_str());
      }
      EXPECT_NE(o.vector, kVecPf) << "memory access outside the data region\n"
                                  << DescribeOutcome(info, o) << "\n"
                                  << Disassemble(seq.input.code, seq.input.compat32)
                                  << Reproduce(i);
    }
  }
  std::printf("%llu sequences, %llu instructions, %llu ran to the end", (unsigned long long)count,
              (unsigned long long)instructions, (unsigned long long)completed);
  for (const auto& [v, n] : vectors) std::printf(", vector %d: %llu", v, (unsigned long long)n);
  std::printf("\n");
  EXPECT_GT(completed * 10, count * 6) << "too many sequences end in an exception";
}

TEST(RandomSequences, NativeAndRoveAgree) {
  if (!RoveAvailable()) GTEST_SKIP() << "engine Vcpu not in this build";
  const uint64_t seed = Seed();
  SequenceGenerator gen(seed);
  RoveRunOptions options;
  options.isolate = std::getenv("ROVE_DIFF_NO_ISOLATE") == nullptr;
  const bool verbose = std::getenv("ROVE_DIFF_VERBOSE") != nullptr;
  const char* only = std::getenv("ROVE_DIFF_INDEX");
  uint64_t first = EnvU64("ROVE_DIFF_FIRST", 0), count = EnvU64("ROVE_DIFF_COUNT", 5000);
  if (only && *only) {
    first = std::strtoull(only, nullptr, 0);
    count = 1;
  }
  std::printf("ROVE_DIFF_SEED=%llu, %llu sequences from index %llu\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(count),
              static_cast<unsigned long long>(first));
  uint64_t failed = 0, instructions = 0;
  std::string failed_indices;
  for (uint64_t i = first; i < first + count; ++i) {
    const GeneratedSequence seq = gen.Generate(i);
    ASSERT_FALSE(seq.input.code.empty()) << seq.layout_error << "; " << Reproduce(i);
    const SequenceInfo info = AnalyzeSequence(seq.input.code, seq.input.compat32);
    instructions += info.offsets.size();
    Outcome native, rove;
    const std::string report = RunDifferential(seq.input, options, &native, &rove);
    if (verbose || only) {
      std::printf("#%llu native: %s; rove: %s\n%s", static_cast<unsigned long long>(i),
                  DescribeOutcome(info, native).c_str(), DescribeOutcome(info, rove).c_str(),
                  only ? Disassemble(seq.input.code, seq.input.compat32).c_str() : "");
    }
    if (report.empty()) continue;
    ++failed;
    if (failed_indices.size() < 400) failed_indices += " " + std::to_string(i);
    if (failed <= 5) {
      std::string minimized;
      const std::vector<SeqItem> small = MinimizeFailure(seq, options, 400);
      DiffInput in = seq.input;
      if (small.size() < seq.items.size() && Layout(small, &in.code)) {
        minimized = "\nminimized (" + std::to_string(small.size()) + " of " +
                    std::to_string(seq.items.size()) + " items):\n" + RunDifferential(in, options);
      }
      ADD_FAILURE() << report << minimized << "\n" << Reproduce(i);
    }
  }
  std::printf("%llu sequences, %llu instructions, %llu differ\n",
              static_cast<unsigned long long>(count), static_cast<unsigned long long>(instructions),
              static_cast<unsigned long long>(failed));
  EXPECT_EQ(failed, 0u) << failed << " of " << count << " sequences differ (seed " << seed
                        << "), indices:" << failed_indices;
}

}  // namespace
}  // namespace rove::difftest
