#include "known_failures.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace rove::difftest {

const KnownFailures& GetKnownFailures() {
  static const KnownFailures known = [] {
    KnownFailures k;
    if (std::getenv("ROVE_DIFF_STRICT")) return k;
    std::ifstream f(std::string(ROVE_SOURCE_DIR) + "/tests/diff/known_failures.txt");
    for (std::string line; std::getline(f, line);) {
      line = line.substr(0, line.find('#'));
      std::istringstream in(line);
      std::string kind, name;
      if (!(in >> kind >> name)) continue;
      if (kind == "case") k.cases.insert(name);
      if (kind == "generator") k.generator.insert(name);
      if (kind == "mnemonic" || kind == "mnemonic32") {
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
        (kind == "mnemonic" ? k.mnemonics : k.mnemonics32).insert(name);
      }
    }
    return k;
  }();
  return known;
}

}  // namespace rove::difftest
