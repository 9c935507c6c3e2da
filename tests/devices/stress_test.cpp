// Concurrency: two vCPU threads taking and EOIing interrupts, sending IPIs and doing port I/O,
// while the timer thread fires PIT and local APIC timers and a host thread feeds the serial
// port. Checks progress (no deadlock, no lost interrupt source); run under TSan to check the
// lock hierarchy.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "rove/devices/device_manager.h"

namespace rove {
namespace {

using namespace pc;

struct VcpuSignal {
  std::mutex mu;
  std::condition_variable cv;
  bool woken = false;
};

TEST(DeviceStress, VcpusTimersIpisAndSerialConcurrently) {
  HostClock clock;
  Bus pio("pio"), mmio("mmio");
  std::array<VcpuSignal, 2> signals;
  std::atomic<int> console_bytes{0};
  PcConfig config;
  config.cpus = 2;
  config.ram_size = 256 << 20;
  config.clock = &clock;
  PcCallbacks cb;
  cb.com1_output = [&](uint8_t) { console_bytes++; };
  cb.wake = [&](unsigned cpu) {
    std::lock_guard lock(signals[cpu].mu);
    signals[cpu].woken = true;
    signals[cpu].cv.notify_one();
  };
  auto pc = BuildPcDevices(config, std::move(cb), pio, mmio);

  auto lapic_write = [&](unsigned cpu, uint32_t reg, uint32_t v) {
    std::array<uint8_t, 4> b{};
    StoreLe(b, v);
    pc->lapic(cpu).MmioWrite(reg, b);
  };
  auto mmio32 = [&](uint64_t a, uint32_t v) {
    std::array<uint8_t, 4> b{};
    StoreLe(b, v);
    mmio.Write(a, b);
  };
  auto out = [&](uint16_t port, uint8_t v) { pio.Write(port, std::array<uint8_t, 1>{v}); };
  auto in = [&](uint16_t port) {
    std::array<uint8_t, 1> b{};
    pio.Read(port, b);
    return b[0];
  };

  constexpr uint8_t kTimerVector = 0xEC, kIpiVector = 0xF0, kPitVector = 0x30, kUartVector = 0x34;
  for (unsigned cpu = 0; cpu < 2; ++cpu) {
    lapic_write(cpu, LocalApic::kRegSvr, 0x1FF);
    lapic_write(cpu, LocalApic::kRegTimerDivide, 0xB);
    lapic_write(cpu, LocalApic::kRegLvtTimer, LocalApic::kTimerPeriodic | kTimerVector);
    lapic_write(cpu, LocalApic::kRegTimerInitial, 1'000'000);  // 1 ms
  }
  // PIT at ~1 kHz to CPU 0 through I/O APIC pin 2; COM1 RX to CPU 1 through pin 4.
  mmio32(kIoApicBase, 0x10 + 2 * kPitGsi);
  mmio32(kIoApicBase + 0x10, kPitVector);
  mmio32(kIoApicBase, 0x11 + 2 * kCom1Irq);
  mmio32(kIoApicBase + 0x10, 1u << 24);
  mmio32(kIoApicBase, 0x10 + 2 * kCom1Irq);
  mmio32(kIoApicBase + 0x10, kUartVector);
  out(kPitPort + 3, 0x34);
  out(kPitPort, 0xA9);
  out(kPitPort, 0x04);  // 1193 ticks = 1 ms
  out(kCom1Port + 2, 0x07);
  out(kCom1Port + 1, 0x01);

  std::atomic<bool> stop{false};
  std::array<std::array<std::atomic<int>, 256>, 2> seen{};
  std::atomic<int> received{0};

  auto vcpu = [&](unsigned cpu) {
    VcpuInterrupts& irqs = pc->interrupts();
    int ipis_sent = 0;
    while (!stop) {
      if (auto v = irqs.AcknowledgeInterrupt(cpu)) {
        seen[cpu][*v]++;
        if (*v == kUartVector) {
          while (in(kCom1Port + 5) & 1) {
            in(kCom1Port);
            received++;
          }
        }
        lapic_write(cpu, LocalApic::kRegEoi, 0);
        // Some port I/O and an IPI to the other CPU now and then.
        out(kCom1Port, 'x');
        out(kCmosPort, 0x00);
        in(kCmosPort + 1);
        out(kPitPort + 3, 0xE2);  // read-back status of channel 0
        in(kPitPort);
        if (++ipis_sent % 4 == 0) {
          lapic_write(cpu, LocalApic::kRegIcrHigh, (1 - cpu) << 24);
          lapic_write(cpu, LocalApic::kRegIcrLow, kIpiVector);
        }
        continue;
      }
      // Halt until woken (never holding `mu` while calling the devices).
      std::unique_lock lock(signals[cpu].mu);
      signals[cpu].cv.wait_for(lock, std::chrono::milliseconds(5),
                               [&] { return signals[cpu].woken || stop.load(); });
      signals[cpu].woken = false;
    }
  };
  std::thread t0(vcpu, 0), t1(vcpu, 1);
  std::thread feeder([&] {
    const uint8_t bytes[4] = {'a', 'b', 'c', 'd'};
    while (!stop) {
      pc->com1().Receive(bytes);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop = true;
  for (auto& s : signals) {
    std::lock_guard lock(s.mu);
    s.cv.notify_all();
  }
  t0.join();
  t1.join();
  feeder.join();
  pc.reset();

  EXPECT_GT(seen[0][kTimerVector].load(), 10);
  EXPECT_GT(seen[1][kTimerVector].load(), 10);
  EXPECT_GT(seen[0][kPitVector].load(), 10);
  EXPECT_GT(seen[1][kUartVector].load(), 5);
  EXPECT_GT(seen[0][kIpiVector].load(), 0);
  EXPECT_GT(seen[1][kIpiVector].load(), 0);
  EXPECT_GT(received.load(), 0);
  EXPECT_GT(console_bytes.load(), 0);
}

}  // namespace
}  // namespace rove
