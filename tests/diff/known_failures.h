// tests/diff/known_failures.txt: hand-picked cases and random-generator mnemonics known to
// differ under rove. Empty when ROVE_DIFF_STRICT is set.
#pragma once

#include <set>
#include <string>

namespace rove::difftest {

struct KnownFailures {
  std::set<std::string> cases;        // "<family>.<case>"
  std::set<std::string> mnemonics;    // upper-case Zydis mnemonic names
  std::set<std::string> mnemonics32;  // ... left out of 32-bit (compatibility mode) sequences
  std::set<std::string> generator;    // random-generator features turned off
};

const KnownFailures& GetKnownFailures();

}  // namespace rove::difftest
