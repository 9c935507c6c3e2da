// The assembled PC: windows, callbacks and interrupt paths end to end.
#include "rove/devices/device_manager.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

namespace rove {
namespace {

using namespace pc;

class PcTest : public ::testing::Test {
 protected:
  void Build(unsigned cpus = 2, const Clock* clk = nullptr, bool thread = false) {
    PcConfig config;
    config.cpus = cpus;
    config.ram_size = 5ull << 30;  // 3 GiB low, 2 GiB high
    config.clock = clk ? clk : &clock;
    config.start_timer_thread = thread;
    PcCallbacks cb;
    cb.com1_output = [this](uint8_t b) { console += char(b); };
    cb.reset = [this] { ++resets; };
    cb.power_off = [this] { ++power_offs; };
    cb.debug_exit = [this](int status) { exit_status = status; };
    cb.wake = [this](unsigned cpu) {
      std::lock_guard lock(mu);
      wakes.push_back(cpu);
      woken = true;
      cv.notify_all();
    };
    cb.startup = [this](unsigned cpu, StartupEvent e) {
      std::lock_guard lock(mu);
      startups.push_back({cpu, e});
    };
    devices = BuildPcDevices(config, std::move(cb), pio, mmio);
  }
  void Out(uint16_t port, uint8_t v) { pio.Write(port, std::array<uint8_t, 1>{v}); }
  void Out32(uint16_t port, uint32_t v) {
    std::array<uint8_t, 4> b{};
    StoreLe(b, v);
    pio.Write(port, b);
  }
  uint8_t In(uint16_t port) {
    std::array<uint8_t, 1> b{};
    pio.Read(port, b);
    return b[0];
  }
  uint32_t In32(uint16_t port) {
    std::array<uint8_t, 4> b{};
    pio.Read(port, b);
    return uint32_t(LoadLe(b));
  }
  void Mmio32(uint64_t addr, uint32_t v) {
    std::array<uint8_t, 4> b{};
    StoreLe(b, v);
    mmio.Write(addr, b);
  }
  void Lapic32(unsigned cpu, uint32_t reg, uint32_t v) {
    std::array<uint8_t, 4> b{};
    StoreLe(b, v);
    devices->lapic(cpu).MmioWrite(reg, b);
  }
  void IoApicRoute(unsigned pin, uint32_t low, uint8_t dest) {
    Mmio32(kIoApicBase, 0x11 + 2 * pin);
    Mmio32(kIoApicBase + 0x10, uint32_t(dest) << 24);
    Mmio32(kIoApicBase, 0x10 + 2 * pin);
    Mmio32(kIoApicBase + 0x10, low);
  }
  void LinuxPicInit() {
    for (auto [port, v] : std::vector<std::pair<uint16_t, uint8_t>>{{0x21, 0xFF},
                                                                    {0xA1, 0xFF},
                                                                    {0x20, 0x11},
                                                                    {0x21, 0x30},
                                                                    {0x21, 0x04},
                                                                    {0x21, 0x01},
                                                                    {0xA0, 0x11},
                                                                    {0xA1, 0x38},
                                                                    {0xA1, 0x02},
                                                                    {0xA1, 0x01}}) {
      Out(port, v);
    }
  }

