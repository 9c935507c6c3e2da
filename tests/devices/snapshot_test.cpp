// Device snapshots: a machine is driven into a non-trivial state through its guest-visible
// interface, saved, and loaded into a freshly built machine whose clock has a different
// origin. From then on both get the same accesses and the same clock steps, and everything
// the guest can observe (register reads, interrupts, wake-ups, output) must be identical.
#include <gtest/gtest.h>

#include <array>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "rove/devices/device_manager.h"

namespace rove {
namespace {

using namespace pc;

struct Dma final : DmaMemory {
  std::vector<uint8_t> ram = std::vector<uint8_t>(1 << 16, 0);
  bool ReadPhysical(uint64_t gpa, std::span<uint8_t> data) override {
    if (gpa > ram.size() || data.size() > ram.size() - gpa) return false;
    std::copy_n(ram.begin() + long(gpa), data.size(), data.begin());
    return true;
  }
  bool WritePhysical(uint64_t gpa, std::span<const uint8_t> data) override {
    if (gpa > ram.size() || data.size() > ram.size() - gpa) return false;
    std::copy(data.begin(), data.end(), ram.begin() + long(gpa));
    return true;
  }
};

// One PC on a ManualClock, recording everything it tells the outside world.
struct Machine {
  Machine(unsigned cpus, uint64_t now_ns, int64_t wall_ns) : clock(now_ns, wall_ns) {
    PcConfig config;
    config.cpus = cpus;
    config.ram_size = 256ull << 20;
    config.clock = &clock;
    config.start_timer_thread = false;
    config.dma_memory = &dma;
    PcCallbacks cb;
    cb.com1_output = [this](uint8_t b) { events += "com1:" + std::to_string(b) + " "; };
    cb.com2_output = [this](uint8_t b) { events += "com2:" + std::to_string(b) + " "; };
    cb.reset = [this] { events += "reset "; };
    cb.power_off = [this] { events += "poweroff "; };
    cb.debug_exit = [this](int s) { events += "exit:" + std::to_string(s) + " "; };
    cb.wake = [this](unsigned cpu) { events += "wake:" + std::to_string(cpu) + " "; };
    cb.startup = [this](unsigned cpu, StartupEvent e) {
      events += "startup:" + std::to_string(cpu) + ":" + std::to_string(int(e.kind)) + ":" +
                std::to_string(e.vector) + " ";
    };
    pc = BuildPcDevices(config, std::move(cb), pio, mmio);
    pc->fw_cfg().AddFile("etc/test", std::vector<uint8_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  }

  void Out(uint16_t port, uint8_t v) { pio.Write(port, std::array<uint8_t, 1>{v}); }
  void Out16(uint16_t port, uint16_t v) {
    std::array<uint8_t, 2> b{};
    StoreLe(b, v);
    pio.Write(port, b);
  }
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
  void IoApicWrite(uint8_t index, uint32_t v) {
    std::array<uint8_t, 4> b{};
    StoreLe(b, index);
    mmio.Write(kIoApicBase, b);
    StoreLe(b, v);
    mmio.Write(kIoApicBase + 0x10, b);
  }
  uint32_t IoApicRead(uint8_t index) {
    std::array<uint8_t, 4> b{};
    StoreLe(b, index);
    mmio.Write(kIoApicBase, b);
    mmio.Read(kIoApicBase + 0x10, b);
    return uint32_t(LoadLe(b));
  }
  void LapicWrite(unsigned cpu, uint32_t reg, uint32_t v) {
    std::array<uint8_t, 4> b{};
    StoreLe(b, v);
    pc->lapic(cpu).MmioWrite(reg, b);
  }
  uint32_t LapicRead(unsigned cpu, uint32_t reg) {
    std::array<uint8_t, 4> b{};
    pc->lapic(cpu).MmioRead(reg, b);
    return uint32_t(LoadLe(b));
  }
  void Step(uint64_t ns) {
    clock.Advance(ns);
    pc->timers().RunDue();
  }

  std::vector<uint8_t> Save() const {
    StateWriter w;
    pc->SaveState(w);
    return w.Take();
  }
  void Load(const std::vector<uint8_t>& data) {
    StateReader r(data);
    pc->LoadState(r);
    r.ExpectEnd();
  }

  ManualClock clock;
  Dma dma;
  Bus pio{"pio"};
  Bus mmio{"mmio"};
  std::unique_ptr<PcDevices> pc;
  std::string events;
};

// Reads (with their side effects) nearly every guest-visible register, as one string. The
// same sequence on two machines in the same state gives the same string.
std::string Observe(Machine& m) {
  std::string s;
  auto put = [&](const char* what, uint64_t v) {
    s += what;
    s += '=';
    s += std::to_string(v);
    s += ' ';
  };
  // PIC: IRR, ISR (OCW3 read select), IMR, ELCR.
  for (uint16_t base : {kPicMasterPort, kPicSlavePort}) {
    m.Out(base, 0x0A);
    put("pic.irr", m.In(base));
    m.Out(base, 0x0B);
    put("pic.isr", m.In(base));
    m.Out(base, 0x0A);
    put("pic.imr", m.In(uint16_t(base + 1)));
  }
  put("elcr0", m.In(kElcrPort));
  put("elcr1", m.In(kElcrPort + 1));
  // PIT: read-back of status and count of all channels, then the counts.
  m.Out(kPitPort + 3, 0xCE);  // read-back: latch count + status, channels 0-2
  for (uint16_t c = 0; c < 3; ++c) {
    put("pit.status", m.In(uint16_t(kPitPort + c)));
    put("pit.count.lo", m.In(uint16_t(kPitPort + c)));
    put("pit.count.hi", m.In(uint16_t(kPitPort + c)));
  }
  put("portb", m.In(kSystemControlBPort));
  put("pit.out0", m.pc->pit().output(0));
  // RTC: time, registers, and CMOS memory.
  for (uint8_t i = 0; i < 0x80; ++i) {
    if (i == CmosRtc::kRegC) continue;
    m.Out(kCmosPort, i);
    put("cmos", m.In(kCmosPort + 1));
  }
  m.Out(kCmosPort, CmosRtc::kRegC);
  put("rtc.c", m.In(kCmosPort + 1));
  // UARTs (IIR before and after, LSR, MSR, the rest).
  for (uint16_t base : {kCom1Port, kCom2Port}) {
    for (uint16_t r : {2, 5, 6, 1, 3, 4, 7, 2}) put("uart", m.In(uint16_t(base + r)));
    put("uart.divisor", base == kCom1Port ? m.pc->com1().divisor() : m.pc->com2().divisor());
  }
  // i8042 status.
  put("kbc.status", m.In(kI8042CommandPort));
  // ACPI PM.
  put("pm1.sts", m.In32(kPm1aEventPort) & 0xFFFF);
  put("pm1.en", m.In32(kPm1aEventPort) >> 16);
  put("pm1.cnt", m.In32(kPm1aControlPort) & 0xFFFF);
  put("pmtmr", m.In32(kPmTimerPort));
  put("gpe0", m.In32(kGpe0Port));
  // PCI: the CF8 latch and the host bridge's header.
  put("cf8", m.In32(kPciConfigPort));
  put("cf9", m.In(kResetPort));
  // POST, debug exit.
  put("post", m.In(kPostPort));
  put("post.writes", m.pc->post_code().writes());
  put("debugexit", m.pc->debug_exit().status().value_or(-1));
  // I/O APIC.
  for (uint8_t i = 0; i < 0x10 + 48; ++i) put("ioapic", m.IoApicRead(i));
  // Local APICs.
  for (unsigned cpu = 0; cpu < m.pc->cpu_count(); ++cpu) {
    LocalApic& l = m.pc->lapic(cpu);
    put("apicbase", l.apic_base());
    put("tscdl", l.tsc_deadline());
    for (uint32_t reg = 0x20; reg <= 0x3E0; reg += 0x10) put("lapic", l.ReadRegister(reg));
    put("has", m.pc->interrupts().HasInterrupt(cpu));
  }
  for (unsigned line = 0; line < IrqRouter::kLines; ++line) {
    put("line", m.pc->irq_router().level(line));
  }
  s += "events: " + m.events;
  m.events.clear();
  return s;
}

// Drives a machine into a state where every device has something going on.
void Exercise(Machine& m) {
  // PIC: remapped, some masked, a level-triggered IRQ (9: SCI) configured in the ELCR.
  m.Out(kPicMasterPort, 0x11);
  m.Out(kPicMasterPort + 1, 0x20);
  m.Out(kPicMasterPort + 1, 0x04);
  m.Out(kPicMasterPort + 1, 0x01);
  m.Out(kPicSlavePort, 0x11);
  m.Out(kPicSlavePort + 1, 0x28);
  m.Out(kPicSlavePort + 1, 0x02);
  m.Out(kPicSlavePort + 1, 0x01);
  m.Out(kPicMasterPort + 1, 0xB8);  // unmask 0, 1, 2, 6
  m.Out(kPicSlavePort + 1, 0xEC);   // unmask 8, 9, 12
  m.Out(kElcrPort + 1, 0x02);       // IRQ9 level
  // PIT: channel 0 rate generator, channel 2 one-shot gated through port 0x61, channel 1
  // square wave in BCD; a pending latch with one byte read.
  m.Out(kPitPort + 3, 0x34);
  m.Out(kPitPort, 0x9B);
  m.Out(kPitPort, 0x2E);  // 11931: 100 Hz
  m.Out(kSystemControlBPort, 0x01);
  m.Out(kPitPort + 3, 0xB0);
  m.Out(kPitPort + 2, 0x00);
  m.Out(kPitPort + 2, 0x40);
  m.Out(kPitPort + 3, 0x77);
  m.Out(kPitPort + 1, 0x34);
  m.Out(kPitPort + 1, 0x12);
  // RTC: periodic (64 Hz) and update interrupts on, binary mode; some CMOS bytes.
  m.Out(kCmosPort, CmosRtc::kRegA);
  m.Out(kCmosPort + 1, 0x2A);
  m.Out(kCmosPort, CmosRtc::kRegB);
  m.Out(kCmosPort + 1, 0x56);
  m.Out(kCmosPort, 0x40);
  m.Out(kCmosPort + 1, 0x99);
  // Alarm at "don't care" seconds/minutes/hours: fires every second.
  for (uint8_t i : {CmosRtc::kSecondsAlarm, CmosRtc::kMinutesAlarm, CmosRtc::kHoursAlarm}) {
    m.Out(kCmosPort, i);
    m.Out(kCmosPort + 1, 0xC0);
  }
  // UARTs: COM1 with FIFO (trigger 4), receive data, interrupts; COM2 without FIFO.
  m.Out(kCom1Port + 3, 0x80);
  m.Out(kCom1Port + 0, 0x01);
  m.Out(kCom1Port + 1, 0x00);
  m.Out(kCom1Port + 3, 0x03);
  m.Out(kCom1Port + 2, 0x47);
  m.Out(kCom1Port + 1, 0x07);
  m.Out(kCom1Port + 4, 0x0B);
  m.Out(kCom1Port + 7, 0x5A);
  m.pc->com1().Receive(std::vector<uint8_t>{'a', 'b', 'c'});
  m.Out(kCom1Port, 'X');
  m.Out(kCom2Port + 1, 0x02);
  m.pc->com2().Receive(std::vector<uint8_t>{'z'});
  // i8042: read the command byte (queued), then start a "write command byte" command.
  m.Out(kI8042CommandPort, 0x20);
  m.Out(kI8042CommandPort, 0xD2);  // write keyboard output buffer: the next data byte
  m.Out(kI8042DataPort, 0x42);
  m.Out(kI8042CommandPort, 0x60);  // pending: the data byte is the new command byte
  // ACPI: power button and GPE enabled, timer running.
  m.Out16(kPm1aEventPort + 2, AcpiPm::kPwrbtnSts);
  m.Out16(kGpe0Port + 2, 0x0004);
  m.pc->acpi_pm().SetGpe(2);
  // PCI: latch an address and write the host bridge's command register.
  m.Out32(kPciConfigPort, 0x80000004);
  m.Out16(kPciConfigPort + 4, 0x0006);
  m.Out32(kPciConfigPort, 0x8000003C);
  // fw_cfg: select the test file and read 3 bytes of it.
  m.Out16(kFwCfgPort, m.pc->fw_cfg().FileSelector("etc/test"));
  for (int i = 0; i < 3; ++i) m.In(kFwCfgPort + 1);
  // POST and debug exit.
  m.Out(kPostPort, 0x42);
  m.Out(kDebugExitPort, 0x10);
  // I/O APIC: COM1 (pin 4) level-triggered to CPU 1, PIT (pin 2) edge, masked SCI (pin 9).
  m.IoApicWrite(0x10 + 2 * 4, 0x0000A041);
  m.IoApicWrite(0x10 + 2 * 4 + 1, 0x01000000);
  m.IoApicWrite(0x10 + 2 * 2, 0x00000030);
  m.IoApicWrite(0x10 + 2 * 9, 0x0001A039);
  // Local APICs: CPU 0 periodic timer, TPR, a pending fixed IPI to CPU 1 and one in service;
  // CPU 1 one-shot timer with a divider and the TSC-deadline... one-shot here; CPU 1 enabled.
  m.LapicWrite(0, LocalApic::kRegSvr, 0x1FF);
  m.LapicWrite(0, LocalApic::kRegTimerDivide, 0x3);  // divide by 16
  m.LapicWrite(0, LocalApic::kRegLvtTimer, LocalApic::kTimerPeriodic | 0xEF);
  m.LapicWrite(0, LocalApic::kRegTimerInitial, 1'000'000);  // 16 ms period
  m.LapicWrite(0, LocalApic::kRegTpr, 0x20);
  m.LapicWrite(1, LocalApic::kRegSvr, 0x1FF);
  m.LapicWrite(1, LocalApic::kRegLvtTimer, 0xD0);
  m.LapicWrite(1, LocalApic::kRegTimerDivide, 0xB);          // divide by 1
  m.LapicWrite(1, LocalApic::kRegTimerInitial, 37'000'000);  // 37 ms one-shot
  m.LapicWrite(0, LocalApic::kRegIcrHigh, 1u << 24);
  m.LapicWrite(0, LocalApic::kRegIcrLow, 0x61);  // fixed vector 0x61 to CPU 1
  m.LapicWrite(0, LocalApic::kRegIcrLow, 0x45);  // ... then 0x45
  m.pc->interrupts().AcknowledgeInterrupt(1);    // 0x61 in service, 0x45 pending
  // Let time pass so every timer is mid-period and interrupts are pending.
  m.Step(3'333'333);
  m.Step(1'234'567);
}

constexpr uint64_t kStartA = 50'000'000'000;  // machine A's clock origin
constexpr uint64_t kStartB = 1'000'000'000;   // B's origin: earlier than A's elapsed time
constexpr int64_t kWall = 1'700'000'000'123'456'789;

// Builds A, exercises it, saves, loads into B with the same wall time, and returns both.
struct Twins {
  std::unique_ptr<Machine> a;
  std::unique_ptr<Machine> b;
  std::vector<uint8_t> snapshot;
};
Twins MakeTwins(unsigned cpus, const std::function<void(Machine&)>& exercise) {
  Twins t;
  t.a = std::make_unique<Machine>(cpus, kStartA, kWall);
  exercise(*t.a);
  t.snapshot = t.a->Save();
  t.b = std::make_unique<Machine>(cpus, kStartB, t.a->clock.WallNs());
  t.b->Load(t.snapshot);
  t.a->events.clear();
  t.b->events.clear();
  return t;
}

TEST(SnapshotTest, LoadedMachineBehavesIdentically) {
  Twins t = MakeTwins(2, Exercise);
  Machine& a = *t.a;
  Machine& b = *t.b;
  EXPECT_EQ(Observe(a), Observe(b));
  // Run both for a while: PIT, RTC periodic/update/alarm and both local APIC timers fire.
  for (int i = 0; i < 60; ++i) {
    a.Step(777'777);
    b.Step(777'777);
    ASSERT_EQ(Observe(a), Observe(b)) << "after step " << i;
  }
  // Acknowledge interrupts on both CPUs and EOI them; the level-triggered COM1 interrupt goes
  // through the I/O APIC's remote IRR.
  for (int i = 0; i < 8; ++i) {
    for (unsigned cpu = 0; cpu < 2; ++cpu) {
      const auto va = a.pc->interrupts().AcknowledgeInterrupt(cpu);
      const auto vb = b.pc->interrupts().AcknowledgeInterrupt(cpu);
      ASSERT_EQ(va, vb);
      a.LapicWrite(cpu, LocalApic::kRegEoi, 0);
      b.LapicWrite(cpu, LocalApic::kRegEoi, 0);
    }
    a.Step(5'000'000);
    b.Step(5'000'000);
    ASSERT_EQ(Observe(a), Observe(b)) << "after ack round " << i;
  }
  // Continue the interrupted fw_cfg read, the i8042 command, the UART.
  for (int i = 0; i < 4; ++i) ASSERT_EQ(a.In(kFwCfgPort + 1), b.In(kFwCfgPort + 1));
  a.Out(kI8042DataPort, 0x47);
  b.Out(kI8042DataPort, 0x47);
  EXPECT_EQ(a.pc->i8042().command_byte(), 0x47);
  EXPECT_EQ(b.pc->i8042().command_byte(), 0x47);
  for (int i = 0; i < 4; ++i) ASSERT_EQ(a.In(kCom1Port), b.In(kCom1Port));
  EXPECT_EQ(Observe(a), Observe(b));
}

TEST(SnapshotTest, SavingTheLoadedMachineGivesTheSameBytes) {
  // Every saved field is restored: the loaded machine, saved at once, gives the same snapshot
  // (times are relative, so the different clock origins do not show).
  Twins t = MakeTwins(2, Exercise);
  EXPECT_EQ(t.b->Save(), t.snapshot);
  // And again after both ran the same time.
  t.a->Step(12'345'678);
  t.b->Step(12'345'678);
  EXPECT_EQ(t.b->Save(), t.a->Save());
}

TEST(SnapshotTest, LongRunningMachineLoadedOnAYoungerClock) {
  // A ran for 100 s (PIT channel 1, the PM timer and a periodic local APIC timer counted all
  // along); B's clock is at 1 s, so their start times re-based on B's clock lie before its
  // epoch.
  auto a = std::make_unique<Machine>(2, kStartB, kWall);
  a->LapicWrite(0, LocalApic::kRegSvr, 0x1FF);
  a->LapicWrite(0, LocalApic::kRegTimerDivide, 0xA);  // divide by 128
  a->LapicWrite(0, LocalApic::kRegLvtTimer, LocalApic::kTimerPeriodic | 0x30);
  a->LapicWrite(0, LocalApic::kRegTimerInitial, 0xFFFFFFFF);  // a 550 s period
  for (int i = 0; i < 100; ++i) a->Step(1'000'000'000);
  Exercise(*a);
  const std::vector<uint8_t> snapshot = a->Save();
  Machine b(2, kStartB, a->clock.WallNs());
  b.Load(snapshot);
  a->events.clear();
  b.events.clear();
  EXPECT_EQ(b.Save(), snapshot);
  EXPECT_EQ(Observe(*a), Observe(b));
  for (int i = 0; i < 40; ++i) {
    a->Step(1'234'567);
    b.Step(1'234'567);
    ASSERT_EQ(Observe(*a), Observe(b)) << "step " << i;
  }
}

TEST(SnapshotTest, TimersKeepTheirRemainingTime) {
  // A: a local APIC one-shot of 10 ms, 4 ms elapsed at save. B must fire it 6 ms after load,
  // not earlier, not later, however long the VM was paused.
  Twins t = MakeTwins(1, [](Machine& m) {
    m.LapicWrite(0, LocalApic::kRegSvr, 0x1FF);
    m.LapicWrite(0, LocalApic::kRegTimerDivide, 0xB);
    m.LapicWrite(0, LocalApic::kRegLvtTimer, 0x50);
    m.LapicWrite(0, LocalApic::kRegTimerInitial, 10'000'000);
    m.Step(4'000'000);
  });
  Machine& b = *t.b;
  b.clock.Advance(0);
  EXPECT_EQ(b.LapicRead(0, LocalApic::kRegTimerCurrent), 6'000'000u);
  b.Step(5'999'999);
  EXPECT_FALSE(b.pc->lapic(0).IrrBit(0x50));
  b.Step(1);
  EXPECT_TRUE(b.pc->lapic(0).IrrBit(0x50));
  EXPECT_EQ(b.LapicRead(0, LocalApic::kRegTimerCurrent), 0u);
}

TEST(SnapshotTest, PitCountAndIrq0ContinueAcrossTheLoad) {
  Twins t = MakeTwins(1, [](Machine& m) {
    m.Out(kPicMasterPort + 1, 0xFE);  // only IRQ0
    m.Out(kPitPort + 3, 0x34);
    m.Out(kPitPort, 0x00);
    m.Out(kPitPort, 0x10);  // 4096 ticks: 3.43 ms
    m.Step(2'000'000);
  });
  Machine& a = *t.a;
  Machine& b = *t.b;
  for (int i = 0; i < 200; ++i) {
    a.Step(50'000);
    b.Step(50'000);
    a.Out(kPitPort + 3, 0x00);
    b.Out(kPitPort + 3, 0x00);
    const uint16_t ca = uint16_t(a.In(kPitPort) | a.In(kPitPort) << 8);
    const uint16_t cb = uint16_t(b.In(kPitPort) | b.In(kPitPort) << 8);
    ASSERT_EQ(ca, cb) << "step " << i;
    ASSERT_EQ(a.pc->pic().irr(false), b.pc->pic().irr(false)) << "step " << i;
    if (a.pc->pic().irr(false) & 1) {  // take IRQ0 on both
      a.pc->pic().Acknowledge();
      b.pc->pic().Acknowledge();
      a.Out(kPicMasterPort, 0x20);
      b.Out(kPicMasterPort, 0x20);
    }
  }
}

// Steps both machines and checks they agree after each step.
void StepBoth(Twins& t, int steps, uint64_t ns) {
  for (int i = 0; i < steps; ++i) {
    t.a->Step(ns);
    t.b->Step(ns);
    ASSERT_EQ(Observe(*t.a), Observe(*t.b)) << "step " << i;
  }
}

TEST(SnapshotTest, RtcFrozenBySetBit) {
  Twins t = MakeTwins(1, [](Machine& m) {
    m.Out(kCmosPort, CmosRtc::kRegB);
    m.Out(kCmosPort + 1, 0x82);  // SET, 24-hour BCD
    m.Out(kCmosPort, CmosRtc::kMinutes);
    m.Out(kCmosPort + 1, 0x42);
    m.Out(kCmosPort, CmosRtc::kHours);
    m.Out(kCmosPort + 1, 0x13);
    m.Out(kCmosPort, CmosRtc::kYear);  // the index register stays at the year
  });
  Machine& b = *t.b;
  EXPECT_EQ(b.In(kCmosPort + 1), t.a->In(kCmosPort + 1));  // index and frozen year kept
  b.Out(kCmosPort, CmosRtc::kMinutes);
  EXPECT_EQ(b.In(kCmosPort + 1), 0x42);
  for (Machine* m : {t.a.get(), t.b.get()}) {
    m->Out(kCmosPort, CmosRtc::kRegB);
    m->Out(kCmosPort + 1, 0x12);  // clear SET; update interrupts on
  }
  StepBoth(t, 30, 100'000'000);
  b.Out(kCmosPort, CmosRtc::kHours);
  EXPECT_EQ(b.In(kCmosPort + 1), 0x13);
}

TEST(SnapshotTest, RtcPeriodicPhaseSurvivesWhileTheRateIsOff) {
  // B is loaded from A (its periodic phase is no longer aligned to its clock's origin), turns
  // the periodic rate off and is saved into C. When both turn it back on, the interrupts come
  // at the same times.
  auto rate = [](Machine& m, uint8_t reg_a) {
    m.Out(kCmosPort, CmosRtc::kRegA);
    m.Out(kCmosPort + 1, reg_a);
  };
  Twins t = MakeTwins(1, [&](Machine& m) {
    m.Out(kPicSlavePort + 1, 0xFE);  // IRQ8 unmasked on the slave
    rate(m, 0x29);                   // 128 Hz
    m.Out(kCmosPort, CmosRtc::kRegB);
    m.Out(kCmosPort + 1, 0x42);  // periodic interrupt on
    m.Step(3'000'001);
  });
  Machine& b = *t.b;
  rate(b, 0x20);  // rate select 0: no periodic rate at all
  b.Step(777'777);
  Machine c(1, kStartA + 333'333, b.clock.WallNs());
  c.Load(b.Save());
  for (Machine* m : {&b, &c}) rate(*m, 0x2A);  // 64 Hz
  for (int i = 0; i < 100; ++i) {
    b.Step(250'000);
    c.Step(250'000);
    b.Out(kCmosPort, CmosRtc::kRegC);
    c.Out(kCmosPort, CmosRtc::kRegC);
    ASSERT_EQ(b.In(kCmosPort + 1), c.In(kCmosPort + 1)) << "step " << i;
  }
}

TEST(SnapshotTest, PitGatedOneShotFrozenMidCount) {
  Twins t = MakeTwins(1, [](Machine& m) {
    m.Out(kSystemControlBPort, 0x01);  // gate 2 high
    m.Out(kPitPort + 3, 0xB0);         // channel 2, mode 0
    m.Out(kPitPort + 2, 0x00);
    m.Out(kPitPort + 2, 0x80);  // 32768 ticks
    m.Step(10'000'000);
    m.Out(kSystemControlBPort, 0x00);  // gate low: counting suspended
    m.Out(kPitPort + 3, 0xE8);         // read-back: latch status of channel 2 only
    m.Step(5'000'000);
  });
  Machine& a = *t.a;
  Machine& b = *t.b;
  EXPECT_EQ(a.In(kPitPort + 2), b.In(kPitPort + 2));  // the latched status
  for (Machine* m : {&a, &b}) m->Out(kSystemControlBPort, 0x01);
  for (int i = 0; i < 50; ++i) {
    a.Step(500'000);
    b.Step(500'000);
    ASSERT_EQ(a.In(kSystemControlBPort) & 0x20, b.In(kSystemControlBPort) & 0x20) << i;
    ASSERT_EQ(a.In(kPitPort + 2), b.In(kPitPort + 2)) << i;
  }
  EXPECT_TRUE(b.pc->pit().output(2));  // the terminal count was reached
}

TEST(SnapshotTest, X2ApicTscDeadlineTimer) {
  constexpr uint64_t kTscAtArm = 123'456'789;
  Twins t = MakeTwins(2, [](Machine& m) {
    LocalApic& l = m.pc->lapic(1);
    ASSERT_TRUE(
        l.SetApicBase(LocalApic::kDefaultBase | LocalApic::kBaseEnable | LocalApic::kBaseExtd));
    ASSERT_TRUE(l.WriteMsr(0x80F, 0x1FF));  // SVR
    ASSERT_TRUE(l.WriteMsr(0x832, LocalApic::kTimerTscDeadline | 0x99));
    l.SetTscDeadline(kTscAtArm + 20'000'000, kTscAtArm);  // 20 ms at 1 GHz
    m.Step(8'000'000);
  });
  Machine& b = *t.b;
  LocalApic& l = b.pc->lapic(1);
  EXPECT_TRUE(l.x2apic_mode());
  EXPECT_FALSE(l.ClaimsMmio(LocalApic::kDefaultBase));
  uint64_t value = 0;
  ASSERT_TRUE(l.ReadMsr(0x802, value));  // x2APIC ID
  EXPECT_EQ(value, 1u);
  EXPECT_EQ(l.tsc_deadline(), kTscAtArm + 20'000'000);
  b.Step(11'999'999);
  EXPECT_FALSE(l.IrrBit(0x99));
  b.Step(1);
  EXPECT_TRUE(l.IrrBit(0x99));
  EXPECT_EQ(l.tsc_deadline(), 0u);
}

TEST(SnapshotTest, IoApicRemoteIrrAndLevelRedelivery) {
  Twins t = MakeTwins(1, [](Machine& m) {
    m.LapicWrite(0, LocalApic::kRegSvr, 0x1FF);
    m.Out(kPicMasterPort + 1, 0xFF);                 // the I/O APIC only
    m.IoApicWrite(0x10 + 2 * kCom1Irq, 0x0000A051);  // level, active low, vector 0x51
    m.IoApicWrite(0x10 + 2 * kCom1Irq + 1, 0);
    m.Out(kCom1Port + 1, 0x01);                     // receive interrupt
    m.pc->com1().Receive(std::vector<uint8_t>{7});  // IRQ4 asserted: delivered, remote IRR
    ASSERT_EQ(m.pc->interrupts().AcknowledgeInterrupt(0), std::optional<uint8_t>(0x51));
  });
  Machine& a = *t.a;
  Machine& b = *t.b;
  EXPECT_TRUE(b.IoApicRead(0x10 + 2 * kCom1Irq) & (1u << 14));  // remote IRR
  EXPECT_TRUE(b.pc->lapic(0).IsrBit(0x51));
  EXPECT_TRUE(b.pc->lapic(0).TmrBit(0x51));
  EXPECT_TRUE(b.pc->irq_router().level(kCom1Irq));
  // EOI with the line still asserted: the I/O APIC delivers again on both.
  for (Machine* m : {&a, &b}) m->LapicWrite(0, LocalApic::kRegEoi, 0);
  EXPECT_TRUE(b.pc->lapic(0).IrrBit(0x51));
  EXPECT_EQ(Observe(a), Observe(b));
  // Reading the byte lowers the line; after the next EOI nothing is redelivered.
  for (Machine* m : {&a, &b}) {
    EXPECT_EQ(m->pc->interrupts().AcknowledgeInterrupt(0), std::optional<uint8_t>(0x51));
    EXPECT_EQ(m->In(kCom1Port), 7);
    m->LapicWrite(0, LocalApic::kRegEoi, 0);
    EXPECT_FALSE(m->pc->interrupts().HasInterrupt(0));
  }
  EXPECT_EQ(Observe(a), Observe(b));
}

TEST(SnapshotTest, PicInServicePendingAndPollMode) {
  Twins t = MakeTwins(1, [](Machine& m) {
    m.Out(kPicMasterPort, 0x11);
    m.Out(kPicMasterPort + 1, 0x30);
    m.Out(kPicMasterPort + 1, 0x04);
    m.Out(kPicMasterPort + 1, 0x01);
    m.Out(kPicMasterPort + 1, 0xEC);  // unmask 0, 1, 4
    m.Out(kCom1Port + 1, 0x02);       // COM1 THR-empty interrupt: IRQ4
    m.Out(kPitPort + 3, 0x30);        // PIT channel 0 one-shot (mode 0)
    m.Out(kPitPort, 0xFF);
    m.Out(kPitPort, 0x00);
    m.Step(1'000'000);  // IRQ0 requested
    ASSERT_EQ(m.pc->pic().Acknowledge(), 0x30);
    m.Out(kPicMasterPort, 0x0C);  // poll mode: the next read of port 0x20 is a poll
  });
  Machine& a = *t.a;
  Machine& b = *t.b;
  EXPECT_EQ(b.pc->pic().isr(false), 0x01);
  EXPECT_EQ(b.pc->pic().irr(false), a.pc->pic().irr(false));
  EXPECT_EQ(a.In(kPicMasterPort), b.In(kPicMasterPort));  // the poll result
  EXPECT_EQ(Observe(a), Observe(b));
}

TEST(SnapshotTest, LoadWakesVcpusWithPendingInterrupts) {
  Machine a(2, kStartA, kWall);
  a.LapicWrite(1, LocalApic::kRegSvr, 0x1FF);
  a.LapicWrite(0, LocalApic::kRegIcrHigh, 1u << 24);
  a.LapicWrite(0, LocalApic::kRegIcrLow, 0x77);
  const std::vector<uint8_t> snapshot = a.Save();
  Machine b(2, kStartB, kWall);
  b.events.clear();
  b.Load(snapshot);
  EXPECT_NE(b.events.find("wake:1"), std::string::npos) << b.events;
  EXPECT_TRUE(b.pc->interrupts().HasInterrupt(1));
  EXPECT_EQ(b.pc->interrupts().AcknowledgeInterrupt(1), std::optional<uint8_t>(0x77));
}

TEST(SnapshotTest, PmTimerContinuesFromItsSavedValue) {
  Machine a(1, kStartA, kWall);
  a.Step(123'456'789);
  const uint32_t before = a.In32(kPmTimerPort);
  const std::vector<uint8_t> snapshot = a.Save();
  Machine b(1, kStartB + 777'000'000'000ull, kWall);  // much later: the VM was paused
  b.Load(snapshot);
  EXPECT_EQ(b.In32(kPmTimerPort), before);
  b.Step(1'000'000'000);
  EXPECT_EQ(b.In32(kPmTimerPort), (before + AcpiPm::kTimerHz) & 0xFFFFFF);
}

class NoSnapshotFunction final : public PciFunction {
 public:
  void ConfigRead(uint16_t, std::span<uint8_t> data) override {
    std::fill(data.begin(), data.end(), 0);
  }
  void ConfigWrite(uint16_t, std::span<const uint8_t>) override {}
};

TEST(SnapshotTest, PciFunctionsMustMatch) {
  Machine a(1, kStartA, kWall);
  a.pc->pci().Add(3, 0, std::make_shared<PciConfigSpace>());
  const std::vector<uint8_t> snapshot = a.Save();
  Machine b(1, kStartB, kWall);  // no function at 00:03.0
  try {
    b.Load(snapshot);
    FAIL() << "loaded a snapshot with a PCI function the machine does not have";
  } catch (const StateError& e) {
    EXPECT_NE(std::string(e.what()).find("PCI functions"), std::string::npos) << e.what();
  }
  Machine c(1, kStartB, kWall);
  c.pc->pci().Add(4, 0, std::make_shared<PciConfigSpace>());  // a different slot
  EXPECT_THROW(c.Load(snapshot), StateError);
  Machine d(1, kStartB, kWall);
  d.pc->pci().Add(3, 0, std::make_shared<PciConfigSpace>());
  EXPECT_NO_THROW(d.Load(snapshot));
  // A function that cannot save itself makes the save fail cleanly.
  a.pc->pci().Add(5, 0, std::make_shared<NoSnapshotFunction>());
  EXPECT_THROW(a.Save(), StateError);
}

TEST(SnapshotTest, CpuCountMustMatch) {
  Machine a(2, kStartA, kWall);
  const std::vector<uint8_t> snapshot = a.Save();
  Machine b(1, kStartB, kWall);
  try {
    b.Load(snapshot);
    FAIL() << "loaded a 2-vCPU snapshot into a 1-vCPU machine";
  } catch (const StateError& e) {
    EXPECT_NE(std::string(e.what()).find("2 vCPUs"), std::string::npos) << e.what();
  }
}

TEST(SnapshotTest, EveryTruncationIsRejected) {
  Machine a(2, kStartA, kWall);
  Exercise(a);
  const std::vector<uint8_t> snapshot = a.Save();
  Machine b(2, kStartB, kWall);
  for (size_t n = 0; n < snapshot.size(); ++n) {
    const std::vector<uint8_t> cut(snapshot.begin(), snapshot.begin() + long(n));
    EXPECT_THROW(b.Load(cut), StateError) << "length " << n;
  }
  // A snapshot with a byte too many is rejected by the caller's ExpectEnd.
  std::vector<uint8_t> longer = snapshot;
  longer.push_back(0);
  EXPECT_THROW(b.Load(longer), StateError);
  // The untouched snapshot still loads into the same machine afterwards.
  EXPECT_NO_THROW(b.Load(snapshot));
}

// Offsets of every record header in a machine snapshot, by walking the top level.
std::vector<size_t> RecordOffsets(const std::vector<uint8_t>& data) {
  std::vector<size_t> offsets;
  size_t at = 0;
  while (at + 12 <= data.size()) {
    offsets.push_back(at);
    const uint32_t length = uint32_t(LoadLe(std::span(data).subspan(at + 8, 4)));
    at += 12 + length;
  }
  return offsets;
}

TEST(SnapshotTest, WrongTagVersionOrLengthOfAnyRecordIsRejected) {
  Machine a(2, kStartA, kWall);
  Exercise(a);
  const std::vector<uint8_t> snapshot = a.Save();
  const std::vector<size_t> offsets = RecordOffsets(snapshot);
  ASSERT_EQ(offsets.size(), 17u);  // header, 13 devices, 2 APICs, APIC bus
  Machine b(2, kStartB, kWall);
  for (size_t at : offsets) {
    std::vector<uint8_t> bad = snapshot;
    bad[at] ^= 0x20;  // tag
    EXPECT_THROW(b.Load(bad), StateError) << "tag at " << at;
    bad = snapshot;
    bad[at + 4] += 1;  // version
    EXPECT_THROW(b.Load(bad), StateError) << "version at " << at;
    bad = snapshot;
    bad[at + 8] += 1;  // length one more: the record eats the next record's first byte
    EXPECT_THROW(b.Load(bad), StateError) << "length+1 at " << at;
    bad = snapshot;
    if (bad[at + 8] > 0) {
      bad[at + 8] -= 1;  // one less: the payload runs out
      EXPECT_THROW(b.Load(bad), StateError) << "length-1 at " << at;
    }
  }
}

TEST(SnapshotTest, AFailedLoadChangesNothing) {
  Machine a(2, kStartA, kWall);
  Exercise(a);
  const std::vector<uint8_t> snapshot = a.Save();
  Machine b(2, kStartB, kWall);
  b.LapicWrite(0, LocalApic::kRegTpr, 0x30);
  b.Out(kPostPort, 0x99);
  const std::vector<uint8_t> before = b.Save();
  ASSERT_NE(before, snapshot);
  // The last record (APIC bus) is cut short, then its tag is wrong: everything before it
  // parsed fine, yet nothing may have been applied.
  const std::vector<uint8_t> cut(snapshot.begin(), snapshot.end() - 1);
  EXPECT_THROW(b.Load(cut), StateError);
  EXPECT_EQ(b.Save(), before);
  std::vector<uint8_t> bad_tag = snapshot;
  bad_tag[RecordOffsets(snapshot).back()] ^= 1;
  EXPECT_THROW(b.Load(bad_tag), StateError);
  EXPECT_EQ(b.Save(), before);
  b.Load(snapshot);
  EXPECT_EQ(b.Save(), snapshot);
}

TEST(SnapshotTest, RandomInputNeverCrashes) {
  Machine a(2, kStartA, kWall);
  Exercise(a);
  const std::vector<uint8_t> snapshot = a.Save();
  Machine b(2, kStartB, kWall);
  std::mt19937_64 rng(12345);
  // Pure noise is rejected.
  for (int i = 0; i < 2000; ++i) {
    std::vector<uint8_t> noise(rng() % 4096);
    for (uint8_t& byte : noise) byte = uint8_t(rng());
    EXPECT_THROW(b.Load(noise), StateError);
  }
  // A valid snapshot with random bytes changed either loads or is rejected, never crashes.
  int rejected = 0;
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> bad = snapshot;
    const int flips = 1 + int(rng() % 4);
    for (int f = 0; f < flips; ++f) bad[rng() % bad.size()] = uint8_t(rng());
    try {
      b.Load(bad);
      Observe(b);
      b.Step(1'000'000);
    } catch (const StateError&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
}

TEST(SnapshotTest, SaveAndLoadWithTheTimerThreadRunning) {
  // Host clocks and a live timer thread: the devices keep firing while saved and loaded.
  auto build = [](Bus& pio, Bus& mmio) {
    PcConfig config;
    config.cpus = 2;
    config.ram_size = 64ull << 20;
    return BuildPcDevices(config, PcCallbacks{}, pio, mmio);
  };
  Bus pio_a("pio"), mmio_a("mmio"), pio_b("pio"), mmio_b("mmio");
  auto a = build(pio_a, mmio_a);
  auto b = build(pio_b, mmio_b);
  std::array<uint8_t, 4> v{};
  StoreLe(v, 0x1FF);
  a->lapic(0).MmioWrite(LocalApic::kRegSvr, v);
  StoreLe(v, LocalApic::kTimerPeriodic | 0x40);
  a->lapic(0).MmioWrite(LocalApic::kRegLvtTimer, v);
  StoreLe(v, 100'000);
  a->lapic(0).MmioWrite(LocalApic::kRegTimerInitial, v);
  for (int i = 0; i < 20; ++i) {
    StateWriter w;
    a->SaveState(w);
    StateReader r(w.data());
    b->LoadState(r);
    EXPECT_TRUE(r.AtEnd());
  }
  EXPECT_TRUE(a->timers().running());
  EXPECT_TRUE(b->timers().running());
  EXPECT_EQ(b->lapic(0).ReadRegister(LocalApic::kRegTimerInitial), 100'000u);
}

}  // namespace
}  // namespace rove
