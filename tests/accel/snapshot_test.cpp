// Snapshots: a running machine saved mid-computation and loaded into a fresh machine continues to
// the same result, registers and memory; bad snapshot files are rejected with a clear error.
// Also: switching a running machine's accelerator to an unusable KVM fails cleanly and the
// machine runs on.
#include "rove/engine/snapshot.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "rove/devices/device_state.h"
#include "rove/engine/machine.h"

namespace rove {
namespace {

constexpr uint32_t kIterations = 150'000'000;

// A multiboot kernel (flat, loaded at 1 MiB, entered in 32-bit protected mode):
//   mov ecx, N; xor eax, eax; l: imul eax, eax, 31; add eax, ecx; dec ecx; jnz l;
//   mov [0x200000], eax; mov al, 0x11; out 0xF4, al; hlt
std::vector<uint8_t> ComputeKernel() {
  std::vector<uint8_t> k;
  auto u32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) k.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  const uint8_t code[] = {0xB9, 0,    0,    0,    0,    0x31, 0xC0, 0x6B, 0xC0,
                          0x1F, 0x01, 0xC8, 0x49, 0x75, 0xF8, 0xA3, 0x00, 0x00,
                          0x20, 0x00, 0xB0, 0x11, 0xE6, 0xF4, 0xF4};
  const uint32_t base = 0x100000, end = base + 32 + sizeof code;
  u32(0x1BADB002);
  u32(0x00010000);
  u32(-(0x1BADB002u + 0x00010000u));
  u32(base);       // header_addr
  u32(base);       // load_addr
  u32(end);        // load_end_addr
  u32(end);        // bss_end_addr
  u32(base + 32);  // entry
  k.insert(k.end(), code, code + sizeof code);
  std::memcpy(k.data() + 32 + 1, &kIterations, 4);
  return k;
}

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "rove_snapshot_" + std::to_string(getpid()) + "_" + name;
}

MachineConfig Config(const std::string& kernel, uint64_t ram = 64ull << 20) {
  MachineConfig c;
  c.ram_bytes = ram;
  c.cpus = 1;
  c.kernel_path = kernel;
  return c;
}

class SnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kernel_ = TempPath("kernel.bin");
    const std::vector<uint8_t> k = ComputeKernel();
    std::ofstream(kernel_, std::ios::binary)
        .write(reinterpret_cast<const char*>(k.data()), static_cast<std::streamsize>(k.size()));
  }
  void TearDown() override {
    std::remove(kernel_.c_str());
    std::remove(TempPath("snap").c_str());
  }
  std::string kernel_;
};

struct Section {
  std::vector<uint8_t> payload;
};

std::vector<uint8_t> SectionPayload(const std::vector<uint8_t>& snap, const char (&tag)[5]) {
  for (const SnapshotSection& s : DecodeSnapshot(snap))
    if (s.tag == StateTag(tag)) return s.payload;
  ADD_FAILURE() << "no section " << tag;
  return {};
}

CpuState FirstCpu(const std::vector<uint8_t>& snap) {
  const std::vector<uint8_t> cpus = SectionPayload(snap, "CPUS");
  StateReader r(cpus);
  StateReader rec = r.ReadRecord(StateTag("VCPU"), 1);
  CpuState s;
  uint64_t tsc = 0;
  ReadCpuState(rec, s, tsc);
  return s;
}

// The compute kernel's result, as stored at 0x200000 in the snapshot's RAM section.
void ExpectKnownResult(const std::vector<uint8_t>& snapshot) {
  uint32_t x = 0;
  for (uint32_t c = kIterations; c != 0; --c) x = x * 31 + c;
  const std::vector<uint8_t> ram = SectionPayload(snapshot, "RAM ");
  bool found = false;
  for (size_t pos = 8; pos + 8 + 4096 <= ram.size(); pos += 8 + 4096) {
    uint64_t gpa = 0;
    std::memcpy(&gpa, ram.data() + pos, 8);
    if (gpa != 0x200000) continue;
    uint32_t stored = 0;
    std::memcpy(&stored, ram.data() + pos + 8, 4);
    EXPECT_EQ(stored, x);
    found = true;
  }
  EXPECT_TRUE(found) << "result page missing from the snapshot";
}

