#include "rove/devices/cmos_rtc.h"

#include <algorithm>
#include <ctime>

namespace rove {

namespace {
constexpr int64_t kNsPerSecond = 1'000'000'000;
constexpr uint8_t kRegDValid = 0x80;
constexpr uint8_t kDividerNormal = 0x20;  // register A DV = 010: 32.768 kHz time base running

int64_t FloorDiv(int64_t a, int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}
}  // namespace

CmosRtc::CmosRtc(TimerQueue& timers, IrqLine irq8)
    : timers_(timers),
      clock_(timers.clock()),
      irq_(irq8),
      periodic_timer_(timers.Create([this](uint64_t now) { OnPeriodic(now); })),
      update_timer_(timers.Create([this](uint64_t now) { OnUpdate(now); })) {
  std::lock_guard lock(mu_);
  ram_[kRegA] = kDividerNormal | 0x06;  // 1024 Hz periodic rate, as a BIOS leaves it
  ram_[kRegB] = kRegB24Hour;            // BCD, 24-hour
  ram_[kRegD] = kRegDValid;
  ram_[0x14] = 0x02;  // equipment: math coprocessor present
  ram_[0x15] = 0x80;  // 640 KiB base memory
  ram_[0x16] = 0x02;
  last_c_read_ns_ = clock_.NowNs();
  last_c_read_second_ = FloorDiv(GuestWallNs(), kNsPerSecond);
  UpdateChecksumLocked();
}

CmosRtc::~CmosRtc() {
  timers_.Disarm(periodic_timer_);
  timers_.Disarm(update_timer_);
}

bool CmosRtc::nmi_disabled() const {
  std::lock_guard lock(mu_);
  return nmi_disabled_;
}

// --- Time conversion. ---

int64_t CmosRtc::GuestWallNs() const {
  return clock_.WallNs() + offset_ns_;
}

CmosRtc::Fields CmosRtc::Breakdown(int64_t unix_seconds) {
  const time_t t = time_t(unix_seconds);
  struct tm tm {};
  gmtime_r(&t, &tm);
  return Fields{tm.tm_sec,  tm.tm_min,     tm.tm_hour,       tm.tm_wday + 1,
                tm.tm_mday, tm.tm_mon + 1, tm.tm_year + 1900};
}

int64_t CmosRtc::ToUnix(const Fields& f) {
  struct tm tm {};
  tm.tm_sec = f.sec;
  tm.tm_min = f.min;
  tm.tm_hour = f.hour;
  tm.tm_mday = f.mday;
  tm.tm_mon = f.mon - 1;
  tm.tm_year = f.year - 1900;
  return int64_t(timegm(&tm));
}

uint8_t CmosRtc::Encode(int value) const {
  if (ram_[kRegB] & kRegBBinary) return uint8_t(value);
  return uint8_t(((value / 10) << 4) | (value % 10));
}

int CmosRtc::Decode(uint8_t value) const {
  if (ram_[kRegB] & kRegBBinary) return value;
  return (value >> 4) * 10 + (value & 0xF);
}

uint8_t CmosRtc::EncodeHour(int hour) const {
  if (ram_[kRegB] & kRegB24Hour) return Encode(hour);
  const int h12 = hour % 12 == 0 ? 12 : hour % 12;
  return uint8_t(Encode(h12) | (hour >= 12 ? 0x80 : 0));
}

int CmosRtc::DecodeHour(uint8_t value) const {
  if (ram_[kRegB] & kRegB24Hour) return Decode(value);
  const int h12 = Decode(value & 0x7F);
  return h12 % 12 + ((value & 0x80) ? 12 : 0);
}

void CmosRtc::EncodeTime(const Fields& f, std::array<uint8_t, 0x33>& regs) const {
  regs[kSeconds] = Encode(f.sec);
  regs[kMinutes] = Encode(f.min);
  regs[kHours] = EncodeHour(f.hour);
  regs[kDayOfWeek] = Encode(f.wday);
  regs[kDayOfMonth] = Encode(f.mday);
  regs[kMonth] = Encode(f.mon);
  regs[kYear] = Encode(f.year % 100);
  regs[kCentury] = Encode(f.year / 100);
}

CmosRtc::Fields CmosRtc::DecodeTime(const std::array<uint8_t, 0x33>& regs) const {
  Fields f;
  f.sec = Decode(regs[kSeconds]);
  f.min = Decode(regs[kMinutes]);
  f.hour = DecodeHour(regs[kHours]);
  f.wday = Decode(regs[kDayOfWeek]);
  f.mday = Decode(regs[kDayOfMonth]);
  f.mon = Decode(regs[kMonth]);
  f.year = Decode(regs[kCentury]) * 100 + Decode(regs[kYear]);
  return f;
}

void CmosRtc::SetGuestTimeLocked(const Fields& f, int64_t sub_second_ns) {
  offset_ns_ = ToUnix(f) * kNsPerSecond + sub_second_ns - clock_.WallNs();
}

// --- Interrupts. ---

void CmosRtc::UpdateIrqLocked() {
  const bool irqf = (reg_c_ & ram_[kRegB] & 0x70) != 0;
  reg_c_ = irqf ? (reg_c_ | kRegCIrqf) : (reg_c_ & ~kRegCIrqf);
  irq_.Set(irqf);
}

uint64_t CmosRtc::PeriodNsLocked() const {
  const unsigned rs = ram_[kRegA] & 0xF;
  if (rs == 0 || (ram_[kRegA] & 0x70) != kDividerNormal) return 0;
  const unsigned hz = rs <= 2 ? (32768u >> (rs + 6)) : (32768u >> (rs - 1));
  return uint64_t(kNsPerSecond) / hz;
}

uint64_t CmosRtc::PhaseLocked(uint64_t period) const {
  const int64_t p = int64_t(period);
  return uint64_t((periodic_phase_ns_ % p + p) % p);
}

uint64_t CmosRtc::PeriodIndexLocked(uint64_t t, uint64_t period) const {
  return (t + period - PhaseLocked(period)) / period;
}

uint64_t CmosRtc::NextPeriodicLocked(uint64_t t, uint64_t period) const {
  return PeriodIndexLocked(t, period) * period + PhaseLocked(period);
}

void CmosRtc::ScheduleLocked() {
  const uint64_t now = clock_.NowNs();
  const uint64_t period = PeriodNsLocked();
  if (period && (ram_[kRegB] & kRegBPeriodicIe)) {
    timers_.Arm(periodic_timer_, NextPeriodicLocked(now, period));
  } else {
    timers_.Disarm(periodic_timer_);
  }
  if ((ram_[kRegB] & (kRegBUpdateIe | kRegBAlarmIe)) && !(ram_[kRegB] & kRegBSet)) {
    const int64_t wall = GuestWallNs();
    const int64_t to_next_second =
        kNsPerSecond - (wall - FloorDiv(wall, kNsPerSecond) * kNsPerSecond);
    timers_.Arm(update_timer_, now + uint64_t(to_next_second));
  } else {
    timers_.Disarm(update_timer_);
  }
}

bool CmosRtc::AlarmMatchesLocked(const Fields& f) const {
  auto match = [&](uint8_t alarm, int value, bool hour) {
    if ((alarm & 0xC0) == 0xC0) return true;  // "don't care"
    return (hour ? DecodeHour(alarm) : Decode(alarm)) == value;
  };
  return match(ram_[kSecondsAlarm], f.sec, false) && match(ram_[kMinutesAlarm], f.min, false) &&
         match(ram_[kHoursAlarm], f.hour, true);
}

void CmosRtc::OnPeriodic(uint64_t now) {
  std::lock_guard lock(mu_);
  const uint64_t period = PeriodNsLocked();
  if (!period || !(ram_[kRegB] & kRegBPeriodicIe)) return;
  reg_c_ |= kRegCPeriodic;
  UpdateIrqLocked();
  timers_.Arm(periodic_timer_, NextPeriodicLocked(now, period));
}

void CmosRtc::OnUpdate(uint64_t now) {
  std::lock_guard lock(mu_);
  if (!(ram_[kRegB] & (kRegBUpdateIe | kRegBAlarmIe)) || (ram_[kRegB] & kRegBSet)) return;
  const int64_t wall = GuestWallNs();
  // Round to the nearest second: this callback runs just after a second boundary.
  const Fields f = Breakdown(FloorDiv(wall + kNsPerSecond / 2, kNsPerSecond));
  reg_c_ |= kRegCUpdate;
  if (AlarmMatchesLocked(f)) reg_c_ |= kRegCAlarm;
  UpdateIrqLocked();
  const int64_t to_next_second =
      kNsPerSecond - (wall - FloorDiv(wall, kNsPerSecond) * kNsPerSecond);
  timers_.Arm(update_timer_, now + uint64_t(std::max<int64_t>(to_next_second, kNsPerSecond / 2)));
}

// --- Registers. ---

void CmosRtc::UpdateChecksumLocked() {
  unsigned sum = 0;
  for (unsigned i = 0x10; i <= 0x2D; ++i) sum += ram_[i];
  ram_[0x2E] = uint8_t(sum >> 8);
  ram_[0x2F] = uint8_t(sum);
}

uint8_t CmosRtc::ReadLocked(uint8_t index) {
  switch (index) {
    case kSeconds:
    case kMinutes:
    case kHours:
    case kDayOfWeek:
    case kDayOfMonth:
    case kMonth:
    case kYear:
    case kCentury: {
      if (ram_[kRegB] & kRegBSet) return frozen_[index];
      std::array<uint8_t, 0x33> regs{};
      EncodeTime(Breakdown(FloorDiv(GuestWallNs(), kNsPerSecond)), regs);
      return regs[index];
    }
    case kRegA: {
      const int64_t wall = GuestWallNs();
      const int64_t frac = wall - FloorDiv(wall, kNsPerSecond) * kNsPerSecond;
      const bool uip = (ram_[kRegA] & 0x70) == kDividerNormal && !(ram_[kRegB] & kRegBSet) &&
                       frac >= kNsPerSecond - int64_t(kUipWindowNs);
      return uint8_t((ram_[kRegA] & 0x7F) | (uip ? kRegAUip : 0));
    }
    case kRegC: {
      // Flags of events whose interrupts are disabled are still set, lazily.
      const uint64_t now = clock_.NowNs();
      const uint64_t period = PeriodNsLocked();
      if (period && PeriodIndexLocked(now, period) != PeriodIndexLocked(last_c_read_ns_, period)) {
        reg_c_ |= kRegCPeriodic;
      }
      const int64_t second = FloorDiv(GuestWallNs(), kNsPerSecond);
      if (second != last_c_read_second_ && !(ram_[kRegB] & kRegBSet)) reg_c_ |= kRegCUpdate;
      last_c_read_ns_ = now;
      last_c_read_second_ = second;
      const uint8_t v = uint8_t(reg_c_ | ((reg_c_ & ram_[kRegB] & 0x70) ? kRegCIrqf : 0));
      reg_c_ = 0;
      UpdateIrqLocked();
      return v;
    }
    case kRegD:
      return kRegDValid;
    default:
      return ram_[index & 0x7F];
  }
}

void CmosRtc::WriteLocked(uint8_t index, uint8_t value) {
  switch (index) {
    case kSeconds:
    case kMinutes:
    case kHours:
    case kDayOfWeek:
    case kDayOfMonth:
    case kMonth:
    case kYear:
    case kCentury: {
      if (ram_[kRegB] & kRegBSet) {
        frozen_[index] = value;  // takes effect when SET is cleared
        return;
      }
      // Setting one field while the clock runs: keep the others and the sub-second phase.
      const int64_t wall = GuestWallNs();
      const int64_t second = FloorDiv(wall, kNsPerSecond);
      std::array<uint8_t, 0x33> regs{};
      EncodeTime(Breakdown(second), regs);
      regs[index] = value;
      SetGuestTimeLocked(DecodeTime(regs), wall - second * kNsPerSecond);
      return;
    }
    case kRegA:
      ram_[kRegA] = value & 0x7F;
      ScheduleLocked();
      return;
    case kRegB: {
      const uint8_t old = ram_[kRegB];
      uint8_t b = value;
      if (b & kRegBSet) b &= ~kRegBUpdateIe;  // SET clears UIE
      if ((b & kRegBSet) && !(old & kRegBSet)) {
        // Freeze the time registers (in the format in force before this write).
        EncodeTime(Breakdown(FloorDiv(GuestWallNs(), kNsPerSecond)), frozen_);
      }
      ram_[kRegB] = b;
      if (!(b & kRegBSet) && (old & kRegBSet)) SetGuestTimeLocked(DecodeTime(frozen_), 0);
      UpdateIrqLocked();
      ScheduleLocked();
      return;
    }
    case kRegC:
    case kRegD:
      return;  // read-only
    default:
      ram_[index & 0x7F] = value;
      return;
  }
}

void CmosRtc::Read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    // The index port reads back as 0xFF on most chipsets; the data port reads the register.
    data[i] = (offset + i == 1) ? ReadLocked(index_) : 0xFF;
  }
}

