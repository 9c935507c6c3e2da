// Random bytes must never crash the engine.
//
// RandomBytesGuest: the random_bytes guest with its random block replaced by bytes from many
// seeds; each run ends with the guest's PASS (enough exceptions counted) or, if the random code
// happens to loop forever at CPL3, with the watchdog. Never with a crash, never with an
// exception at CPL0 (FAIL_KERNEL_FAULT).
//
// RandomBytesDirect: random bytes placed straight into the test machine of tests/support (long
// mode, CPL0 or CPL3, IDT handlers that record the vector and halt), Run(max_exits) bounded and a
// watchdog, restarted at another offset after each halt (40 runs per seed); the stop reason must
// be one of the defined ones. At CPL3 the supervisor structures
// (page tables, GDT, IDT, TSS) and the control registers must come out unchanged.
//
// Every run happens in a forked child, so a crash names its seed. ROVE_RANDOM_SEEDS=<n> changes
// the number of seeds (default 24 for the guest, 150 per privilege level for the direct runs);
// ROVE_RANDOM_SEED_BASE=<n> the first seed.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "guest_runner.h"
#include "test_machine.h"
#include "xsave_layout.h"

#if ROVE_TESTS_HAVE_VCPU
#include "rove/engine/vcpu.h"
#endif

namespace rove::testing {
namespace {

uint64_t EnvU64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 0) : fallback;
}

void FillRandom(uint8_t* p, size_t n, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x1234567;
  for (size_t i = 0; i < n; ++i) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    p[i] = static_cast<uint8_t>(z >> 56);
  }
}

constexpr char kMarker[] = "ROVE-RANDOM-BYTES";
constexpr size_t kRandomBlock = 0x1000;

TEST(RandomBytesGuest, ManySeedsNeverCrash) {
  if (!ROVE_TESTS_HAVE_VCPU) GTEST_SKIP() << "engine Vcpu not in this build";
  const std::vector<uint8_t> image = ReadFileBytes(GuestImagePath("random_bytes"));
  ASSERT_FALSE(image.empty());
  const std::string text(image.begin(), image.end());
  const size_t marker = text.find(kMarker);
  ASSERT_NE(marker, std::string::npos);
  const size_t block = marker + sizeof(kMarker) - 1;
  ASSERT_LE(block + kRandomBlock, image.size());

  const uint64_t seeds = EnvU64("ROVE_RANDOM_SEEDS", 24);
  const uint64_t base = EnvU64("ROVE_RANDOM_SEED_BASE", 1);
  int passed = 0, looped = 0;
  for (uint64_t seed = base; seed < base + seeds; ++seed) {
    std::vector<uint8_t> img = image;
    FillRandom(img.data() + block, kRandomBlock, seed);
    struct Shared {
      uint8_t exited;
      uint32_t value;
      char stop[512];
      char console_tail[1024];
    };
    Shared result{};
    const std::string child = RunInChild(
        sizeof(Shared),
        [&](void* buf) {
          GuestOptions options;
          options.timeout_ms = 3000;
          const GuestResult r = RunGuestImage(img, options);
          auto* sh = static_cast<Shared*>(buf);
          sh->exited = r.exited;
          sh->value = r.exit_value;
          std::snprintf(sh->stop, sizeof(sh->stop), "%s%s", r.error.c_str(), r.stop.c_str());
          const size_t n = std::min(r.console.size(), sizeof(sh->console_tail) - 1);
          std::memcpy(sh->console_tail, r.console.data() + r.console.size() - n, n);
        },
        [&](const void* buf) { std::memcpy(&result, buf, sizeof(result)); }, 20000);
    ASSERT_EQ(child, "") << "seed " << seed << ": the engine did not survive";
    if (result.exited) {
      EXPECT_EQ(result.value, kGuestPass)
          << "seed " << seed << ": exit code " << std::hex << result.value
          << "\nstop: " << result.stop << "\nconsole:\n"
          << result.console_tail;
      if (result.value == kGuestPass) ++passed;
    } else {
      // Random code can loop forever at CPL3 without exceptions (no timer in this machine):
      // the watchdog ends it. Anything else is not a sane end.
      EXPECT_NE(std::string(result.stop).find("stop requested"), std::string::npos)
          << "seed " << seed << ": " << result.stop << "\nconsole:\n"
          << result.console_tail;
      ++looped;
    }
  }
  std::printf("%d seeds passed, %d ended by the watchdog (user-mode loops)\n", passed, looped);
  EXPECT_GT(passed, static_cast<int>(seeds) / 2);
}