TEST_F(SnapshotTest, SavedMidComputationAndLoadedIntoAFreshMachineEndsTheSame) {
  Machine a(Config(kernel_));
  MachineResult a_result;
  std::thread runner([&] { a_result = a.Run(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  a.SaveSnapshotFile(TempPath("snap"));
  runner.join();
  ASSERT_EQ(a_result.reason, MachineStopReason::kDebugExit) << a_result.message;
  EXPECT_EQ(a_result.exit_status, (0x11 << 1) | 1);

  const std::vector<uint8_t> snap = ReadSnapshotFile(TempPath("snap"));
  const CpuState at_save = FirstCpu(snap);
  // Taken mid-computation: the loop counter is neither its start value nor done.
  ASSERT_GT(at_save.gpr[kRcx], 0u);
  ASSERT_LT(at_save.gpr[kRcx], kIterations) << "snapshot taken before the loop started";

  Machine b(Config(kernel_));
  b.LoadSnapshotFile(TempPath("snap"));
  // Loaded, not restarted: saving right away gives the saved vCPU state back.
  const CpuState loaded = FirstCpu(b.SaveSnapshot());
  EXPECT_EQ(loaded.gpr[kRcx], at_save.gpr[kRcx]);
  EXPECT_EQ(loaded.gpr[kRax], at_save.gpr[kRax]);
  EXPECT_EQ(loaded.rip, at_save.rip);
  EXPECT_EQ(SectionPayload(b.SaveSnapshot(), "RAM "), SectionPayload(snap, "RAM "));

  const MachineResult b_result = b.Run();
  ASSERT_EQ(b_result.reason, MachineStopReason::kDebugExit) << b_result.message;
  EXPECT_EQ(b_result.exit_status, a_result.exit_status);
  // Same registers and memory at the end.
  const std::vector<uint8_t> a_end = a.SaveSnapshot(), b_end = b.SaveSnapshot();
  const CpuState a_cpu = FirstCpu(a_end), b_cpu = FirstCpu(b_end);
  for (int i = 0; i < kGprCount; ++i) EXPECT_EQ(a_cpu.gpr[i], b_cpu.gpr[i]) << "GPR " << i;
  EXPECT_EQ(a_cpu.rip, b_cpu.rip);
  EXPECT_EQ(SectionPayload(a_end, "RAM "), SectionPayload(b_end, "RAM "));
  ExpectKnownResult(b_end);
}

void ExpectRejected(Machine& m, const std::vector<uint8_t>& bytes, const std::string& needle) {
  try {
    m.LoadSnapshot(bytes);
    ADD_FAILURE() << "accepted a bad snapshot (expected: " << needle << ")";
  } catch (const SnapshotError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST_F(SnapshotTest, CorruptTruncatedAndMismatchedSnapshotsAreRejected) {
  Machine source(Config(kernel_));
  const std::vector<uint8_t> good = source.SaveSnapshot();
  Machine m(Config(kernel_));

  ExpectRejected(m, {}, "not a rove snapshot");
  std::vector<uint8_t> bad = good;
  bad[0] = 'X';
  ExpectRejected(m, bad, "not a rove snapshot");

  bad = good;
  bad[8] = 99;  // format version
  ExpectRejected(m, bad, "format version 99 is not supported");

  for (size_t cut : {size_t{15}, size_t{16}, size_t{30}, good.size() / 3, good.size() - 1}) {
    SCOPED_TRACE(cut);
    ExpectRejected(m, std::vector<uint8_t>(good.begin(), good.begin() + cut),
                   cut < 16 ? "not a rove snapshot" : "truncated");
  }

  bad = good;
  bad[bad.size() / 2] ^= 0x40;  // inside the RAM section
  ExpectRejected(m, bad, "corrupt (checksum mismatch)");

  bad = good;
  bad.push_back(0);
  ExpectRejected(m, bad, "unexpected bytes");

  // A well-formed container whose vCPU payload is malformed (RFLAGS with undefined bits).
  std::vector<SnapshotSection> sections = DecodeSnapshot(good);
  ASSERT_EQ(sections[1].tag, StateTag("CPUS"));
  const size_t rflags_offset = 12 + 16 * 8 + 8;  // record header, GPRs, RIP
  sections[1].payload[rflags_offset + 7] = 0xFF;
  ExpectRejected(m, EncodeSnapshot(sections), "invalid RFLAGS");

  // Sections out of order.
  sections = DecodeSnapshot(good);
  std::swap(sections[1], sections[2]);
  ExpectRejected(m, EncodeSnapshot(sections), "expected 'CPUS'");

  // Another machine shape.
  Machine small(Config(kernel_, 32ull << 20));
  ExpectRejected(small, good, "64 MiB and 1 vCPUs; this one has 32 MiB");

  try {
    m.LoadSnapshotFile(TempPath("does-not-exist"));
    ADD_FAILURE() << "loaded a missing file";
  } catch (const SnapshotError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open"), std::string::npos) << e.what();
  }
}

TEST_F(SnapshotTest, ABadDeviceOrVcpuSectionLeavesTheMachineUnchanged) {
  // A snapshot taken mid-computation differs from a fresh machine in RAM and registers.
  Machine a(Config(kernel_));
  std::thread runner([&] { a.Run(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  const std::vector<uint8_t> mid = a.SaveSnapshot();
  runner.join();
  ASSERT_NE(FirstCpu(mid).gpr[kRcx], 0u);

  Machine m(Config(kernel_));
  const std::vector<uint8_t> before = m.SaveSnapshot();
  auto expect_unchanged = [&] {
    const std::vector<uint8_t> now = m.SaveSnapshot();
    EXPECT_EQ(SectionPayload(now, "RAM "), SectionPayload(before, "RAM "));
    const CpuState was = FirstCpu(before), is = FirstCpu(now);
    for (int i = 0; i < kGprCount; ++i) EXPECT_EQ(is.gpr[i], was.gpr[i]) << "GPR " << i;
    EXPECT_EQ(is.rip, was.rip);
    // (Device records hold times relative to the moment of saving, so they are not compared
    // byte for byte; devices/ tests that a failed load leaves every device unchanged.)
  };

  std::vector<SnapshotSection> sections = DecodeSnapshot(mid);
  ASSERT_EQ(sections[2].tag, StateTag("DEVS"));
  sections[2].payload.push_back(0);  // a byte after the last device record
  ExpectRejected(m, EncodeSnapshot(sections), "DEVS");
  expect_unchanged();

  sections = DecodeSnapshot(mid);
  sections[2].payload.resize(sections[2].payload.size() - 1);  // last device record cut short
  ExpectRejected(m, EncodeSnapshot(sections), "remain");
  expect_unchanged();

  sections = DecodeSnapshot(mid);
  sections[1].payload.push_back(0);  // a byte after the vCPU record
  ExpectRejected(m, EncodeSnapshot(sections), "CPUS");
  expect_unchanged();

  // The intact snapshot then loads.
  m.LoadSnapshot(mid);
  EXPECT_EQ(FirstCpu(m.SaveSnapshot()).gpr[kRcx], FirstCpu(mid).gpr[kRcx]);
}

// The whole machine moves bt -> kvm -> bt several times while the guest computes; the result is
// the known one. KVM stints are a few milliseconds (KVM here is software, thousands of times
// slower).
TEST_F(SnapshotTest, RunningMachineSwitchesBtKvmBtAndComputesTheKnownResult) {
  const std::string unusable = KvmUnusableReason();
  if (!unusable.empty()) GTEST_SKIP() << "KVM not usable here: " << unusable;
  Machine m(Config(kernel_));
  MachineResult result;
  std::thread runner([&] { result = m.Run(); });
  int kvm_stints = 0, kvm_progressed = 0;
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(40));
    m.SwitchAccelerator(AccelKind::kKvm);
    ++kvm_stints;
    // Snapshots taken on KVM: the loop counter moves while KVM runs the guest.
    const uint64_t before = FirstCpu(m.SaveSnapshot()).gpr[kRcx];
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    const uint64_t after = FirstCpu(m.SaveSnapshot()).gpr[kRcx];
    if (after < before) ++kvm_progressed;
    EXPECT_EQ(m.accelerator(), AccelKind::kKvm);
    m.SwitchAccelerator(AccelKind::kBt);
  }
  runner.join();
  EXPECT_GE(kvm_progressed, 1) << "the guest never advanced while on KVM";
  ASSERT_EQ(result.reason, MachineStopReason::kDebugExit) << result.message;
  EXPECT_EQ(result.exit_status, (0x11 << 1) | 1);
  EXPECT_EQ(m.accelerator(), AccelKind::kBt);
  EXPECT_GE(m.stats().cpu.kvm_exits, static_cast<uint64_t>(kvm_stints));
  ExpectKnownResult(m.SaveSnapshot());
}

TEST_F(SnapshotTest, SwitchingARunningMachineToUnusableKvmFailsCleanlyAndRunsOn) {
  MachineConfig config = Config(kernel_);
  config.kvm_device = TempPath("no-kvm");
  Machine m(config);
  MachineResult result;
  std::thread runner([&] { result = m.Run(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_THROW(m.SwitchAccelerator(AccelKind::kKvm), KvmUnavailable);
  EXPECT_EQ(m.accelerator(), AccelKind::kBt);
  m.SwitchAccelerator(AccelKind::kBt);  // a pause and resume on the same accelerator
  runner.join();
  ASSERT_EQ(result.reason, MachineStopReason::kDebugExit) << result.message;
  EXPECT_EQ(result.exit_status, (0x11 << 1) | 1);
}

}  // namespace
}  // namespace rove