void CmosRtc::Write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    if (offset + i == 0) {
      index_ = data[i] & 0x7F;
      nmi_disabled_ = data[i] & 0x80;
    } else if (offset + i == 1) {
      WriteLocked(index_, data[i]);
    }
  }
}

// --- CMOS memory set-up. ---

void CmosRtc::SetByte(uint8_t index, uint8_t value) {
  std::lock_guard lock(mu_);
  if (index < 0x0E || index >= 0x80 || index == kCentury) return;
  ram_[index] = value;
  if (index >= 0x10 && index <= 0x2D) UpdateChecksumLocked();
}

uint8_t CmosRtc::byte(uint8_t index) {
  std::lock_guard lock(mu_);
  return ReadLocked(index & 0x7F);
}

void CmosRtc::SetMemorySize(uint64_t below_4g, uint64_t above_4g) {
  std::lock_guard lock(mu_);
  constexpr uint64_t kMiB = 1024 * 1024;
  const uint64_t ext_kib =
      below_4g > kMiB ? std::min<uint64_t>((below_4g - kMiB) / 1024, 0xFFFF) : 0;
  ram_[0x17] = ram_[0x30] = uint8_t(ext_kib);
  ram_[0x18] = ram_[0x31] = uint8_t(ext_kib >> 8);
  const uint64_t above_16m =
      below_4g > 16 * kMiB ? std::min<uint64_t>((below_4g - 16 * kMiB) >> 16, 0xFFFF) : 0;
  ram_[0x34] = uint8_t(above_16m);
  ram_[0x35] = uint8_t(above_16m >> 8);
  const uint64_t high = std::min<uint64_t>(above_4g >> 16, 0xFFFFFF);
  ram_[0x5B] = uint8_t(high);
  ram_[0x5C] = uint8_t(high >> 8);
  ram_[0x5D] = uint8_t(high >> 16);
  UpdateChecksumLocked();
}

