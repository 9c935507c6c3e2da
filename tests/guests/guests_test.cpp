// System test guests (tests/guests/*.asm): each starts in real mode at 0000:8000, checks one
// area of the machine and reports PASS (0x31) or the code of the failed check on port 0xF4.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "guest_runner.h"

namespace rove::testing {
namespace {

struct GuestCase {
  const char* name;
  const char* what;
};

void PrintTo(const GuestCase& c, std::ostream* os) {
  *os << c.name;
}

const GuestCase kGuests[] = {
    {"modes", "real -> protected -> long mode and back"},
    {"paging", "#PF handler fixes the mapping and the access is retried"},
    {"paging32", "#PF handling with 32-bit paging (PSE) and PAE paging in protected mode"},
    {"ist", "IDT gates with IST stacks, #DF on IST"},
    {"syscall", "SYSCALL/SYSRET and INT/IRETQ between CPL0 and CPL3"},
    {"privileged", "privileged instructions at CPL3 raise #GP(0)"},
    {"smc", "self-modifying code"},
    {"segments", "16- and 32-bit protected mode with non-zero segment bases"},
    {"random_bytes", "random bytes at CPL3 end in exceptions counted by the guest"},
};

// Guests that are known to fail, with the reason. A known failure that starts passing fails the
// test, so this list only shrinks.
const std::map<std::string, std::string> kKnownFailures = {};

class Guest : public ::testing::TestWithParam<GuestCase> {};

TEST_P(Guest, Passes) {
  if (!ROVE_TESTS_HAVE_VCPU) GTEST_SKIP() << "engine Vcpu not in this build";
  const std::vector<uint8_t> image = ReadFileBytes(GuestImagePath(GetParam().name));
  ASSERT_FALSE(image.empty()) << "missing " << GuestImagePath(GetParam().name);
  GuestOptions options;
  options.timeout_ms = 30000;
  const GuestResult r = RunGuestImage(image, options);
  ASSERT_EQ(r.error, "");
  auto known = kKnownFailures.find(GetParam().name);
  if (known != kKnownFailures.end()) {
    EXPECT_FALSE(r.exited && r.exit_value == kGuestPass)
        << GetParam().name << " now passes: remove it from kKnownFailures";
    std::printf("known failure: %s: %s\n", GetParam().name, known->second.c_str());
    return;
  }
  EXPECT_TRUE(r.exited) << GetParam().what << "\nstop: " << r.stop << "\nconsole:\n" << r.console;
  EXPECT_EQ(r.exit_value, kGuestPass) << GetParam().what << ": exit code " << std::hex
                                      << r.exit_value << "\nstop: " << r.stop << "\nconsole:\n"
                                      << r.console;
}

std::string GuestName(const ::testing::TestParamInfo<GuestCase>& info) {
  return info.param.name;
}

INSTANTIATE_TEST_SUITE_P(Guests, Guest, ::testing::ValuesIn(kGuests), GuestName);

}  // namespace
}  // namespace rove::testing

namespace rove::testing {
namespace {
// ROVE_GUEST_IMAGE=<path to a flat binary>: run it like the guests above and print the result.
TEST(GuestRunner, ImageFromEnvironment) {
  const char* path = std::getenv("ROVE_GUEST_IMAGE");
  if (!path || !*path) GTEST_SKIP() << "set ROVE_GUEST_IMAGE to run an image";
  if (!ROVE_TESTS_HAVE_VCPU) GTEST_SKIP() << "engine Vcpu not in this build";
  GuestOptions options;
  options.timeout_ms = 10000;
  const GuestResult r = RunGuestImage(ReadFileBytes(path), options);
  std::printf("error: %s\nexited: %d value %#x\nstop: %s\nconsole:\n%s\n", r.error.c_str(),
              r.exited, r.exit_value, r.stop.c_str(), r.console.c_str());
}

// xor ax, ax ; mov al, 0x31 ; out 0xF4, al ; hlt: the smallest real-mode program with a
// flag-setting instruction.
TEST(GuestRunner, RealModeXor) {
  if (!ROVE_TESTS_HAVE_VCPU) GTEST_SKIP() << "engine Vcpu not in this build";
  const std::vector<uint8_t> image = {0x31, 0xC0, 0xB0, 0x31, 0xE6, 0xF4, 0xF4};
  GuestOptions options;
  options.timeout_ms = 5000;
  const GuestResult r = RunGuestImage(image, options);
  ASSERT_EQ(r.error, "");
  EXPECT_TRUE(r.exited) << r.stop;
  EXPECT_EQ(r.exit_value, kGuestPass) << r.stop;
}

TEST(GuestRunner, TinyRealModeImage) {
  if (!ROVE_TESTS_HAVE_VCPU) GTEST_SKIP() << "engine Vcpu not in this build";
  // mov al, 0x31 ; out 0xF4, al ; hlt
  const std::vector<uint8_t> image = {0xB0, 0x31, 0xE6, 0xF4, 0xF4};
  GuestOptions options;
  options.timeout_ms = 5000;
  const GuestResult r = RunGuestImage(image, options);
  ASSERT_EQ(r.error, "");
  EXPECT_TRUE(r.exited) << r.stop;
  EXPECT_EQ(r.exit_value, kGuestPass) << r.stop;
}
}  // namespace
}  // namespace rove::testing
