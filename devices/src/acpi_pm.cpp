#include "rove/devices/acpi_pm.h"

namespace rove {

namespace {
constexpr uint16_t kPm1StsW1c = 0x8F31;       // TMR, BM, GBL, PWRBTN, SLPBTN, RTC, WAK
constexpr uint16_t kPm1EnWritable = 0x0721;   // TMR_EN, GBL_EN, PWRBTN_EN, SLPBTN_EN, RTC_EN
constexpr uint16_t kPm1CntWritable = 0x1C06;  // BM_RLD, GBL_RLS, SLP_TYP
}  // namespace

AcpiPm::AcpiPm(const Clock& clock, IrqLine sci, std::function<void()> power_off)
    : clock_(clock), sci_(sci), power_off_(std::move(power_off)), epoch_ns_(clock.NowNs()) {}

uint32_t AcpiPm::TimerLocked() const {
  return uint32_t(NsToTicks(ElapsedNs(clock_.NowNs(), epoch_ns_), kTimerHz)) & 0xFFFFFF;
}

void AcpiPm::UpdateSciLocked() {
  sci_.Set((pm1_sts_ & pm1_en_ & kPm1EnWritable) != 0 || (gpe0_sts_ & gpe0_en_) != 0);
}

void AcpiPm::PressPowerButton() {
  std::lock_guard lock(mu_);
  pm1_sts_ |= kPwrbtnSts;
  UpdateSciLocked();
}

void AcpiPm::SetGpe(unsigned bit) {
  std::lock_guard lock(mu_);
  gpe0_sts_ |= uint16_t(1u << (bit & 15));
  UpdateSciLocked();
}

uint8_t AcpiPm::ReadByteLocked(unsigned offset) {
  auto byte_of = [&](uint32_t v, unsigned base) { return uint8_t(v >> (8 * (offset - base))); };
  if (offset < 2) {
    // TMR_STS is set whenever the timer's bit 23 has toggled since the last look.
    const uint32_t msb =
        (uint32_t(NsToTicks(ElapsedNs(clock_.NowNs(), epoch_ns_), kTimerHz)) >> 23);
    if (msb != last_timer_msb_) {
      pm1_sts_ |= kTmrSts;
      last_timer_msb_ = msb;
      UpdateSciLocked();
    }
    return byte_of(pm1_sts_, 0);
  }
  if (offset < 4) return byte_of(pm1_en_, 2);
  if (offset < 6) return byte_of(pm1_cnt_, 4);  // SLP_EN reads as 0
  if (offset < 8) return 0;
  if (offset < 12) return byte_of(TimerLocked(), 8);
  if (offset < 14) return byte_of(gpe0_sts_, 12);
  return byte_of(gpe0_en_, 14);
}

void AcpiPm::Read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = offset + i < kSize ? ReadByteLocked(unsigned(offset + i)) : 0xFF;
  }
}

void AcpiPm::Write(uint64_t offset, std::span<const uint8_t> data) {
  bool power_off = false;
  {
    std::lock_guard lock(mu_);
    // Apply the written bytes register by register, so byte and word accesses both work.
    auto merge = [&](uint16_t& reg, unsigned base, bool w1c, uint16_t mask) {
      uint16_t written = 0, value = 0;
      for (size_t i = 0; i < data.size(); ++i) {
        const uint64_t o = offset + i;
        if (o >= base && o < base + 2) {
          written |= uint16_t(0xFF << (8 * (o - base)));
          value |= uint16_t(data[i] << (8 * (o - base)));
        }
      }
      if (!written) return false;
      if (w1c) {
        reg &= uint16_t(~(value & written & mask));
      } else {
        reg = uint16_t((reg & ~(written & mask)) | (value & written & mask));
      }
      return true;
    };
    merge(pm1_sts_, 0, true, kPm1StsW1c);
    merge(pm1_en_, 2, false, kPm1EnWritable);
    uint16_t cnt_write = pm1_cnt_;
    if (merge(cnt_write, 4, false, kPm1CntWritable | kSlpEn)) {
      if ((cnt_write & kSlpEn) && ((cnt_write >> 10) & 7) == kSlpTypS5) power_off = true;
      pm1_cnt_ = uint16_t((cnt_write & ~kSlpEn) | kSciEn);
    }
    merge(gpe0_sts_, 12, true, 0xFFFF);
    merge(gpe0_en_, 14, false, 0xFFFF);
    UpdateSciLocked();
  }
  if (power_off && power_off_) power_off_();
}

// --- Snapshot. ---

void AcpiPm::SaveState(StateWriter& out) const {
  std::lock_guard lock(mu_);
  out.U16(pm1_sts_);
  out.U16(pm1_en_);
  out.U16(pm1_cnt_);
  out.U16(gpe0_sts_);
  out.U16(gpe0_en_);
  out.U32(last_timer_msb_);
  // The timer's whole tick count (not just its 24 bits) and the phase within the tick, so
  // TMR_STS and the counter continue exactly.
  out.U64(ElapsedNs(clock_.NowNs(), epoch_ns_));
}

StateApply AcpiPm::ParseState(StateReader& in) {
  const uint16_t pm1_sts = in.U16("pm1 status");
  const uint16_t pm1_en = in.U16("pm1 enable");
  const uint16_t pm1_cnt = in.U16("pm1 control");
  if (!(pm1_cnt & kSciEn) || (pm1_cnt & ~(kPm1CntWritable | kSciEn)))
    in.Fail("invalid PM1 control");
  const uint16_t gpe0_sts = in.U16("gpe0 status");
  const uint16_t gpe0_en = in.U16("gpe0 enable");
  const uint32_t last_msb = in.U32("last timer msb");
  const uint64_t elapsed = in.U64Max(UINT64_MAX / 2, "timer elapsed ns");
  return [=, this]() mutable {
    std::lock_guard lock(mu_);
    pm1_sts_ = pm1_sts;
    pm1_en_ = pm1_en;
    pm1_cnt_ = pm1_cnt;
    gpe0_sts_ = gpe0_sts;
    gpe0_en_ = gpe0_en;
    last_timer_msb_ = last_msb;
    epoch_ns_ = clock_.NowNs() - elapsed;  // may wrap: reads use ElapsedNs
    UpdateSciLocked();
  };
}

void AcpiPm::LoadState(StateReader& in) {
  ParseState(in)();
}

}  // namespace rove
