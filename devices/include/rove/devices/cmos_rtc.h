// The MC146818-compatible CMOS real-time clock and its 128 bytes of CMOS memory, at index port
// 0x70 (bit 7 = NMI disable) and data port 0x71; IRQ8.
//
// The clock shows the host's time of day (UTC, which is what Linux assumes on x86) plus an
// offset the guest can change by setting the time. Register B selects BCD or binary and 12- or
// 24-hour format; register A's update-in-progress bit is set during the last 244 us of every
// second; register D reports valid RAM and time. Periodic (rate from register A), alarm and
// update-ended interrupts raise IRQ8 and are acknowledged by reading register C.
//
// CMOS memory is initialised the way SeaBIOS/QEMU lay it out for a guest that reads its memory
// size there (SetMemorySize/SetCpuCount): base memory (0x15/0x16), extended memory
// (0x17/0x18, 0x30/0x31), memory above 16 MiB in 64 KiB units (0x34/0x35), memory above
// 4 GiB in 64 KiB units (0x5B-0x5D), CPU count - 1 (0x5F), century (0x32), and the standard
// checksum over 0x10-0x2D at 0x2E/0x2F.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>

#include "rove/devices/bus.h"
#include "rove/devices/device_state.h"
#include "rove/devices/irq.h"
#include "rove/devices/timer_queue.h"

namespace rove {

class CmosRtc final : public BusDevice {
 public:
  // Register indices.
  enum Index : uint8_t {
    kSeconds = 0x00,
    kSecondsAlarm = 0x01,
    kMinutes = 0x02,
    kMinutesAlarm = 0x03,
    kHours = 0x04,
    kHoursAlarm = 0x05,
    kDayOfWeek = 0x06,
    kDayOfMonth = 0x07,
    kMonth = 0x08,
    kYear = 0x09,
    kRegA = 0x0A,
    kRegB = 0x0B,
    kRegC = 0x0C,
    kRegD = 0x0D,
    kCentury = 0x32,
  };
  static constexpr uint8_t kRegAUip = 0x80;
  static constexpr uint8_t kRegBSet = 0x80;
  static constexpr uint8_t kRegBPeriodicIe = 0x40;
  static constexpr uint8_t kRegBAlarmIe = 0x20;
  static constexpr uint8_t kRegBUpdateIe = 0x10;
  static constexpr uint8_t kRegBBinary = 0x04;
  static constexpr uint8_t kRegB24Hour = 0x02;
  static constexpr uint8_t kRegCIrqf = 0x80;
  static constexpr uint8_t kRegCPeriodic = 0x40;
  static constexpr uint8_t kRegCAlarm = 0x20;
  static constexpr uint8_t kRegCUpdate = 0x10;
  static constexpr uint64_t kUipWindowNs = 244'000;

  CmosRtc(TimerQueue& timers, IrqLine irq8);
  ~CmosRtc() override;

  // BusDevice: 2-port window (index, data).
  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

  // CMOS memory set-up (indices 0x0E-0x7F; the clock registers are not memory).
  void SetByte(uint8_t index, uint8_t value);
  uint8_t byte(uint8_t index);
  void SetMemorySize(uint64_t below_4g, uint64_t above_4g);
  void SetCpuCount(unsigned cpus);

  bool nmi_disabled() const;

  // Snapshot (record body, see device_state.h). The time of day keeps following host wall
  // time (its guest offset is saved); the periodic rate keeps its phase relative to the clock.
  void SaveState(StateWriter& out) const;
  void LoadState(StateReader& in);
  // LoadState in two steps: reads and checks everything (throwing StateError, changing
  // nothing), then returns what applies it.
  StateApply ParseState(StateReader& in);

 private:
  struct Fields {
    int sec, min, hour, wday, mday, mon, year;  // wday 1-7 (Sunday = 1), mon 1-12, full year
  };
  int64_t GuestWallNs() const;
  static Fields Breakdown(int64_t unix_seconds);
  static int64_t ToUnix(const Fields& f);
  uint8_t Encode(int value) const;
  int Decode(uint8_t value) const;
  uint8_t EncodeHour(int hour) const;
  int DecodeHour(uint8_t value) const;
  // The register image of the time `f` in the current format.
  void EncodeTime(const Fields& f, std::array<uint8_t, 0x33>& regs) const;
  Fields DecodeTime(const std::array<uint8_t, 0x33>& regs) const;
  void SetGuestTimeLocked(const Fields& f, int64_t sub_second_ns);

  uint8_t ReadLocked(uint8_t index);
  void WriteLocked(uint8_t index, uint8_t value);
  void UpdateIrqLocked();
  void UpdateChecksumLocked();
  uint64_t PeriodNsLocked() const;
  // Periodic-rate boundaries are at periodic_phase_ns_ (mod period) on the clock.
  uint64_t PhaseLocked(uint64_t period) const;
  uint64_t PeriodIndexLocked(uint64_t t, uint64_t period) const;
  uint64_t NextPeriodicLocked(uint64_t t, uint64_t period) const;
  void ScheduleLocked();
  bool AlarmMatchesLocked(const Fields& f) const;
  void OnPeriodic(uint64_t now);
  void OnUpdate(uint64_t now);

  TimerQueue& timers_;
  const Clock& clock_;
  IrqLine irq_;
  TimerQueue::TimerId periodic_timer_;
  TimerQueue::TimerId update_timer_;
  mutable std::mutex mu_;
  std::array<uint8_t, 128> ram_{};
  uint8_t index_ = 0;
  bool nmi_disabled_ = false;
  int64_t offset_ns_ = 0;  // guest time minus host wall time
  uint8_t reg_c_ = 0;
  int64_t periodic_phase_ns_ = 0;       // may be negative after a snapshot load
  uint64_t last_c_read_ns_ = 0;         // monotonic, for lazily set PF
  int64_t last_c_read_second_ = 0;      // guest wall second, for lazily set UF
  std::array<uint8_t, 0x33> frozen_{};  // time registers while SET is on
};

}  // namespace rove