#if ROVE_TESTS_HAVE_VCPU

struct DirectResult {
  StopReason reason;
  bool exception;
  uint8_t vector;
  int exceptions;
  bool sys_unchanged;
  bool control_unchanged;
  char message[256];
};

DirectResult RunDirect(uint64_t seed, bool user_mode) {
  DirectResult out{};
  std::unique_ptr<GuestMemory> mem = GuestMemory::Create(kTestRamBytes);
  TestMachineConfig config;
  config.user_mode = user_mode;
  BuildTestMachine(*mem, config);
  std::vector<uint8_t> bytes(kCodeSize);
  FillRandom(bytes.data(), kCodeSize, seed);
  WriteGuestVa(*mem, kCodeVa, bytes.data(), kCodeSize);
  FillRandom(bytes.data(), kDataSize, seed ^ 0x5555);
  WriteGuestVa(*mem, kDataVa, bytes.data(), kDataSize);
  // The supervisor structures, minus the IST stack and the mark the handlers write.
  std::vector<uint8_t> sys_before(mem->host_base() + kSysGpa,
                                  mem->host_base() + kSysGpa + kMarkOffset);
  std::vector<uint8_t> tables_before(mem->host_base() + kPml4Gpa,
                                     mem->host_base() + kPml4Gpa + 6 * kPageSize);
  RecordingIo io;
  Vcpu vcpu(*mem, io);
  io.set_vcpu(&vcpu);
  CpuState& s = vcpu.state();
  SetTestMachineState(s, config);
  for (int i = 0; i < 16; ++i) s.gpr[i] = kDataVa + 0x100 * static_cast<uint64_t>(i);
  s.gpr[kRsp] = kDataVa + kDataSize - 0x100;
  InitXsaveImage(s.xsave);
  const CpuState before = s;
  // Up to kRestarts runs: after each halt (a handler recorded an exception, or random CPL0 code
  // executed HLT) restart at another pseudo-random offset of the random code.
  constexpr int kRestarts = 40;
  uint64_t lcg = seed;
  StopInfo stop;
  for (int run = 0; run < kRestarts; ++run) {
    stop = RunWithWatchdog(vcpu, 20000, 1000);
    const GuestException e = ReadGuestException(*mem);
    if (e.taken) {
      out.exception = true;
      out.vector = e.vector;
      ++out.exceptions;
    }
    if (stop.reason != StopReason::kHalted || io.exited()) break;
    std::memset(mem->host_base() + kSysGpa + kMarkOffset, 0, 2);
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    const CpuState keep = s;
    SetTestMachineState(s, config);
    // Keep what the random code did to the control state (at CPL0 it may have changed it).
    s.cr0 = keep.cr0;
    s.cr3 = keep.cr3;
    s.cr4 = keep.cr4;
    s.efer = keep.efer;
    s.gdtr = keep.gdtr;
    s.idtr = keep.idtr;
    s.rip = kCodeVa + ((lcg >> 33) % (kCodeSize - 16));
    s.gpr[kRsp] = kDataVa + kDataSize - 0x100;
  }
  out.reason = stop.reason;
  std::snprintf(out.message, sizeof(out.message), "%s", stop.message.c_str());
  // The CPU itself may set accessed/dirty bits in paging entries and accessed bits in
  // descriptors; everything else must be as it was.
  auto same = [](const uint8_t* a, const uint8_t* b, size_t n, uint64_t ignore) {
    for (size_t i = 0; i + 8 <= n; i += 8) {
      uint64_t x, y;
      std::memcpy(&x, a + i, 8);
      std::memcpy(&y, b + i, 8);
      if ((x ^ y) & ~ignore) return false;
    }
    return true;
  };
  const uint64_t kPagingAD = (1ull << 5) | (1ull << 6);
  const uint64_t kDescAccessed = 1ull << 40;
  const uint8_t* sys_now = mem->host_base() + kSysGpa;
  out.sys_unchanged =
      same(sys_before.data(), sys_now, kTssOffset, kDescAccessed) &&
      same(sys_before.data() + kTssOffset, sys_now + kTssOffset, sys_before.size() - kTssOffset,
           0) &&
      same(tables_before.data(), mem->host_base() + kPml4Gpa, tables_before.size(), kPagingAD);
  out.control_unchanged = s.cr0 == before.cr0 && s.cr3 == before.cr3 && s.cr4 == before.cr4 &&
                          s.efer == before.efer && s.idtr.base == before.idtr.base &&
                          s.gdtr.base == before.gdtr.base && s.tr.base == before.tr.base;
  return out;
}

