// Local APIC, APIC bus (IPIs, vCPU interface) and I/O APIC.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "rove/devices/apic_bus.h"
#include "rove/devices/io_apic.h"
#include "rove/devices/irq.h"
#include "rove/devices/pic8259.h"

namespace rove {
namespace {

uint32_t Rd(LocalApic& l, uint32_t reg) {
  std::array<uint8_t, 4> b{};
  l.MmioRead(reg, b);
  return uint32_t(LoadLe(b));
}
void Wr(LocalApic& l, uint32_t reg, uint32_t v) {
  std::array<uint8_t, 4> b{};
  StoreLe(b, v);
  l.MmioWrite(reg, b);
}

class ApicTest : public ::testing::Test {
 protected:
  explicit ApicTest(unsigned cpus = 2)
      : bus(
            ApicBusConfig{cpus, 1'000'000'000, 2'000'000'000}, timers,
            [this](unsigned cpu) {
              std::lock_guard lock(mu);
              wakes.push_back(cpu);
            },
            [this](unsigned cpu, StartupEvent e) {
              std::lock_guard lock(mu);
              startups.push_back({cpu, e});
            }) {}
  void EnableAll() {
    for (unsigned i = 0; i < bus.cpu_count(); ++i) Wr(bus.lapic(i), LocalApic::kRegSvr, 0x1FF);
  }
  size_t WakesFor(unsigned cpu) {
    std::lock_guard lock(mu);
    size_t n = 0;
    for (unsigned c : wakes) n += c == cpu;
    return n;
  }

