#include "rove/devices/pit8254.h"

#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <vector>

namespace rove {
namespace {

class EdgeCounter : public IrqSink {
 public:
  void SetIrq(unsigned line, bool level) override {
    if (level && !levels[line]) ++rising[line];
    levels[line] = level;
  }
  std::array<int, 24> rising{};
  std::array<bool, 24> levels{};
};

class PitTest : public ::testing::Test {
 protected:
  PitTest() {
    pit = std::make_shared<Pit8254>(timers, router.Line(0));
    pio.Insert(std::make_shared<BusWindow>(pit, Pit8254::kCounterWindow), 0x40, 4);
    pio.Insert(std::make_shared<BusWindow>(pit, Pit8254::kPortBWindow), 0x61, 1);
  }
  void Out(uint16_t port, uint8_t v) { pio.Write(port, std::array<uint8_t, 1>{v}); }
  uint8_t In(uint16_t port) {
    std::array<uint8_t, 1> b{};
    pio.Read(port, b);
    return b[0];
  }
  uint16_t LatchedCount(unsigned channel) {
    Out(0x43, uint8_t(channel << 6));  // counter latch
    const uint8_t lo = In(uint16_t(0x40 + channel));
    const uint8_t hi = In(uint16_t(0x40 + channel));
    return uint16_t(lo | (hi << 8));
  }
  // Advances the clock by `ticks` PIT ticks and runs due timers.
  void Run(uint64_t ticks) {
    clock.Advance(TicksToNs(ticks, Pit8254::kHz));
    timers.RunDue();
  }

