// Hand-picked differential cases: tests/diff/cases/<family>.asm, assembled at build time into
// <build>/tests/diff_cases/<family>.bin (format in cases/prelude.inc). One test per family runs
// every case in it natively and under rove and reports each case that differs.
//
// ROVE_DIFF_CASE=<substring> runs only the cases whose name contains it (all families).
// ROVE_DIFF_VERBOSE=1 prints every case's outcome.
#include <dirent.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

#include "harness.h"
#include "known_failures.h"

namespace rove::difftest {
namespace {

struct CaseFile {
  std::string family;
  std::string path;
};

void PrintTo(const CaseFile& f, std::ostream* os) {
  *os << f.family;
}

struct Case {
  std::string name;
  std::vector<uint8_t> code;
  uint32_t ignore_flags = 0;
  bool compat32 = false;
};

std::vector<CaseFile> ListFamilies() {
  std::vector<CaseFile> files;
  DIR* dir = opendir(ROVE_DIFF_CASES_DIR);
  if (!dir) return files;
  while (dirent* e = readdir(dir)) {
    const std::string name = e->d_name;
    if (name.size() > 4 && name.substr(name.size() - 4) == ".bin") {
      files.push_back(
          {name.substr(0, name.size() - 4), std::string(ROVE_DIFF_CASES_DIR) + "/" + name});
    }
  }
  closedir(dir);
  std::sort(files.begin(), files.end(),
            [](const CaseFile& a, const CaseFile& b) { return a.family < b.family; });
  return files;
}

uint32_t U32(const std::vector<uint8_t>& b, size_t off) {
  uint32_t v;
  std::memcpy(&v, b.data() + off, 4);
  return v;
}

// Parses a case binary; returns an error message or "".
std::string LoadCases(const std::string& path, std::vector<Case>* cases) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return "cannot open " + path;
  const std::vector<uint8_t> bin((std::istreambuf_iterator<char>(f)), {});
  if (bin.size() < 64 || U32(bin, 0) != 0x46464944) return path + ": not a case file";
  const uint32_t count = U32(bin, 4);
  const bool compat32 = U32(bin, 8) == 32;
  if (bin.size() < 64 + 64ull * count) return path + ": truncated index";
  for (uint32_t i = 0; i < count; ++i) {
    const size_t e = 64 + 64ull * i;
    Case c;
    const uint32_t offset = U32(bin, e), length = U32(bin, e + 4);
    c.ignore_flags = U32(bin, e + 8);
    c.compat32 = compat32;
    const char* name = reinterpret_cast<const char*>(bin.data() + e + 16);
    c.name.assign(name, strnlen(name, 48));
    if (offset + static_cast<uint64_t>(length) > bin.size()) return path + ": bad case " + c.name;
    c.code.assign(bin.begin() + offset, bin.begin() + offset + length);
    cases->push_back(std::move(c));
  }
  return "";
}

class HandPicked : public ::testing::TestWithParam<CaseFile> {};

TEST_P(HandPicked, NativeAndRoveAgree) {
  std::vector<Case> cases;
  const std::string err = LoadCases(GetParam().path, &cases);
  ASSERT_EQ(err, "");
  ASSERT_FALSE(cases.empty());
  const char* filter = std::getenv("ROVE_DIFF_CASE");
  const bool verbose = std::getenv("ROVE_DIFF_VERBOSE") != nullptr;
  RoveRunOptions options;
  options.isolate = std::getenv("ROVE_DIFF_NO_ISOLATE") == nullptr;
  int run = 0, failed = 0;
  std::vector<std::string> failed_names, known_seen, known_fixed;
  const KnownFailures& known = GetKnownFailures();
  for (const Case& c : cases) {
    if (filter && c.name.find(filter) == std::string::npos) continue;
    ++run;
    DiffInput input = MakeDefaultInput(GetParam().family + "." + c.name, c.code, 0);
    input.ignore_flags = c.ignore_flags;
    input.compat32 = c.compat32;
    Outcome native, rove;
    const std::string report = RunDifferential(input, options, &native, &rove);
    // The native side must always work: a failure there is a bug in the case or the harness.
    EXPECT_EQ(native.failure, "") << input.name << "\n" << Disassemble(input.code, c.compat32);
    if (verbose) {
      const SequenceInfo info = AnalyzeSequence(input.code, c.compat32);
      std::printf("%-40s native: %s; rove: %s\n", input.name.c_str(),
                  DescribeOutcome(info, native).c_str(), DescribeOutcome(info, rove).c_str());
    }
    const bool is_known = known.cases.count(input.name) != 0;
    if (is_known && RoveAvailable()) {
      if (report.empty()) {
        known_fixed.push_back(c.name);
      } else {
        known_seen.push_back(c.name);
      }
      continue;
    }
    if (!report.empty()) {
      ++failed;
      failed_names.push_back(c.name);
      if (failed <= 20) ADD_FAILURE() << report;
    }
  }
  if (!RoveAvailable()) {
    GTEST_SKIP() << "engine Vcpu not in this build: only the native side ran (" << run << " cases)";
  }
  std::string names;
  for (const std::string& n : failed_names) names += " " + n;
  EXPECT_EQ(failed, 0) << failed << " of " << run << " cases differ:" << names;
  for (const std::string& n : known_seen) {
    std::printf("known failure (tests/diff/known_failures.txt): %s.%s\n", GetParam().family.c_str(),
                n.c_str());
  }
  for (const std::string& n : known_fixed) {
    ADD_FAILURE() << GetParam().family << "." << n
                  << " now agrees: remove it from tests/diff/known_failures.txt";
  }
}

std::string FamilyName(const ::testing::TestParamInfo<CaseFile>& info) {
  return info.param.family;
}

INSTANTIATE_TEST_SUITE_P(Cases, HandPicked, ::testing::ValuesIn(ListFamilies()), FamilyName);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(HandPicked);

}  // namespace
}  // namespace rove::difftest