void CmosRtc::SetCpuCount(unsigned cpus) {
  std::lock_guard lock(mu_);
  ram_[0x5F] = uint8_t(cpus == 0 ? 0 : cpus - 1);
}

// --- Snapshot. ---

void CmosRtc::SaveState(StateWriter& out) const {
  std::lock_guard lock(mu_);
  const uint64_t now = clock_.NowNs();
  const uint64_t period = PeriodNsLocked();
  out.Bytes(ram_.data(), ram_.size());
  out.U8(index_);
  out.Bool(nmi_disabled_);
  out.I64(offset_ns_);
  out.U8(reg_c_);
  out.Bytes(frozen_.data(), frozen_.size());
  // The periodic rate's phase relative to the clock now (v2; kept for any rate, even while it
  // is off); whether a boundary has passed since register C was last read (its lazily set PF
  // flag); the last second register C saw.
  out.I64(periodic_phase_ns_ - int64_t(now));
  out.Bool(period && PeriodIndexLocked(now, period) != PeriodIndexLocked(last_c_read_ns_, period));
  out.I64(last_c_read_second_);
  // A timer that should be armed but is not has its callback under way (waiting for our lock):
  // the loaded copy fires it at once.
  const bool periodic_on = period && (ram_[kRegB] & kRegBPeriodicIe);
  const bool update_on =
      (ram_[kRegB] & (kRegBUpdateIe | kRegBAlarmIe)) && !(ram_[kRegB] & kRegBSet);
  out.Bool(periodic_on && !timers_.armed(periodic_timer_));
  out.Bool(update_on && !timers_.armed(update_timer_));
}

