#include "rove/devices/cmos_rtc.h"

#include <gtest/gtest.h>

#include <array>
#include <ctime>
#include <memory>

namespace rove {
namespace {

class LevelSink : public IrqSink {
 public:
  void SetIrq(unsigned line, bool level) override { levels[line] = level; }
  std::array<bool, 24> levels{};
};

int FromBcd(uint8_t v) {
  return (v >> 4) * 10 + (v & 0xF);
}

int64_t UnixNs(int year, int mon, int mday, int hour, int min, int sec) {
  struct tm tm {};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = mday;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  return int64_t(timegm(&tm)) * 1'000'000'000;
}

template <typename ClockT>
class RtcHarness {
 public:
  explicit RtcHarness(ClockT& clock) : timers(clock) {
    rtc = std::make_shared<CmosRtc>(timers, router.Line(8));
    pio.Insert(rtc, 0x70, 2);
  }
  uint8_t Get(uint8_t index) {
    pio.Write(0x70, std::array<uint8_t, 1>{index});
    std::array<uint8_t, 1> b{};
    pio.Read(0x71, b);
    return b[0];
  }
  void Set(uint8_t index, uint8_t v) {
    pio.Write(0x70, std::array<uint8_t, 1>{index});
    pio.Write(0x71, std::array<uint8_t, 1>{v});
  }
  TimerQueue timers;
  LevelSink sink;
  IrqRouter router{&sink, nullptr};
  std::shared_ptr<CmosRtc> rtc;
  Bus pio{"pio"};
};

// Reads the clock as Linux's mc146818_get_time does: wait for UIP to clear, read, re-check.
struct Reading {
  int sec, min, hour, mday, mon, year;
};
template <typename H>
Reading ReadTime(H& h, bool bcd) {
  auto dec = [bcd](uint8_t v) { return bcd ? FromBcd(v) : int(v); };
  for (;;) {
    while (h.Get(CmosRtc::kRegA) & CmosRtc::kRegAUip) {
    }
    Reading r{dec(h.Get(0)), dec(h.Get(2)), dec(h.Get(4)),
              dec(h.Get(7)), dec(h.Get(8)), dec(h.Get(0x32)) * 100 + dec(h.Get(9))};
    if (!(h.Get(CmosRtc::kRegA) & CmosRtc::kRegAUip) && dec(h.Get(0)) == r.sec) return r;
  }
}

int64_t ReadingToUnix(const Reading& r) {
  return UnixNs(r.year, r.mon, r.mday, r.hour, r.min, r.sec) / 1'000'000'000;
}

TEST(CmosRtc, TimeMatchesHostTimeInBcdAndBinary) {
  HostClock clock;
  RtcHarness h(clock);
  EXPECT_EQ(h.Get(CmosRtc::kRegB), CmosRtc::kRegB24Hour);  // BCD, 24h
  EXPECT_EQ(h.Get(CmosRtc::kRegD), 0x80);
  const int64_t host = std::time(nullptr);
  EXPECT_NEAR(double(ReadingToUnix(ReadTime(h, true))), double(host), 1.0);
  h.Set(CmosRtc::kRegB, CmosRtc::kRegB24Hour | CmosRtc::kRegBBinary);
  EXPECT_NEAR(double(ReadingToUnix(ReadTime(h, false))), double(std::time(nullptr)), 1.0);
}

TEST(CmosRtc, TwelveHourFormatAndFieldEncodings) {
  ManualClock clock(1'000'000'000, UnixNs(2024, 2, 29, 13, 45, 30));  // a Thursday
  RtcHarness h(clock);
  EXPECT_EQ(h.Get(CmosRtc::kHours), 0x13);
  EXPECT_EQ(h.Get(CmosRtc::kMinutes), 0x45);
  EXPECT_EQ(h.Get(CmosRtc::kSeconds), 0x30);
  EXPECT_EQ(h.Get(CmosRtc::kDayOfWeek), 5);
  EXPECT_EQ(h.Get(CmosRtc::kDayOfMonth), 0x29);
  EXPECT_EQ(h.Get(CmosRtc::kMonth), 0x02);
  EXPECT_EQ(h.Get(CmosRtc::kYear), 0x24);
  EXPECT_EQ(h.Get(CmosRtc::kCentury), 0x20);
  h.Set(CmosRtc::kRegB, 0);                     // BCD, 12-hour
  EXPECT_EQ(h.Get(CmosRtc::kHours), 0x81);      // 1 PM
  h.Set(CmosRtc::kRegB, CmosRtc::kRegBBinary);  // binary, 12-hour
  EXPECT_EQ(h.Get(CmosRtc::kHours), 0x81);
  EXPECT_EQ(h.Get(CmosRtc::kMinutes), 45);
  EXPECT_EQ(h.Get(CmosRtc::kYear), 24);
  clock.Advance(11ull * 3600 * 1'000'000'000);  // 00:45 next day -> 12 AM
  EXPECT_EQ(h.Get(CmosRtc::kHours), 12);
  EXPECT_EQ(h.Get(CmosRtc::kDayOfMonth), 1);
  EXPECT_EQ(h.Get(CmosRtc::kMonth), 3);
}

TEST(CmosRtc, UpdateInProgressDuringTheLast244usOfASecond) {
  ManualClock clock(1'000'000'000, UnixNs(2024, 1, 1, 0, 0, 0));
  RtcHarness h(clock);
  clock.Advance(500'000'000);
  EXPECT_EQ(h.Get(CmosRtc::kRegA) & 0x80, 0);
  clock.Advance(499'800'000);  // 200 us before the next second
  EXPECT_EQ(h.Get(CmosRtc::kRegA) & 0x80, 0x80);
  EXPECT_EQ(h.Get(CmosRtc::kRegA) & 0x7F, 0x26);
  clock.Advance(300'000);
  EXPECT_EQ(h.Get(CmosRtc::kRegA) & 0x80, 0);
  EXPECT_EQ(h.Get(CmosRtc::kSeconds), 0x01);
}

TEST(CmosRtc, GuestSetsTheTime) {
  ManualClock clock(1'000'000'000, UnixNs(2024, 1, 1, 0, 0, 0));
  RtcHarness h(clock);
  h.Set(CmosRtc::kRegB, CmosRtc::kRegBSet | CmosRtc::kRegB24Hour);
  h.Set(CmosRtc::kYear, 0x30);
  h.Set(CmosRtc::kMonth, 0x06);
  h.Set(CmosRtc::kDayOfMonth, 0x15);
  h.Set(CmosRtc::kHours, 0x08);
  h.Set(CmosRtc::kMinutes, 0x00);
  h.Set(CmosRtc::kSeconds, 0x00);
  clock.Advance(5'000'000'000);  // frozen while SET
  EXPECT_EQ(h.Get(CmosRtc::kSeconds), 0x00);
  h.Set(CmosRtc::kRegB, CmosRtc::kRegB24Hour);
  clock.Advance(61'000'000'000);
  EXPECT_EQ(h.Get(CmosRtc::kYear), 0x30);
  EXPECT_EQ(h.Get(CmosRtc::kMonth), 0x06);
  EXPECT_EQ(h.Get(CmosRtc::kDayOfMonth), 0x15);
  EXPECT_EQ(h.Get(CmosRtc::kHours), 0x08);
  EXPECT_EQ(h.Get(CmosRtc::kMinutes), 0x01);
  EXPECT_EQ(h.Get(CmosRtc::kSeconds), 0x01);
  // A single field written while running.
  h.Set(CmosRtc::kMinutes, 0x30);
  EXPECT_EQ(h.Get(CmosRtc::kMinutes), 0x30);
  EXPECT_EQ(h.Get(CmosRtc::kHours), 0x08);
}

TEST(CmosRtc, PeriodicInterruptOnIrq8AcknowledgedByRegisterC) {
  ManualClock clock(1'000'000'000, UnixNs(2024, 1, 1, 0, 0, 0));
  RtcHarness h(clock);
  h.Set(CmosRtc::kRegA, 0x26);  // 1024 Hz
  h.Set(CmosRtc::kRegB, CmosRtc::kRegB24Hour | CmosRtc::kRegBPeriodicIe);
  EXPECT_FALSE(h.sink.levels[8]);
  clock.Advance(1'000'000);
  EXPECT_EQ(h.timers.RunDue(), 1u);
  EXPECT_TRUE(h.sink.levels[8]);
  EXPECT_EQ(h.Get(CmosRtc::kRegC), CmosRtc::kRegCIrqf | CmosRtc::kRegCPeriodic);
  EXPECT_FALSE(h.sink.levels[8]);
  EXPECT_EQ(h.Get(CmosRtc::kRegC), 0);
  h.Set(CmosRtc::kRegB, CmosRtc::kRegB24Hour);
  clock.Advance(1'000'000);
  EXPECT_EQ(h.timers.RunDue(), 0u);
  // The flag is still set without the interrupt enabled, but IRQF is not.
  EXPECT_EQ(h.Get(CmosRtc::kRegC) & 0xC0, CmosRtc::kRegCPeriodic);
}

TEST(CmosRtc, UpdateEndedAndAlarmInterrupts) {
  ManualClock clock(1'000'000'000, UnixNs(2024, 1, 1, 10, 20, 29) + 400'000'000);
  RtcHarness h(clock);
  h.Set(CmosRtc::kSecondsAlarm, 0x30);
  h.Set(CmosRtc::kMinutesAlarm, 0xC0);  // don't care
  h.Set(CmosRtc::kHoursAlarm, 0xFF);
  h.Get(CmosRtc::kRegC);
  h.Set(CmosRtc::kRegB, CmosRtc::kRegB24Hour | CmosRtc::kRegBUpdateIe | CmosRtc::kRegBAlarmIe);
  clock.Advance(600'000'000);  // reaches 10:20:30
  EXPECT_EQ(h.timers.RunDue(), 1u);
  EXPECT_TRUE(h.sink.levels[8]);
  // (PF is also set: the 1024 Hz periodic flag runs even without its interrupt.)
  EXPECT_EQ(h.Get(CmosRtc::kRegC) & ~CmosRtc::kRegCPeriodic,
            CmosRtc::kRegCIrqf | CmosRtc::kRegCUpdate | CmosRtc::kRegCAlarm);
  clock.Advance(1'000'000'000);
  EXPECT_EQ(h.timers.RunDue(), 1u);
  EXPECT_EQ(h.Get(CmosRtc::kRegC) & ~CmosRtc::kRegCPeriodic,
            CmosRtc::kRegCIrqf | CmosRtc::kRegCUpdate);  // no alarm at :31
}

TEST(CmosRtc, NmiMaskBitAndMemoryLayout) {
  ManualClock clock;
  RtcHarness h(clock);
  h.pio.Write(0x70, std::array<uint8_t, 1>{0x8F});
  EXPECT_TRUE(h.rtc->nmi_disabled());
  h.pio.Write(0x70, std::array<uint8_t, 1>{0x0F});
  EXPECT_FALSE(h.rtc->nmi_disabled());
  h.rtc->SetMemorySize(0xC0000000, 0x40000000);  // 3 GiB low, 1 GiB high
  h.rtc->SetCpuCount(2);
  EXPECT_EQ(h.Get(0x15) | (h.Get(0x16) << 8), 640);
  EXPECT_EQ(h.Get(0x17) | (h.Get(0x18) << 8), 0xFFFF);
  EXPECT_EQ(h.Get(0x30) | (h.Get(0x31) << 8), 0xFFFF);
  EXPECT_EQ(h.Get(0x34) | (h.Get(0x35) << 8), (0xC0000000 - 0x1000000) >> 16);
  EXPECT_EQ(h.Get(0x5B) | (h.Get(0x5C) << 8) | (h.Get(0x5D) << 16), 0x40000000 >> 16);
  EXPECT_EQ(h.Get(0x5F), 1);
  unsigned sum = 0;
  for (uint8_t i = 0x10; i <= 0x2D; ++i) sum += h.Get(i);
  EXPECT_EQ(h.Get(0x2E) << 8 | h.Get(0x2F), int(sum));
  // Plain CMOS memory is read/write.
  h.Set(0x40, 0xA5);
  EXPECT_EQ(h.Get(0x40), 0xA5);
  h.rtc->SetMemorySize(64 << 20, 0);
  EXPECT_EQ(h.Get(0x17) | (h.Get(0x18) << 8), 63 * 1024);
}

}  // namespace
}  // namespace rove