void RunDirectSeeds(bool user_mode) {
  const uint64_t seeds = EnvU64("ROVE_RANDOM_SEEDS", 150);
  const uint64_t base = EnvU64("ROVE_RANDOM_SEED_BASE", 1);
  int reasons[5] = {};
  int exceptions = 0;
  long total_exceptions = 0;
  for (uint64_t seed = base; seed < base + seeds; ++seed) {
    DirectResult result{};
    const std::string child = RunInChild(
        sizeof(DirectResult),
        [&](void* buf) {
          try {
            *static_cast<DirectResult*>(buf) = RunDirect(seed, user_mode);
          } catch (...) {
            _exit(3);
          }
        },
        // A seed is up to 40 runs of 20,000 exits plus one 1 s watchdog: a few seconds alone,
        // several times that in the ASan build on a loaded 2-core machine (15 s was hit twice
        // at load 7-9). A hung engine still fails here.
        [&](const void* buf) { std::memcpy(&result, buf, sizeof(result)); }, 60000);
    ASSERT_EQ(child, "") << (user_mode ? "CPL3" : "CPL0") << " seed " << seed
                         << ": the engine did not survive";
    const int r = static_cast<int>(result.reason);
    ASSERT_GE(r, 0);
    ASSERT_LT(r, 5) << "seed " << seed << ": undefined stop reason";
    ++reasons[r];
    if (result.exception) ++exceptions;
    total_exceptions += result.exceptions;
    if (result.reason == StopReason::kShutdown) {
      EXPECT_NE(result.message[0], 0) << "seed " << seed << ": shutdown without a report";
    }
    if (user_mode) {
      EXPECT_TRUE(result.sys_unchanged)
          << "seed " << seed << ": CPL3 code changed supervisor memory";
      EXPECT_TRUE(result.control_unchanged)
          << "seed " << seed << ": CPL3 code changed control registers or tables";
      // At CPL3 nothing ends a run but an exception (then the CPL0 handlers halt), a loop (the
      // watchdog) or the exit limit.
      EXPECT_NE(result.reason, StopReason::kShutdown) << "seed " << seed;
      EXPECT_NE(result.reason, StopReason::kDebugExit) << "seed " << seed;
    }
  }
  std::printf(
      "%s: %llu seeds, %ld guest exceptions; last stop: halted %d (with a guest "
      "exception: %d), shutdown %d, stop requested %d, instruction limit %d, debug exit "
      "%d\n",
      user_mode ? "CPL3" : "CPL0", static_cast<unsigned long long>(seeds), total_exceptions,
      reasons[static_cast<int>(StopReason::kHalted)], exceptions,
      reasons[static_cast<int>(StopReason::kShutdown)],
      reasons[static_cast<int>(StopReason::kStopRequested)],
      reasons[static_cast<int>(StopReason::kInstructionLimit)],
      reasons[static_cast<int>(StopReason::kDebugExit)]);
}

TEST(RandomBytesDirect, LongModeCpl0) {
  RunDirectSeeds(false);
}

TEST(RandomBytesDirect, LongModeCpl3) {
  RunDirectSeeds(true);
}

#endif

}  // namespace
}  // namespace rove::testing