StateApply CmosRtc::ParseState(StateReader& in) {
  std::array<uint8_t, 128> ram;
  in.Bytes(ram.data(), ram.size(), "cmos ram");
  if (ram[kRegA] & kRegAUip) in.Fail("register A has the UIP bit stored");
  const uint8_t index = in.U8Max(0x7F, "index");
  const bool nmi_disabled = in.Bool("nmi disabled");
  const int64_t offset_ns = in.I64("time offset ns");
  // Keep the guest time representable in int64 nanoseconds: +-200 years from the host time.
  constexpr int64_t kMaxOffset = int64_t(200) * 366 * 86400 * kNsPerSecond;
  if (offset_ns > kMaxOffset || offset_ns < -kMaxOffset) in.Fail("time-of-day offset out of range");
  const uint8_t reg_c = in.U8("register C");
  std::array<uint8_t, 0x33> frozen;
  in.Bytes(frozen.data(), frozen.size(), "frozen time registers");
  const int64_t phase = in.I64("periodic phase ns");
  if (phase > (int64_t(1) << 62) || phase < -(int64_t(1) << 62))
    in.Fail("periodic phase out of range");
  const bool pf_pending = in.Bool("periodic flag pending");
  const int64_t last_second = in.I64("last register C second");
  const bool periodic_due = in.Bool("periodic interrupt due");
  const bool update_due = in.Bool("update interrupt due");
  return [=, this]() mutable {
    std::lock_guard lock(mu_);
    const uint64_t now = clock_.NowNs();
    ram_ = ram;
    index_ = index;
    nmi_disabled_ = nmi_disabled;
    offset_ns_ = offset_ns;
    reg_c_ = reg_c;
    frozen_ = frozen;
    last_c_read_second_ = last_second;
    const uint64_t period = PeriodNsLocked();
    periodic_phase_ns_ = int64_t(now) + phase;
    last_c_read_ns_ = (pf_pending && period) ? now - period : now;  // may wrap: only compared
    UpdateIrqLocked();
    ScheduleLocked();
    if (periodic_due) timers_.Arm(periodic_timer_, now);
    if (update_due) timers_.Arm(update_timer_, now);
  };
}

void CmosRtc::LoadState(StateReader& in) {
  ParseState(in)();
}

}  // namespace rove