  ManualClock clock{1'000'000'000};
  TimerQueue timers{clock};
  std::mutex mu;
  std::vector<unsigned> wakes;
  std::vector<std::pair<unsigned, StartupEvent>> startups;
  ApicBus bus;
};

TEST_F(ApicTest, ResetStateAndIdentification) {
  LocalApic& bsp = bus.lapic(0);
  LocalApic& ap = bus.lapic(1);
  EXPECT_EQ(bsp.apic_base(), 0xFEE00000u | LocalApic::kBaseEnable | LocalApic::kBaseBsp);
  EXPECT_EQ(ap.apic_base(), 0xFEE00000u | LocalApic::kBaseEnable);
  EXPECT_EQ(Rd(bsp, LocalApic::kRegId), 0u);
  EXPECT_EQ(Rd(ap, LocalApic::kRegId), 1u << 24);
  EXPECT_EQ(Rd(ap, LocalApic::kRegVersion), 0x00050014u);
  EXPECT_EQ(Rd(ap, LocalApic::kRegSvr), 0xFFu);
  EXPECT_EQ(Rd(ap, LocalApic::kRegDfr), 0xFFFFFFFFu);
  EXPECT_EQ(Rd(ap, LocalApic::kRegLvtTimer), LocalApic::kLvtMasked);
  EXPECT_TRUE(bsp.ClaimsMmio(0xFEE00300));
  EXPECT_FALSE(bsp.ClaimsMmio(0xFEE01000));
  // Byte read of the version register's max-LVT field.
  std::array<uint8_t, 1> b{};
  bsp.MmioRead(LocalApic::kRegVersion + 2, b);
  EXPECT_EQ(b[0], 5);
}

TEST_F(ApicTest, FixedInterruptAcknowledgeAndEoi) {
  EnableAll();
  ApicMessage m;
  m.vector = 0x41;
  m.destination = 1;
  bus.Deliver(m, -1);
  EXPECT_FALSE(bus.HasInterrupt(0));
  EXPECT_TRUE(bus.HasInterrupt(1));
  EXPECT_GE(WakesFor(1), 1u);
  EXPECT_EQ(bus.AcknowledgeInterrupt(1), 0x41);
  LocalApic& ap = bus.lapic(1);
  EXPECT_TRUE(ap.IsrBit(0x41));
  EXPECT_FALSE(ap.IrrBit(0x41));
  EXPECT_EQ(Rd(ap, LocalApic::kRegIsr + 0x20), 1u << 1);  // vector 0x41 = word 2, bit 1
  EXPECT_EQ(Rd(ap, LocalApic::kRegPpr), 0x40u);
  EXPECT_FALSE(bus.AcknowledgeInterrupt(1).has_value());
  Wr(ap, LocalApic::kRegEoi, 0);
  EXPECT_FALSE(ap.IsrBit(0x41));
  EXPECT_EQ(Rd(ap, LocalApic::kRegPpr), 0u);
}

TEST_F(ApicTest, SoftwareDisabledApicDropsFixedInterrupts) {
  ApicMessage m;
  m.vector = 0x50;
  m.destination = 0;
  bus.Deliver(m, -1);
  EXPECT_FALSE(bus.HasInterrupt(0));
}

TEST_F(ApicTest, PriorityTprAndNesting) {
  EnableAll();
  LocalApic& l = bus.lapic(0);
  Wr(l, LocalApic::kRegTpr, 0x50);
  l.AcceptFixed(0x45, false);
  EXPECT_FALSE(bus.HasInterrupt(0));  // class 4 <= TPR class 5
  l.SetCr8(3);
  EXPECT_EQ(Rd(l, LocalApic::kRegTpr), 0x30u);
  EXPECT_TRUE(bus.HasInterrupt(0));
  EXPECT_EQ(bus.AcknowledgeInterrupt(0), 0x45);
  l.AcceptFixed(0x47, false);  // same class as in-service: blocked
  EXPECT_FALSE(bus.HasInterrupt(0));
  l.AcceptFixed(0x90, false);  // higher class: nests
  EXPECT_EQ(bus.AcknowledgeInterrupt(0), 0x90);
  Wr(l, LocalApic::kRegEoi, 0);  // EOIs 0x90
  Wr(l, LocalApic::kRegEoi, 0);  // EOIs 0x45
  EXPECT_EQ(bus.AcknowledgeInterrupt(0), 0x47);
}

TEST_F(ApicTest, IllegalVectorSetsEsr) {
  EnableAll();
  LocalApic& l = bus.lapic(0);
  Wr(l, LocalApic::kRegIcrHigh, 1u << 24);
  Wr(l, LocalApic::kRegIcrLow, 0x05);        // fixed, vector 5
  EXPECT_EQ(Rd(l, LocalApic::kRegEsr), 0u);  // not latched yet
  Wr(l, LocalApic::kRegEsr, 0);
  EXPECT_EQ(Rd(l, LocalApic::kRegEsr), 1u << 5);
  Wr(l, LocalApic::kRegEsr, 0);
  EXPECT_EQ(Rd(l, LocalApic::kRegEsr), 0u);
}

TEST_F(ApicTest, TimerOneShotFiresAfterTheProgrammedInterval) {
  EnableAll();
  LocalApic& l = bus.lapic(0);
  Wr(l, LocalApic::kRegTimerDivide, 0x3);      // divide by 16
  Wr(l, LocalApic::kRegLvtTimer, 0xEC);        // one-shot, vector 0xEC
  Wr(l, LocalApic::kRegTimerInitial, 62'500);  // 62500 * 16 ns = 1 ms at 1 GHz
  EXPECT_EQ(Rd(l, LocalApic::kRegTimerCurrent), 62'500u);
  clock.Advance(500'000);
  EXPECT_EQ(Rd(l, LocalApic::kRegTimerCurrent), 31'250u);
  EXPECT_EQ(timers.RunDue(), 0u);
  EXPECT_FALSE(bus.HasInterrupt(0));
  clock.Advance(500'000);
  EXPECT_EQ(timers.RunDue(), 1u);
  EXPECT_EQ(Rd(l, LocalApic::kRegTimerCurrent), 0u);
  EXPECT_EQ(bus.AcknowledgeInterrupt(0), 0xEC);
  clock.Advance(10'000'000);
  EXPECT_EQ(timers.RunDue(), 0u);  // one-shot: only once
}

TEST_F(ApicTest, TimerPeriodicReloads) {
  EnableAll();
  LocalApic& l = bus.lapic(1);
  Wr(l, LocalApic::kRegTimerDivide, 0xB);  // divide by 1
  Wr(l, LocalApic::kRegLvtTimer, LocalApic::kTimerPeriodic | 0x30);
  Wr(l, LocalApic::kRegTimerInitial, 1'000'000);  // 1 ms
  int fired = 0;
  for (int i = 0; i < 5; ++i) {
    clock.Advance(1'000'000);
    timers.RunDue();
    if (bus.AcknowledgeInterrupt(1) == 0x30) {
      ++fired;
      Wr(l, LocalApic::kRegEoi, 0);
    }
  }
  EXPECT_EQ(fired, 5);
  clock.Advance(250'000);
  EXPECT_EQ(Rd(l, LocalApic::kRegTimerCurrent), 750'000u);
  // Masked: the timer keeps running but delivers nothing.
  Wr(l, LocalApic::kRegLvtTimer, LocalApic::kTimerPeriodic | LocalApic::kLvtMasked | 0x30);
  clock.Advance(1'000'000);
  timers.RunDue();
  EXPECT_FALSE(bus.HasInterrupt(1));
  // Writing 0 stops it.
  Wr(l, LocalApic::kRegTimerInitial, 0);
  EXPECT_FALSE(timers.NextDeadline().has_value());
}

TEST_F(ApicTest, TimerTscDeadline) {
  EnableAll();
  LocalApic& l = bus.lapic(0);
  Wr(l, LocalApic::kRegLvtTimer, LocalApic::kTimerTscDeadline | 0xEF);
  // Guest TSC runs at 2 GHz in this fixture: 2'000'000 ticks = 1 ms.
  l.SetTscDeadline(5'000'000, 3'000'000);
  EXPECT_EQ(l.tsc_deadline(), 5'000'000u);
  clock.Advance(999'000);
  EXPECT_EQ(timers.RunDue(), 0u);
  clock.Advance(1'000);
  EXPECT_EQ(timers.RunDue(), 1u);
  EXPECT_EQ(l.tsc_deadline(), 0u);
  EXPECT_EQ(bus.AcknowledgeInterrupt(0), 0xEF);
  Wr(l, LocalApic::kRegEoi, 0);
  // A deadline already passed fires at once; writing 0 disarms.
  l.SetTscDeadline(100, 200);
  EXPECT_EQ(bus.AcknowledgeInterrupt(0), 0xEF);
  Wr(l, LocalApic::kRegEoi, 0);
  l.SetTscDeadline(1'000'000'000, 0);
  l.SetTscDeadline(0, 0);
  clock.Advance(1'000'000'000);
  EXPECT_EQ(timers.RunDue(), 0u);
  // Initial-count writes are ignored in TSC-deadline mode; leaving the mode disarms.
  Wr(l, LocalApic::kRegTimerInitial, 1000);
  EXPECT_EQ(Rd(l, LocalApic::kRegTimerInitial), 0u);
}

TEST_F(ApicTest, IcrInitAndStartupReachTheEngine) {
  EnableAll();
  LocalApic& bsp = bus.lapic(0);
  // What Linux does to start AP 1: INIT assert, INIT de-assert, SIPI x2.
  Wr(bsp, LocalApic::kRegIcrHigh, 1u << 24);
  Wr(bsp, LocalApic::kRegIcrLow, 0x0000C500);  // INIT, level, assert
  Wr(bsp, LocalApic::kRegIcrHigh, 1u << 24);
  Wr(bsp, LocalApic::kRegIcrLow, 0x00008500);  // INIT de-assert
  Wr(bsp, LocalApic::kRegIcrHigh, 1u << 24);
  Wr(bsp, LocalApic::kRegIcrLow, 0x00000699);                  // SIPI vector 0x99
  EXPECT_EQ(Rd(bsp, LocalApic::kRegIcrLow) & (1u << 12), 0u);  // delivery status idle
  std::lock_guard lock(mu);
  ASSERT_EQ(startups.size(), 2u);
  EXPECT_EQ(startups[0].first, 1u);
  EXPECT_EQ(startups[0].second.kind, StartupEvent::Kind::kInit);
  EXPECT_EQ(startups[1].first, 1u);
  EXPECT_EQ(startups[1].second.kind, StartupEvent::Kind::kStartup);
  EXPECT_EQ(startups[1].second.vector, 0x99);
  // INIT reset the AP's APIC: software-disabled again.
  EXPECT_EQ(Rd(bus.lapic(1), LocalApic::kRegSvr), 0xFFu);
}

TEST_F(ApicTest, FixedIpisShorthandsAndLogicalDestinations) {
  EnableAll();
  LocalApic& bsp = bus.lapic(0);
  LocalApic& ap = bus.lapic(1);
  // All excluding self.
  Wr(bsp, LocalApic::kRegIcrLow, 0x000C0000 | 0xF1);
  EXPECT_TRUE(ap.IrrBit(0xF1));
  EXPECT_FALSE(bsp.IrrBit(0xF1));
  // Self.
  Wr(bsp, LocalApic::kRegIcrLow, 0x00040000 | 0xF2);
  EXPECT_TRUE(bsp.IrrBit(0xF2));
  // Logical flat: each CPU gets one LDR bit.
  Wr(bsp, LocalApic::kRegLdr, 0x01000000);
  Wr(ap, LocalApic::kRegLdr, 0x02000000);
  Wr(bsp, LocalApic::kRegIcrHigh, 0x02000000);
  Wr(bsp, LocalApic::kRegIcrLow, 0x00000800 | 0xF3);
  EXPECT_TRUE(ap.IrrBit(0xF3));
  EXPECT_FALSE(bsp.IrrBit(0xF3));
  // Logical cluster model: cluster 0, member bit 0 is the BSP.
  Wr(bsp, LocalApic::kRegDfr, 0x0FFFFFFF);
  Wr(ap, LocalApic::kRegDfr, 0x0FFFFFFF);
  Wr(bsp, LocalApic::kRegIcrHigh, 0x01000000);
  Wr(bsp, LocalApic::kRegIcrLow, 0x00000800 | 0xF4);
  EXPECT_TRUE(bsp.IrrBit(0xF4));
  EXPECT_FALSE(ap.IrrBit(0xF4));
  // NMI IPI.
  Wr(bsp, LocalApic::kRegIcrHigh, 1u << 24);
  Wr(bsp, LocalApic::kRegIcrLow, 0x00000400);
  EXPECT_TRUE(bus.TakeNmi(1));
  EXPECT_FALSE(bus.TakeNmi(1));
}

TEST_F(ApicTest, LowestPriorityPicksTheLowestTpr) {
  EnableAll();
  Wr(bus.lapic(0), LocalApic::kRegTpr, 0x80);
  ApicMessage m;
  m.vector = 0x61;
  m.mode = DeliveryMode::kLowestPriority;
  m.destination = 0xFF;
  bus.Deliver(m, -1);
  EXPECT_TRUE(bus.lapic(1).IrrBit(0x61));
  EXPECT_FALSE(bus.lapic(0).IrrBit(0x61));
}

TEST_F(ApicTest, X2ApicMode) {
  LocalApic& ap = bus.lapic(1);
  uint64_t v = 0;
  EXPECT_FALSE(ap.ReadMsr(0x802, v));  // not in x2APIC mode yet
  // EXTD without EN, and disabled -> x2APIC are invalid.
  EXPECT_FALSE(ap.SetApicBase(0xFEE00000 | LocalApic::kBaseExtd));
  ASSERT_TRUE(ap.SetApicBase(0xFEE00000 | LocalApic::kBaseEnable | LocalApic::kBaseExtd));
  EXPECT_TRUE(ap.x2apic_mode());
  EXPECT_FALSE(ap.ClaimsMmio(0xFEE00020));
  ASSERT_TRUE(ap.ReadMsr(0x802, v));
  EXPECT_EQ(v, 1u);
  ASSERT_TRUE(ap.ReadMsr(0x80D, v));  // LDR derived from the ID: cluster 0, bit 1
  EXPECT_EQ(v, 0x2u);
  EXPECT_FALSE(ap.WriteMsr(0x80D, 0));  // LDR is read-only
  EXPECT_FALSE(ap.ReadMsr(0x80B, v));   // EOI is write-only
  EXPECT_TRUE(ap.WriteMsr(0x80F, 0x1FF));
  // Self IPI.
  EXPECT_TRUE(ap.WriteMsr(0x83F, 0x77));
  EXPECT_EQ(bus.AcknowledgeInterrupt(1), 0x77);
  EXPECT_TRUE(ap.WriteMsr(0x80B, 0));
  EXPECT_FALSE(ap.IsrBit(0x77));
  // 64-bit ICR with a 32-bit destination: to the BSP (x2APIC ID 0).
  Wr(bus.lapic(0), LocalApic::kRegSvr, 0x1FF);
  EXPECT_TRUE(ap.WriteMsr(0x830, (uint64_t{0} << 32) | 0x66));
  EXPECT_TRUE(bus.lapic(0).IrrBit(0x66));
  ASSERT_TRUE(ap.ReadMsr(0x830, v));
  EXPECT_EQ(v, 0x66u);
  // Back to xAPIC directly is invalid; disabling is allowed.
  EXPECT_FALSE(ap.SetApicBase(0xFEE00000 | LocalApic::kBaseEnable));
  EXPECT_TRUE(ap.SetApicBase(0xFEE00000));
  EXPECT_FALSE(ap.ClaimsMmio(0xFEE00020));
  EXPECT_TRUE(ap.SetApicBase(0xFED00000 | LocalApic::kBaseEnable));
  EXPECT_TRUE(ap.ClaimsMmio(0xFED00020));
}

TEST_F(ApicTest, PicInterruptsReachTheBspThroughVirtualWire) {
  Pic8259 pic;
  bus.ConnectPic(&pic);
  Bus pio("pio");
  auto shared = std::shared_ptr<Pic8259>(&pic, [](Pic8259*) {});
  pio.Insert(std::make_shared<BusWindow>(shared, Pic8259::kMasterWindow), 0x20, 2);
  for (uint8_t v : {0x11, 0x20, 0x04, 0x01, 0x00})
    pio.Write(v == 0x11 ? 0x20 : 0x21, std::array<uint8_t, 1>{v});
  pic.SetIrq(1, true);
  EXPECT_FALSE(bus.HasInterrupt(0));  // LINT0 masked at reset
  bus.lapic(0).SetVirtualWire();
  EXPECT_TRUE(bus.HasInterrupt(0));
  EXPECT_FALSE(bus.HasInterrupt(1));
  EXPECT_EQ(bus.AcknowledgeInterrupt(0), 0x21);
  pio.Write(0x20, std::array<uint8_t, 1>{0x20});  // EOI
  const size_t before = WakesFor(0);
  pic.SetIrq(4, true);
  EXPECT_GT(WakesFor(0), before);
  EXPECT_EQ(bus.AcknowledgeInterrupt(0), 0x24);
  bus.ConnectPic(nullptr);
}

TEST_F(ApicTest, TimerOnTheHostClockWakesTheVcpu) {
  HostClock host;
  TimerQueue host_timers(host);
  std::atomic<int> woken{0};
  ApicBus b(
      ApicBusConfig{1, 1'000'000'000, 1'000'000'000}, host_timers, [&](unsigned) { woken++; },
      nullptr);
  host_timers.Start();
  LocalApic& l = b.lapic(0);
  Wr(l, LocalApic::kRegSvr, 0x1FF);
  Wr(l, LocalApic::kRegTimerDivide, 0xB);
  Wr(l, LocalApic::kRegLvtTimer, 0xEC);
  const auto start = std::chrono::steady_clock::now();
  Wr(l, LocalApic::kRegTimerInitial, 5'000'000);  // 5 ms
  while (!b.HasInterrupt(0) && std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(b.HasInterrupt(0));
  EXPECT_GE(elapsed, std::chrono::milliseconds(5));
  EXPECT_LT(elapsed, std::chrono::seconds(2));
  EXPECT_GE(woken.load(), 1);
  host_timers.Stop();
}

// --- I/O APIC. ---

class IoApicTest : public ApicTest {
 protected:
  IoApicTest() : ioapic(std::make_shared<IoApic>(bus)), router(nullptr, ioapic.get()) {
    mmio.Insert(ioapic, IoApic::kDefaultBase, IoApic::kMmioSize);
    bus.SetEoiListener([this](uint8_t v) { ioapic->Eoi(v); });
    EnableAll();
  }
  void WriteReg(uint8_t index, uint32_t value) {
    mmio.Write(IoApic::kDefaultBase, std::array<uint8_t, 4>{index, 0, 0, 0});
    std::array<uint8_t, 4> b{};
    StoreLe(b, value);
    mmio.Write(IoApic::kDefaultBase + 0x10, b);
  }
  uint32_t ReadReg(uint8_t index) {
    mmio.Write(IoApic::kDefaultBase, std::array<uint8_t, 4>{index, 0, 0, 0});
    std::array<uint8_t, 4> b{};
    mmio.Read(IoApic::kDefaultBase + 0x10, b);
    return uint32_t(LoadLe(b));
  }
  void Route(unsigned pin, uint32_t low, uint8_t dest) {
    WriteReg(uint8_t(0x11 + 2 * pin), uint32_t(dest) << 24);
    WriteReg(uint8_t(0x10 + 2 * pin), low);
  }

  std::shared_ptr<IoApic> ioapic;
  IrqRouter router;
  Bus mmio{"mmio"};
};

TEST_F(IoApicTest, IdentificationAndResetState) {
  EXPECT_EQ(ReadReg(0x01), 0x00170020u);
  EXPECT_EQ(ReadReg(0x10) & (1u << 16), 1u << 16);  // masked
  WriteReg(0x00, 0x0A000000);
  EXPECT_EQ(ReadReg(0x00), 0x0A000000u);
}

TEST_F(IoApicTest, RedirectionRoutesAnIsaIrqToAVector) {
  IrqLine uart = router.Line(4);
  IrqLine pit = router.Line(0);
  Route(4, 0x34, 1);  // edge, fixed, physical dest APIC 1
  Route(2, 0x30, 0);  // IRQ0 arrives on pin 2
  uart.Pulse();
  EXPECT_TRUE(bus.lapic(1).IrrBit(0x34));
  EXPECT_FALSE(bus.lapic(0).IrrBit(0x34));
  pit.Pulse();
  EXPECT_TRUE(bus.lapic(0).IrrBit(0x30));
  EXPECT_EQ(ReadReg(0x11 + 8), 1u << 24);
}

TEST_F(IoApicTest, MaskedEdgeIsDeliveredOnUnmask) {
  IrqLine line = router.Line(1);
  Route(1, 0x10000 | 0x31, 0);
  line.Pulse();
  EXPECT_FALSE(bus.lapic(0).IrrBit(0x31));
  Route(1, 0x31, 0);
  EXPECT_TRUE(bus.lapic(0).IrrBit(0x31));
}

TEST_F(IoApicTest, LevelTriggeredRemoteIrrAndEoiBroadcast) {
  IrqLine sci = router.Line(9);
  Route(9, 0x8000 | 0x49, 0);  // level, vector 0x49
  sci.Raise();
  EXPECT_TRUE(bus.lapic(0).TmrBit(0x49));
  EXPECT_NE(ioapic->redirection(9) & (1u << 14), 0u);  // remote IRR
  EXPECT_EQ(bus.AcknowledgeInterrupt(0), 0x49);
  // Still asserted: the EOI broadcast clears remote IRR and re-delivers.
  Wr(bus.lapic(0), LocalApic::kRegEoi, 0);
  EXPECT_TRUE(bus.lapic(0).IrrBit(0x49));
  EXPECT_EQ(bus.AcknowledgeInterrupt(0), 0x49);
  sci.Lower();
  Wr(bus.lapic(0), LocalApic::kRegEoi, 0);
  EXPECT_FALSE(bus.lapic(0).IrrBit(0x49));
  EXPECT_EQ(ioapic->redirection(9) & (1u << 14), 0u);
  // The version-0x20 EOI register also clears remote IRR.
  sci.Raise();
  EXPECT_EQ(bus.AcknowledgeInterrupt(0), 0x49);
  sci.Lower();
  mmio.Write(IoApic::kDefaultBase + 0x40, std::array<uint8_t, 4>{0x49, 0, 0, 0});
  EXPECT_EQ(ioapic->redirection(9) & (1u << 14), 0u);
}

TEST_F(IoApicTest, LogicalDestinationFromRedirection) {
  Wr(bus.lapic(0), LocalApic::kRegLdr, 0x01000000);
  Wr(bus.lapic(1), LocalApic::kRegLdr, 0x02000000);
  IrqLine l = router.Line(20);
  Route(20, 0x800 | 0x55, 0x03);  // logical, both CPUs (fixed: every match gets it)
  l.Pulse();
  EXPECT_TRUE(bus.lapic(0).IrrBit(0x55));
  EXPECT_TRUE(bus.lapic(1).IrrBit(0x55));
}

}  // namespace
}  // namespace rove