  ManualClock clock{5'000'000'000};
  TimerQueue timers{clock};
  EdgeCounter sink;
  IrqRouter router{&sink, nullptr};
  std::shared_ptr<Pit8254> pit;
  Bus pio{"pio"};
};

TEST_F(PitTest, Mode2CountsDownAndReloads) {
  Out(0x43, 0x34);  // channel 0, LSB then MSB, mode 2 (what Linux's periodic mode writes)
  Out(0x40, 0xA9);  // 4777 = 0x12A9 (HZ=250)
  Out(0x40, 0x12);
  EXPECT_EQ(LatchedCount(0), 4777);
  Run(1000);
  const uint16_t a = LatchedCount(0);
  Run(1000);
  const uint16_t b = LatchedCount(0);
  EXPECT_NEAR(a, 3777, 1);
  EXPECT_NEAR(b, 2777, 1);
  EXPECT_LT(b, a);
  Run(3000);  // past the reload
  EXPECT_NEAR(LatchedCount(0), 4777 - (5000 - 4777), 2);
}

TEST_F(PitTest, Mode2RaisesIrq0EveryPeriod) {
  Out(0x43, 0x34);
  Out(0x40, 0xA9);
  Out(0x40, 0x12);
  const int before = sink.rising[0];
  for (int i = 0; i < 10; ++i) Run(4777);
  EXPECT_EQ(sink.rising[0] - before, 10);
}

TEST_F(PitTest, Mode0OutputGoesHighAtTerminalCountAndInterruptsOnce) {
  Out(0x43, 0x30);  // channel 0, LSB/MSB, mode 0
  Out(0x40, 0xE8);  // 1000
  Out(0x40, 0x03);
  EXPECT_FALSE(pit->output(0));
  const int before = sink.rising[0];
  Run(999);
  EXPECT_FALSE(pit->output(0));
  EXPECT_EQ(sink.rising[0], before);
  Run(1);
  EXPECT_TRUE(pit->output(0));
  EXPECT_EQ(sink.rising[0], before + 1);
  Run(100000);
  EXPECT_TRUE(pit->output(0));  // stays high
  EXPECT_EQ(sink.rising[0], before + 1);
  // The counter keeps counting down through zero.
  Out(0x43, 0x30);
  Out(0x40, 0x10);
  Out(0x40, 0x00);
  Run(0x20);
  EXPECT_EQ(LatchedCount(0), 0xFFF0);
}

TEST_F(PitTest, Mode4StrobeInterrupts) {
  Out(0x43, 0x38);  // mode 4, what Linux's one-shot clockevent uses
  Out(0x40, 0x64);
  Out(0x40, 0x00);
  const int before = sink.rising[0];
  Run(99);
  EXPECT_EQ(sink.rising[0], before);
  Run(1);
  EXPECT_EQ(sink.rising[0], before + 1);
  Run(1000);
  EXPECT_EQ(sink.rising[0], before + 1);
}

TEST_F(PitTest, Channel2ThroughPort61) {
  // As Linux's PIT TSC calibration does it: gate on, speaker off, mode 0, count 0xFFFF.
  Out(0x61, uint8_t((In(0x61) & ~0x02) | 0x01));
  EXPECT_EQ(In(0x61) & 0x03, 0x01);
  Out(0x43, 0xB0);
  Out(0x42, 0xFF);
  Out(0x42, 0xFF);
  EXPECT_EQ(In(0x61) & 0x20, 0);  // OUT low while counting
  Run(1000);
  // Reading the live count LSB then MSB.
  const uint16_t live = uint16_t(In(0x42) | (In(0x42) << 8));
  EXPECT_NEAR(live, 0xFFFF - 1000, 1);
  Run(0xFFFF);
  EXPECT_EQ(In(0x61) & 0x20, 0x20);  // terminal count reached
  // Gate low suspends counting in mode 0.
  Out(0x43, 0xB0);
  Out(0x42, 0x00);
  Out(0x42, 0x10);  // 0x1000
  Run(0x100);
  Out(0x61, 0x00);  // gate off
  const uint16_t frozen = LatchedCount(2);
  Run(0x500);
  EXPECT_EQ(LatchedCount(2), frozen);
  Out(0x61, 0x01);
  Run(0x100);
  EXPECT_NEAR(LatchedCount(2), frozen - 0x100, 1);
  EXPECT_EQ(In(0x61) & 0x20, 0);
}

TEST_F(PitTest, Channel2Mode3SquareWaveAndGateRestart) {
  Out(0x61, 0x00);
  Out(0x43, 0xB6);  // channel 2, mode 3
  Out(0x42, 100);
  Out(0x42, 0);
  Run(10);
  EXPECT_EQ(LatchedCount(2), 100);  // gate low: not counting
  Out(0x61, 0x01);
  EXPECT_EQ(In(0x61) & 0x20, 0x20);  // high in the first half
  Run(60);
  EXPECT_EQ(In(0x61) & 0x20, 0);  // low in the second half
  Run(50);
  EXPECT_EQ(In(0x61) & 0x20, 0x20);
}

TEST_F(PitTest, ReadBackStatusAndCount) {
  Out(0x43, 0x74);                                 // channel 1, LSB/MSB, mode 2
  Out(0x43, 0xE4);                                 // read-back status only, channel 1
  EXPECT_EQ(In(0x41), 0x40 | 0x80 | 0x30 | 0x04);  // null count, OUT high, access 3, mode 2
  Out(0x41, 0x00);
  Out(0x41, 0x01);  // 256
  Run(6);
  Out(0x43, 0xC4);                          // read-back status and count, channel 1
  EXPECT_EQ(In(0x41), 0x80 | 0x30 | 0x04);  // count loaded
  EXPECT_EQ(In(0x41), 250);
  EXPECT_EQ(In(0x41), 0);
  // A second latch while one is pending is ignored: the first latched value is read.
  Out(0x43, 0x40);
  Run(10);
  Out(0x43, 0x40);
  EXPECT_EQ(In(0x41) | (In(0x41) << 8), 250);
  EXPECT_EQ(LatchedCount(1), 240);
}

TEST_F(PitTest, SingleByteAccessModesAndBcd) {
  Out(0x43, 0x54);  // channel 1, LSB only, mode 2
  Out(0x41, 200);
  Run(50);
  EXPECT_EQ(In(0x41), 150);
  EXPECT_EQ(In(0x41), 150);  // no LSB/MSB toggling
  Out(0x43, 0x65);           // channel 1, MSB only, mode 2, BCD
  Out(0x41, 0x20);           // 0x2000 BCD = 2000
  Run(1);
  Out(0x43, 0x40);
  EXPECT_EQ(In(0x41), 0x19);  // 1999 in BCD = 0x1999, MSB
}

TEST_F(PitTest, ResetStateIsTheBiosTick) {
  // Channel 0 runs in mode 3 with 65536: IRQ0 at 18.2 Hz until the guest reprograms it.
  const int before = sink.rising[0];
  for (int i = 0; i < 3; ++i) Run(65536);
  EXPECT_EQ(sink.rising[0] - before, 3);
  // Periods missed by a late timer thread are coalesced into one edge.
  Run(65536 * 10);
  EXPECT_EQ(sink.rising[0] - before, 4);
}

}  // namespace
}  // namespace rove