  ManualClock clock{1'000'000'000};
  HostClock host_clock;
  Bus pio{"pio"};
  Bus mmio{"mmio"};
  std::string console;
  int resets = 0;
  int power_offs = 0;
  int exit_status = -1;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<unsigned> wakes;
  std::vector<std::pair<unsigned, StartupEvent>> startups;
  bool woken = false;
  // Last: destroyed (and its timer thread stopped) before what the callbacks use.
  std::unique_ptr<PcDevices> devices;
};

TEST_F(PcTest, EveryWindowAnswers) {
  Build();
  // COM1 console.
  for (char c : std::string("ok\n")) Out(kCom1Port, uint8_t(c));
  EXPECT_EQ(console, "ok\n");
  EXPECT_EQ(In(kCom2Port + 5) & 0x60, 0x60);  // COM2 exists (LSR)
  // fw_cfg signature.
  pio.Write(kFwCfgPort, std::array<uint8_t, 2>{0, 0});
  std::string sig;
  for (int i = 0; i < 4; ++i) sig += char(In(kFwCfgPort + 1));
  EXPECT_EQ(sig, "QEMU");
  // CMOS memory size above 16 MiB (3 GiB low RAM) and above 4 GiB (2 GiB).
  Out(kCmosPort, 0x34);
  const int lo = In(kCmosPort + 1);
  Out(kCmosPort, 0x35);
  EXPECT_EQ(lo | (In(kCmosPort + 1) << 8), (0xC0000000 - 0x1000000) >> 16);
  EXPECT_EQ(
      devices->rtc().byte(0x5D) << 16 | devices->rtc().byte(0x5C) << 8 | devices->rtc().byte(0x5B),
      (2ull << 30) >> 16);
  EXPECT_EQ(devices->rtc().byte(0x5F), 1);
  // PCI host bridge through 0xCF8/0xCFC and ECAM.
  Out32(kPciConfigPort, 0x80000000);
  EXPECT_EQ(In32(0xCFC), 0x12378086u);
  std::array<uint8_t, 4> b{};
  mmio.Read(kPciEcamBase, b);
  EXPECT_EQ(LoadLe(b), 0x12378086u);
  // I/O APIC ID matches the MADT (ID = number of CPUs).
  Mmio32(kIoApicBase, 0);
  mmio.Read(kIoApicBase + 0x10, b);
  EXPECT_EQ(LoadLe(b), 2u << 24);
  // PIT, port B, i8042, POST.
  Out(kPitPort + 3, 0x00);
  In(kPitPort);
  EXPECT_NE(In(kI8042CommandPort), 0xFF);
  Out(kPostPort, 0x12);
  EXPECT_EQ(devices->post_code().last(), 0x12);
  EXPECT_EQ(pio.unclaimed_reads(), 0u);
  EXPECT_EQ(pio.unclaimed_writes(), 0u);
  // Something that is not there.
  EXPECT_EQ(In(0x92), 0xFF);
  EXPECT_EQ(pio.unclaimed_reads(), 1u);
}

TEST_F(PcTest, CallbacksForResetPowerOffAndDebugExit) {
  Build();
  Out(kI8042CommandPort, 0xFE);
  EXPECT_EQ(resets, 1);
  Out(kResetPort, kResetValue);
  EXPECT_EQ(resets, 2);
  pio.Write(kPm1aControlPort,
            std::array<uint8_t, 2>{0, uint8_t(((kSlpTypS5 << 10) | (1u << 13)) >> 8)});
  EXPECT_EQ(power_offs, 1);
  Out(kDebugExitPort, 3);
  EXPECT_EQ(exit_status, 7);
  EXPECT_EQ(devices->debug_exit().status(), 7);
}

TEST_F(PcTest, BuildingTwiceOnTheSameBusesFails) {
  Build();
  PcConfig config;
  config.clock = &clock;
  config.start_timer_thread = false;
  EXPECT_THROW(BuildPcDevices(config, PcCallbacks{}, pio, mmio), std::runtime_error);
}

TEST_F(PcTest, UartInterruptThroughThePicVirtualWire) {
  Build();
  LinuxPicInit();
  Out(0x21, uint8_t(~(1u << kCom1Irq)));  // unmask IRQ4 only
  Out(kCom1Port + 1, 0x01);               // IER: RX data
  const uint8_t byte = 'k';
  devices->com1().Receive(std::span(&byte, 1));
  EXPECT_TRUE(devices->interrupts().HasInterrupt(0));
  EXPECT_FALSE(devices->interrupts().HasInterrupt(1));
  EXPECT_EQ(devices->interrupts().AcknowledgeInterrupt(0), 0x34);
  EXPECT_EQ(In(kCom1Port), 'k');
  Out(0x20, 0x20);
  EXPECT_FALSE(devices->interrupts().HasInterrupt(0));
  std::lock_guard lock(mu);
  EXPECT_FALSE(wakes.empty());
}

TEST_F(PcTest, PitThroughTheIoApicToTheBsp) {
  Build();
  Lapic32(0, LocalApic::kRegSvr, 0x1FF);
  IoApicRoute(kPitGsi, 0x20, 0);  // edge, fixed, vector 0x20, APIC 0
  Out(kPitPort + 3, 0x34);        // mode 2, HZ=250
  Out(kPitPort, 0xA9);
  Out(kPitPort, 0x12);
  int ticks = 0;
  for (int i = 0; i < 5; ++i) {
    clock.Advance(4'004'000);  // one period is 4777 ticks = 4.0035 ms
    devices->timers().RunDue();
    if (devices->interrupts().AcknowledgeInterrupt(0) == 0x20) {
      ++ticks;
      Lapic32(0, LocalApic::kRegEoi, 0);
    }
  }
  EXPECT_EQ(ticks, 5);
}

TEST_F(PcTest, SciIsLevelTriggeredThroughTheIoApic) {
  Build();
  Lapic32(1, LocalApic::kRegSvr, 0x1FF);
  IoApicRoute(kSciIrq, 0x8000 | 0x29, 1);                       // level, vector 0x29, APIC 1
  pio.Write(kPm1aEventPort + 2, std::array<uint8_t, 2>{0, 1});  // PWRBTN_EN
  devices->acpi_pm().PressPowerButton();
  EXPECT_EQ(devices->interrupts().AcknowledgeInterrupt(1), 0x29);
  pio.Write(kPm1aEventPort, std::array<uint8_t, 2>{0, 1});  // clear PWRBTN_STS
  Lapic32(1, LocalApic::kRegEoi, 0);
  EXPECT_FALSE(devices->interrupts().HasInterrupt(1));
}

TEST_F(PcTest, InitSipiBringsUpTheAp) {
  Build();
  Lapic32(0, LocalApic::kRegSvr, 0x1FF);
  Lapic32(0, LocalApic::kRegIcrHigh, 1u << 24);
  Lapic32(0, LocalApic::kRegIcrLow, 0xC500);
  Lapic32(0, LocalApic::kRegIcrLow, 0x0608);
  std::lock_guard lock(mu);
  ASSERT_EQ(startups.size(), 2u);
  EXPECT_EQ(startups[1].first, 1u);
  EXPECT_EQ(startups[1].second.vector, 8);
}

TEST_F(PcTest, HostTimerThreadDeliversTheLocalApicTimer) {
  Build(1, &host_clock, /*thread=*/true);
  Lapic32(0, LocalApic::kRegSvr, 0x1FF);
  Lapic32(0, LocalApic::kRegTimerDivide, 0xB);
  Lapic32(0, LocalApic::kRegLvtTimer, 0xEC);
  Lapic32(0, LocalApic::kRegTimerInitial, 2'000'000);  // 2 ms
  // Sleep like a halted vCPU until woken.
  std::unique_lock lock(mu);
  const bool woken = cv.wait_for(lock, std::chrono::seconds(5),
                                 [&] { return devices->interrupts().HasInterrupt(0); });
  lock.unlock();
  EXPECT_TRUE(woken);
  EXPECT_EQ(devices->interrupts().AcknowledgeInterrupt(0), 0xEC);
}

TEST_F(PcTest, DevicesOutliveTheHandleWhileABusHoldsThem) {
  Build();
  devices.reset();
  Out(kCom1Port, 'x');  // still a working UART, no use-after-free
  EXPECT_EQ(console, "x");
}

TEST(PcLayout, SplitRamAroundThePciHole) {
  EXPECT_EQ(SplitRam(512ull << 20).below_4g, 512ull << 20);
  EXPECT_EQ(SplitRam(512ull << 20).above_4g, 0u);
  EXPECT_EQ(SplitRam(4ull << 30).below_4g, kPciHoleStart);
  EXPECT_EQ(SplitRam(4ull << 30).above_4g, (4ull << 30) - kPciHoleStart);
  static_assert(kPciEcamBase >= kPciHoleStart && kPciEcamBase + kPciEcamSize <= kIoApicBase);
}

}  // namespace
}  // namespace rove
