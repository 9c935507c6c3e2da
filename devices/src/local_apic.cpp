#include "rove/devices/local_apic.h"

#include <algorithm>
#include <bit>

#include "rove/devices/bus.h"

namespace rove {

namespace {

constexpr uint64_t kBaseAddressMask = 0x000FFFFFFFFFF000ull;
constexpr uint64_t kBaseWritable =
    kBaseAddressMask | LocalApic::kBaseExtd | LocalApic::kBaseEnable | LocalApic::kBaseBsp;

constexpr uint32_t kIcrDeliveryStatus = 1u << 12;
constexpr uint32_t kIcrWritable = 0x000CCFFF;  // vector, mode, dest mode, level, trigger, shorthand

constexpr uint32_t kLvtTimerWritable = 0x000700FF;
constexpr uint32_t kLvtThermalPerfWritable = 0x000107FF;
constexpr uint32_t kLvtLintWritable = 0x0001A7FF;
constexpr uint32_t kLvtLintRemoteIrr = 1u << 14;
constexpr uint32_t kLvtErrorWritable = 0x000100FF;

constexpr uint32_t kEsrSendIllegalVector = 1u << 5;
constexpr uint32_t kEsrReceiveIllegalVector = 1u << 6;

bool TestBit(const uint32_t (&bits)[8], unsigned v) {
  return (bits[v >> 5] >> (v & 31)) & 1;
}
void SetBit(uint32_t (&bits)[8], unsigned v) {
  bits[v >> 5] |= 1u << (v & 31);
}
void ClearBit(uint32_t (&bits)[8], unsigned v) {
  bits[v >> 5] &= ~(1u << (v & 31));
}
int HighestBit(const uint32_t (&bits)[8]) {
  for (int i = 7; i >= 0; --i) {
    if (bits[i]) return i * 32 + 31 - std::countl_zero(bits[i]);
  }
  return -1;
}

}  // namespace

LocalApic::LocalApic(unsigned cpu, const LocalApicConfig& config, LocalApicHost& host,
                     TimerQueue& timers)
    : cpu_(cpu),
      config_(config),
      host_(host),
      timers_(timers),
      timer_id_(timers.Create([this](uint64_t now) { OnTimer(now); })),
      apic_base_(kDefaultBase | kBaseEnable | (config.bsp ? kBaseBsp : 0)),
      id_(config.apic_id) {
  std::lock_guard lock(mu_);
  ResetRegisters();
}

LocalApic::~LocalApic() {
  timers_.Disarm(timer_id_);
}

void LocalApic::ResetRegisters() {
  tpr_ = 0;
  ldr_ = 0;
  dfr_ = 0xFFFFFFFF;
  svr_ = 0xFF;
  std::fill(std::begin(irr_), std::end(irr_), 0);
  std::fill(std::begin(isr_), std::end(isr_), 0);
  std::fill(std::begin(tmr_), std::end(tmr_), 0);
  esr_ = 0;
  esr_pending_ = 0;
  icr_low_ = 0;
  icr_high_ = 0;
  std::fill(std::begin(lvt_), std::end(lvt_), kLvtMasked);
  timer_initial_ = 0;
  timer_divide_ = 0;
  StopTimerLocked();
  tsc_deadline_ = 0;
  nmi_pending_ = false;
  extint_pending_ = false;
}

void LocalApic::Run(const Actions& actions) {
  if (actions.send) host_.SendIpi(cpu_, actions.message);
  if (actions.eoi_vector >= 0) host_.BroadcastEoi(uint8_t(actions.eoi_vector));
  if (actions.wake) host_.Wake(cpu_);
}

uint32_t LocalApic::apic_id() const {
  std::lock_guard lock(mu_);
  return id_;
}

uint64_t LocalApic::apic_base() const {
  return apic_base_.load(std::memory_order_acquire);
}

uint64_t LocalApic::mmio_base() const {
  return apic_base() & kBaseAddressMask;
}

bool LocalApic::x2apic_mode() const {
  return (apic_base() & kBaseExtd) != 0;
}

bool LocalApic::ClaimsMmio(uint64_t gpa) const {
  const uint64_t base = apic_base();
  if ((base & (kBaseEnable | kBaseExtd)) != kBaseEnable) return false;
  return gpa - (base & kBaseAddressMask) < kMmioSize;
}

bool LocalApic::SetApicBase(uint64_t value) {
  if (value & ~kBaseWritable) return false;
  const bool new_en = value & kBaseEnable;
  const bool new_extd = value & kBaseExtd;
  if (new_extd && !new_en) return false;
  std::lock_guard lock(mu_);
  const uint64_t old = apic_base_.load(std::memory_order_relaxed);
  const bool old_en = old & kBaseEnable;
  const bool old_extd = old & kBaseExtd;
  if (old_en && old_extd && new_en && !new_extd) return false;  // x2APIC -> xAPIC
  if (!old_en && new_extd) return false;                        // disabled -> x2APIC
  apic_base_.store((value & ~kBaseBsp) | (config_.bsp ? kBaseBsp : 0), std::memory_order_release);
  if (old_en && !new_en) {
    // Globally disabling the APIC is like a power-up reset of its registers.
    id_ = config_.apic_id;
    ResetRegisters();
  }
  if (new_extd && !old_extd) id_ = config_.apic_id;  // the x2APIC ID is the initial ID
  return true;
}

// --- Register access. ---

uint32_t LocalApic::LdrLocked() const {
  if (apic_base_.load(std::memory_order_relaxed) & kBaseExtd) {
    return ((id_ >> 4) << 16) | (1u << (id_ & 0xF));
  }
  return ldr_;
}

int LocalApic::HighestIrr() const {
  return HighestBit(irr_);
}
int LocalApic::HighestIsr() const {
  return HighestBit(isr_);
}

uint8_t LocalApic::PprLocked() const {
  const int isrv = HighestIsr();
  const uint32_t isr_class = isrv < 0 ? 0 : uint32_t(isrv) & 0xF0;
  return (tpr_ & 0xF0) >= isr_class ? uint8_t(tpr_) : uint8_t(isr_class);
}

bool LocalApic::HasInterruptLocked() const {
  if (!(apic_base_.load(std::memory_order_relaxed) & kBaseEnable)) return false;
  const int v = HighestIrr();
  return v >= 0 && (uint32_t(v) & 0xF0) > (PprLocked() & 0xF0u);
}

uint32_t LocalApic::ReadRegLocked(uint32_t reg, bool x2apic) const {
  if (reg >= kRegIsr && reg < kRegIsr + 0x80) return isr_[(reg - kRegIsr) >> 4];
  if (reg >= kRegTmr && reg < kRegTmr + 0x80) return tmr_[(reg - kRegTmr) >> 4];
  if (reg >= kRegIrr && reg < kRegIrr + 0x80) return irr_[(reg - kRegIrr) >> 4];
  switch (reg) {
    case kRegId:
      return x2apic ? id_ : (id_ << 24);
    case kRegVersion:
      return kVersion;
    case kRegTpr:
      return tpr_;
    case kRegPpr:
      return PprLocked();
    case kRegLdr:
      return LdrLocked();
    case kRegDfr:
      return dfr_ | 0x0FFFFFFF;
    case kRegSvr:
      return svr_;
    case kRegEsr:
      return esr_;
    case kRegIcrLow:
      return icr_low_ & ~kIcrDeliveryStatus;  // delivery is instantaneous: always idle
    case kRegIcrHigh:
      return icr_high_;
    case kRegLvtTimer:
      return lvt_[kLvtTimer];
    case kRegLvtThermal:
      return lvt_[kLvtThermal];
    case kRegLvtPerf:
      return lvt_[kLvtPerf];
    case kRegLvtLint0:
      return lvt_[kLvtLint0];
    case kRegLvtLint1:
      return lvt_[kLvtLint1];
    case kRegLvtError:
      return lvt_[kLvtError];
    case kRegTimerInitial:
      return timer_initial_;
    case kRegTimerCurrent:
      return CurrentCountLocked(timers_.clock().NowNs());
    case kRegTimerDivide:
      return timer_divide_;
    default:
      return 0;
  }
}

uint32_t LocalApic::ReadRegister(uint32_t reg) {
  std::lock_guard lock(mu_);
  return ReadRegLocked(reg, x2apic_mode());
}

void LocalApic::SetErrorLocked(uint32_t bits, Actions& actions) {
  esr_pending_ |= bits;
  const uint32_t lvt = lvt_[kLvtError];
  const uint8_t vector = uint8_t(lvt);
  if (!(lvt & kLvtMasked) && vector >= 16 && (svr_ & kSvrEnable)) {
    SetBit(irr_, vector);
    ClearBit(tmr_, vector);
    actions.wake = true;
  }
}

void LocalApic::SetIrrLocked(uint8_t vector, bool level, Actions& actions) {
  if (vector < 16) {
    SetErrorLocked(kEsrReceiveIllegalVector, actions);
    return;
  }
  if (!(svr_ & kSvrEnable)) return;  // a software-disabled APIC accepts no fixed interrupts
  SetBit(irr_, vector);
  if (level) {
    SetBit(tmr_, vector);
  } else {
    ClearBit(tmr_, vector);
  }
  actions.wake = true;
}

void LocalApic::EoiLocked(Actions& actions) {
  const int v = HighestIsr();
  if (v < 0) return;
  ClearBit(isr_, unsigned(v));
  if (TestBit(tmr_, unsigned(v))) actions.eoi_vector = v;
  if (HasInterruptLocked()) actions.wake = true;
}

void LocalApic::SendIcrLocked(uint64_t icr, bool x2apic, Actions& actions) {
  ApicMessage m;
  m.vector = uint8_t(icr);
  m.mode = DeliveryMode((icr >> 8) & 7);
  m.logical = (icr >> 11) & 1;
  m.assert = (icr >> 14) & 1;
  m.level_triggered = (icr >> 15) & 1;
  m.shorthand = DestinationShorthand((icr >> 18) & 3);
  m.wide = x2apic;
  m.destination = x2apic ? uint32_t(icr >> 32) : uint32_t(icr >> 56);
  switch (m.mode) {
    case DeliveryMode::kFixed:
    case DeliveryMode::kLowestPriority:
      if (m.vector < 16) {
        SetErrorLocked(kEsrSendIllegalVector, actions);
        return;
      }
      break;
    case DeliveryMode::kNmi:
    case DeliveryMode::kInit:
    case DeliveryMode::kStartup:
      break;
    default:  // SMI, reserved, ExtINT: not sent by software here
      return;
  }
  actions.send = true;
  actions.message = m;
}

bool LocalApic::WriteRegLocked(uint32_t reg, uint64_t value64, bool x2apic, Actions& actions) {
  const uint32_t value = uint32_t(value64);
  const bool sw_enabled = svr_ & kSvrEnable;
  const uint64_t now = timers_.clock().NowNs();
  auto lvt_value = [&](uint32_t writable) {
    uint32_t v = value & writable;
    if (!sw_enabled) v |= kLvtMasked;
    return v;
  };
  switch (reg) {
    case kRegId:
      if (x2apic) return false;
      id_ = value >> 24;
      return true;
    case kRegTpr:
      tpr_ = value & 0xFF;
      if (HasInterruptLocked()) actions.wake = true;
      return true;
    case kRegEoi:
      if (x2apic && value != 0) return false;
      EoiLocked(actions);
      return true;
    case kRegLdr:
      if (x2apic) return false;
      ldr_ = value & 0xFF000000;
      return true;
    case kRegDfr:
      if (x2apic) return false;
      dfr_ = value | 0x0FFFFFFF;
      return true;
    case kRegSvr:
      svr_ = value & 0x3FF;
      if (!(svr_ & kSvrEnable)) {
        for (uint32_t& l : lvt_) l |= kLvtMasked;
      }
      actions.wake = true;  // LINT0 / pending IRR may have become live
      return true;
    case kRegEsr:
      if (x2apic && value != 0) return false;
      esr_ = esr_pending_;
      esr_pending_ = 0;
      return true;
    case kRegIcrLow:
      if (x2apic) return false;  // 64-bit MSR, handled by WriteMsr
      icr_low_ = value & kIcrWritable;
      SendIcrLocked((uint64_t(icr_high_) << 32) | icr_low_, false, actions);
      return true;
    case kRegIcrHigh:
      if (x2apic) return false;
      icr_high_ = value & 0xFF000000;
      return true;
    case kRegLvtTimer: {
      const uint32_t old_mode = timer_mode();
      lvt_[kLvtTimer] = lvt_value(kLvtTimerWritable);
      if (timer_mode() != old_mode) {
        // Any mode change disarms the timer.
        StopTimerLocked();
        timer_initial_ = 0;
        tsc_deadline_ = 0;
      }
      return true;
    }
    case kRegLvtThermal:
      lvt_[kLvtThermal] = lvt_value(kLvtThermalPerfWritable);
      return true;
    case kRegLvtPerf:
      lvt_[kLvtPerf] = lvt_value(kLvtThermalPerfWritable);
      return true;
    case kRegLvtLint0:
    case kRegLvtLint1: {
      uint32_t& l = lvt_[reg == kRegLvtLint0 ? kLvtLint0 : kLvtLint1];
      l = lvt_value(kLvtLintWritable) | (l & kLvtLintRemoteIrr);
      actions.wake = true;  // LINT0 may now pass a pending ExtINT
      return true;
    }
    case kRegLvtError:
      lvt_[kLvtError] = lvt_value(kLvtErrorWritable);
      return true;
    case kRegTimerInitial:
      if (timer_mode() == kTimerTscDeadline) return true;  // ignored in TSC-deadline mode
      timer_initial_ = value;
      if (value == 0) {
        StopTimerLocked();
      } else {
        StartTimerLocked(now);
      }
      return true;
    case kRegTimerDivide: {
      const bool counting = timer_running_ && timer_mode() != kTimerTscDeadline;
      const uint32_t current = counting ? CurrentCountLocked(now) : 0;
      timer_divide_ = value & 0xB;
      if (counting) {
        // Keep the current count and continue at the new rate.
        const uint64_t done = uint64_t(timer_initial_ - current) << DivideShift();
        StartTimerLocked(now);
        timer_start_ns_ = now - TicksToNs(done, config_.bus_hz);  // may wrap: see ElapsedNs
        timer_next_ns_ = timer_start_ns_ + std::max<uint64_t>(PeriodNs(), 1);
        timers_.Arm(timer_id_, timer_next_ns_);
      }
      return true;
    }
    case kRegSelfIpi:
      if (!x2apic) return true;
      SetIrrLocked(uint8_t(value), false, actions);
      return true;
    default:
      // Read-only or reserved: ignored in xAPIC mode, #GP through the MSR interface.
      return !x2apic;
  }
}

void LocalApic::MmioRead(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  const uint32_t reg = uint32_t(offset) & 0xFF0;
  const unsigned sub = unsigned(offset) & 0xF;
  if (sub >= 4 || offset >= kMmioSize) return;
  uint32_t value;
  {
    std::lock_guard lock(mu_);
    value = ReadRegLocked(reg, false);
  }
  value >>= 8 * sub;
  for (size_t i = 0; i < data.size() && i < 4 - sub; ++i) data[i] = uint8_t(value >> (8 * i));
}

void LocalApic::MmioWrite(uint64_t offset, std::span<const uint8_t> data) {
  // Registers are 32 bits wide at 16-byte strides; narrower or misaligned writes are undefined
  // on hardware and ignored here.
  if (data.size() < 4 || (offset & 0xF) != 0 || offset >= kMmioSize) return;
  const uint32_t value = uint32_t(LoadLe(data.first(4)));
  Actions actions;
  {
    std::lock_guard lock(mu_);
    WriteRegLocked(uint32_t(offset), value, false, actions);
  }
  Run(actions);
}

bool LocalApic::ReadMsr(uint32_t msr, uint64_t& value) {
  if (msr < kMsrX2ApicFirst || msr > kMsrX2ApicLast) return false;
  std::lock_guard lock(mu_);
  if (!x2apic_mode()) return false;
  const uint32_t reg = (msr - kMsrX2ApicFirst) << 4;
  if ((reg >= kRegIsr && reg < kRegIrr + 0x80) || reg == kRegId || reg == kRegVersion ||
      reg == kRegTpr || reg == kRegPpr || reg == kRegLdr || reg == kRegSvr || reg == kRegEsr ||
      (reg >= kRegLvtTimer && reg <= kRegTimerCurrent) || reg == kRegTimerDivide) {
    value = ReadRegLocked(reg, true);
    return true;
  }
  if (reg == kRegIcrLow) {
    value = (uint64_t(icr_high_) << 32) | (icr_low_ & ~kIcrDeliveryStatus);
    return true;
  }
  return false;
}

bool LocalApic::WriteMsr(uint32_t msr, uint64_t value) {
  if (msr < kMsrX2ApicFirst || msr > kMsrX2ApicLast) return false;
  Actions actions;
  bool ok;
  {
    std::lock_guard lock(mu_);
    if (!x2apic_mode()) return false;
    const uint32_t reg = (msr - kMsrX2ApicFirst) << 4;
    if (reg == kRegIcrLow) {
      icr_low_ = uint32_t(value) & kIcrWritable;
      icr_high_ = uint32_t(value >> 32);
      SendIcrLocked((value & ~uint64_t{0xFFFFFFFF}) | icr_low_, true, actions);
      ok = true;
    } else if (value >> 32) {
      ok = false;
    } else {
      ok = WriteRegLocked(reg, value, true, actions);
    }
  }
  Run(actions);
  return ok;
}

// --- TPR / CR8. ---

uint8_t LocalApic::cr8() const {
  std::lock_guard lock(mu_);
  return uint8_t(tpr_ >> 4);
}

void LocalApic::SetCr8(uint8_t value) {
  Actions actions;
  {
    std::lock_guard lock(mu_);
    tpr_ = uint32_t(value & 0xF) << 4;
    if (HasInterruptLocked()) actions.wake = true;
  }
  Run(actions);
}

void LocalApic::SetVirtualWire() {
  std::lock_guard lock(mu_);
  svr_ = kSvrEnable | 0xFF;
  lvt_[kLvtLint0] = uint32_t(DeliveryMode::kExtInt) << 8;
  lvt_[kLvtLint1] = uint32_t(DeliveryMode::kNmi) << 8;
}

// --- Delivery side. ---

bool LocalApic::MatchesDestination(const ApicMessage& m) const {
  std::lock_guard lock(mu_);
  const uint64_t base = apic_base_.load(std::memory_order_relaxed);
  if (!(base & kBaseEnable)) return false;
  const bool x2 = base & kBaseExtd;
  const uint32_t dest = m.wide ? m.destination : (m.destination & 0xFF);
  const bool broadcast = m.wide ? dest == 0xFFFFFFFF : dest == 0xFF;
  if (broadcast) return true;
  if (!m.logical) return x2 ? dest == id_ : dest == (id_ & 0xFF);
  const uint32_t ldr = LdrLocked();
  if (x2) {
    if (m.wide) return (dest >> 16) == (ldr >> 16) && (dest & ldr & 0xFFFF) != 0;
    return (dest & ldr & 0xFF) != 0;  // 8-bit logical destination: cluster 0 only
  }
  const uint32_t ldr8 = ldr >> 24;
  if ((dfr_ >> 28) == 0xF) return (dest & ldr8) != 0;  // flat model
  // Cluster model: high nibble selects the cluster (15 = all), low nibble the members.
  const uint32_t cluster = dest >> 4;
  return (cluster == 0xF || cluster == (ldr8 >> 4)) && (dest & ldr8 & 0xF) != 0;
}

uint8_t LocalApic::arbitration_priority() const {
  std::lock_guard lock(mu_);
  return uint8_t(tpr_ & 0xF0);
}

void LocalApic::AcceptFixed(uint8_t vector, bool level_triggered) {
  Actions actions;
  {
    std::lock_guard lock(mu_);
    SetIrrLocked(vector, level_triggered, actions);
  }
  Run(actions);
}

void LocalApic::AcceptNmi() {
  {
    std::lock_guard lock(mu_);
    nmi_pending_ = true;
  }
  host_.Wake(cpu_);
}

void LocalApic::AcceptExtInt() {
  {
    std::lock_guard lock(mu_);
    extint_pending_ = true;
  }
  host_.Wake(cpu_);
}

void LocalApic::InitReset() {
  std::lock_guard lock(mu_);
  ResetRegisters();
}

bool LocalApic::HasInterrupt() const {
  std::lock_guard lock(mu_);
  return HasInterruptLocked();
}

std::optional<uint8_t> LocalApic::Acknowledge() {
  std::lock_guard lock(mu_);
  if (!HasInterruptLocked()) return std::nullopt;
  const unsigned v = unsigned(HighestIrr());
  ClearBit(irr_, v);
  SetBit(isr_, v);
  return uint8_t(v);
}

bool LocalApic::TakeNmi() {
  std::lock_guard lock(mu_);
  const bool pending = nmi_pending_;
  nmi_pending_ = false;
  return pending;
}

bool LocalApic::AcceptsExtInt() const {
  std::lock_guard lock(mu_);
  if (!(apic_base_.load(std::memory_order_relaxed) & kBaseEnable)) return config_.bsp;
  if (extint_pending_) return true;
  const uint32_t l = lvt_[kLvtLint0];
  return !(l & kLvtMasked) && DeliveryMode((l >> 8) & 7) == DeliveryMode::kExtInt;
}

void LocalApic::ClearExtInt() {
  std::lock_guard lock(mu_);
  extint_pending_ = false;
}

bool LocalApic::IrrBit(uint8_t vector) const {
  std::lock_guard lock(mu_);
  return TestBit(irr_, vector);
}
bool LocalApic::IsrBit(uint8_t vector) const {
  std::lock_guard lock(mu_);
  return TestBit(isr_, vector);
}
bool LocalApic::TmrBit(uint8_t vector) const {
  std::lock_guard lock(mu_);
  return TestBit(tmr_, vector);
}

// --- Timer. ---

unsigned LocalApic::DivideShift() const {
  const uint32_t v = (timer_divide_ & 3) | ((timer_divide_ & 8) >> 1);
  return v == 7 ? 0 : v + 1;  // divide by 2, 4, ... 128, or 1
}

uint64_t LocalApic::PeriodNs() const {
  return TicksToNs(uint64_t(timer_initial_) << DivideShift(), config_.bus_hz);
}

uint32_t LocalApic::CurrentCountLocked(uint64_t now) const {
  if (!timer_running_ || timer_mode() == kTimerTscDeadline || timer_initial_ == 0) return 0;
  const uint64_t elapsed =
      NsToTicks(ElapsedNs(now, timer_start_ns_), config_.bus_hz) >> DivideShift();
  if (timer_mode() == kTimerPeriodic) return uint32_t(timer_initial_ - elapsed % timer_initial_);
  return elapsed >= timer_initial_ ? 0 : uint32_t(timer_initial_ - elapsed);
}

void LocalApic::StartTimerLocked(uint64_t now) {
  timer_start_ns_ = now;
  timer_running_ = true;
  uint64_t period = PeriodNs();
  if (timer_mode() == kTimerPeriodic) period = std::max(period, kMinPeriodicNs);
  timer_next_ns_ = now + std::max<uint64_t>(period, 1);
  timers_.Arm(timer_id_, timer_next_ns_);
}

void LocalApic::StopTimerLocked() {
  timer_running_ = false;
  timers_.Disarm(timer_id_);
}

void LocalApic::FireTimerLocked(Actions& actions) {
  const uint32_t lvt = lvt_[kLvtTimer];
  if (!(lvt & kLvtMasked)) SetIrrLocked(uint8_t(lvt), false, actions);
}

void LocalApic::OnTimer(uint64_t now) {
  Actions actions;
  {
    std::lock_guard lock(mu_);
    if (!timer_running_) return;
    if (now < timer_next_ns_) {  // raced with a re-arm: not due yet
      timers_.Arm(timer_id_, timer_next_ns_);
      return;
    }
    FireTimerLocked(actions);
    if (timer_mode() == kTimerPeriodic) {
      const uint64_t period = std::max(PeriodNs(), kMinPeriodicNs);
      // Next period boundary after `now`; periods missed by a late host thread are coalesced.
      const uint64_t k = (now - timer_start_ns_) / period + 1;
      timer_next_ns_ = timer_start_ns_ + k * period;
      timers_.Arm(timer_id_, timer_next_ns_);
    } else {
      timer_running_ = false;
      if (timer_mode() == kTimerTscDeadline) tsc_deadline_ = 0;
    }
  }
  Run(actions);
}

uint64_t LocalApic::tsc_deadline() const {
  std::lock_guard lock(mu_);
  return tsc_deadline_;
}

void LocalApic::SetTscDeadline(uint64_t deadline, uint64_t guest_tsc_now) {
  Actions actions;
  {
    std::lock_guard lock(mu_);
    if (timer_mode() != kTimerTscDeadline) return;  // ignored in the other modes
    tsc_deadline_ = deadline;
    if (deadline == 0) {
      StopTimerLocked();
    } else if (deadline <= guest_tsc_now) {
      StopTimerLocked();
      tsc_deadline_ = 0;
      FireTimerLocked(actions);
    } else {
      const uint64_t now = timers_.clock().NowNs();
      timer_start_ns_ = now;
      timer_running_ = true;
      timer_next_ns_ = now + TicksToNs(deadline - guest_tsc_now, config_.tsc_hz);
      timers_.Arm(timer_id_, timer_next_ns_);
    }
  }
  Run(actions);
}

// --- Snapshot. ---

void LocalApic::SaveState(StateWriter& out) const {
  std::lock_guard lock(mu_);
  const uint64_t now = timers_.clock().NowNs();
  out.U64(apic_base_.load(std::memory_order_relaxed));
  out.U32(id_);
  out.U32(tpr_);
  out.U32(ldr_);
  out.U32(dfr_);
  out.U32(svr_);
  for (uint32_t v : irr_) out.U32(v);
  for (uint32_t v : isr_) out.U32(v);
  for (uint32_t v : tmr_) out.U32(v);
  out.U32(esr_);
  out.U32(esr_pending_);
  out.U32(icr_low_);
  out.U32(icr_high_);
  for (uint32_t v : lvt_) out.U32(v);
  out.U32(timer_initial_);
  out.U32(timer_divide_);
  out.Bool(timer_running_);
  out.U64(timer_running_ ? ElapsedNs(now, timer_start_ns_) : 0);
  out.U64(timer_running_ ? RemainingNs(timer_next_ns_, now) : 0);
  out.U64(tsc_deadline_);
  out.Bool(nmi_pending_);
  out.Bool(extint_pending_);
}

StateApply LocalApic::ParseState(StateReader& in) {
  const uint64_t base = in.U64("apic base");
  if (base & ~kBaseWritable) in.Fail("APIC base sets reserved bits");
  if ((base & kBaseExtd) && !(base & kBaseEnable)) in.Fail("APIC base: x2APIC without enable");
  if (bool(base & kBaseBsp) != config_.bsp) in.Fail("APIC base: BSP flag does not match the CPU");
  const uint32_t id = in.U32("apic id");
  const uint32_t tpr = in.U32Max(0xFF, "tpr");
  const uint32_t ldr = in.U32("ldr");
  const uint32_t dfr = in.U32("dfr");
  const uint32_t svr = in.U32Max(0x3FF, "svr");
  uint32_t irr[8], isr[8], tmr[8];
  for (uint32_t& v : irr) v = in.U32("irr");
  for (uint32_t& v : isr) v = in.U32("isr");
  for (uint32_t& v : tmr) v = in.U32("tmr");
  const uint32_t esr = in.U32("esr");
  const uint32_t esr_pending = in.U32("esr pending");
  const uint32_t icr_low = in.U32("icr low");
  const uint32_t icr_high = in.U32("icr high");
  uint32_t lvt[kLvtCount];
  for (uint32_t& v : lvt) v = in.U32("lvt");
  const uint32_t timer_initial = in.U32("timer initial count");
  const uint32_t timer_divide = in.U32("timer divide");
  if (timer_divide & ~0xBu) in.Fail("invalid timer divide configuration");
  const bool timer_running = in.Bool("timer running");
  const uint64_t elapsed = in.U64Max(UINT64_MAX / 2, "timer elapsed ns");
  const uint64_t remaining = in.U64Max(UINT64_MAX / 2, "timer remaining ns");
  const uint64_t tsc_deadline = in.U64("tsc deadline");
  const bool nmi_pending = in.Bool("nmi pending");
  const bool extint_pending = in.Bool("extint pending");
  return [=, this]() mutable {
    {
      std::lock_guard lock(mu_);
      const uint64_t now = timers_.clock().NowNs();
      apic_base_.store(base, std::memory_order_release);
      id_ = id;
      tpr_ = tpr;
      ldr_ = ldr;
      dfr_ = dfr;
      svr_ = svr;
      std::copy(std::begin(irr), std::end(irr), irr_);
      std::copy(std::begin(isr), std::end(isr), isr_);
      std::copy(std::begin(tmr), std::end(tmr), tmr_);
      esr_ = esr;
      esr_pending_ = esr_pending;
      icr_low_ = icr_low;
      icr_high_ = icr_high;
      std::copy(std::begin(lvt), std::end(lvt), lvt_);
      timer_initial_ = timer_initial;
      timer_divide_ = timer_divide;
      tsc_deadline_ = tsc_deadline;
      nmi_pending_ = nmi_pending;
      extint_pending_ = extint_pending;
      timer_running_ = timer_running;
      if (timer_running) {
        timer_start_ns_ = now - elapsed;  // may wrap: CurrentCountLocked uses ElapsedNs
        timer_next_ns_ = now + remaining;
        timers_.Arm(timer_id_, timer_next_ns_);
      } else {
        timer_start_ns_ = 0;
        timer_next_ns_ = 0;
        timers_.Disarm(timer_id_);
      }
    }
    // A pending interrupt or NMI must reach a halted vCPU.
    host_.Wake(cpu_);
  };
}

void LocalApic::LoadState(StateReader& in) {
  ParseState(in)();
}

}  // namespace rove
