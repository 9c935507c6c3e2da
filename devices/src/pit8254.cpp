#include "rove/devices/pit8254.h"

#include <algorithm>

namespace rove {

namespace {

// Channel 0 edges closer together than this are coalesced, so a guest programming a tiny
// period cannot make the host timer thread spin.
constexpr uint64_t kMinIrqIntervalNs = 100'000;
// Port 0x61 bit 4 toggles with every DRAM refresh request (15.085 us).
constexpr uint64_t kRefreshPeriodNs = 15'085;

uint32_t FromBcd(uint32_t v) {
  return ((v >> 12) & 0xF) * 1000 + ((v >> 8) & 0xF) * 100 + ((v >> 4) & 0xF) * 10 + (v & 0xF);
}
uint16_t ToBcd(uint32_t v) {
  return uint16_t(((v / 1000 % 10) << 12) | ((v / 100 % 10) << 8) | ((v / 10 % 10) << 4) |
                  (v % 10));
}

}  // namespace

Pit8254::Pit8254(TimerQueue& timers, IrqLine irq0)
    : timers_(timers),
      clock_(timers.clock()),
      irq0_(irq0),
      timer_id_(timers.Create([this](uint64_t now) { OnTimer(now); })) {
  std::lock_guard lock(mu_);
  const uint64_t now = clock_.NowNs();
  for (unsigned i = 0; i < 3; ++i) {
    Channel& c = ch_[i];
    c.loaded = true;
    c.null_count = false;
    c.gate = i != 2;
    c.armed = c.gate;
    c.start_ns = now;
  }
  ScheduleIrq(now);
}

Pit8254::~Pit8254() {
  timers_.Disarm(timer_id_);
}

uint64_t Pit8254::Ticks(const Channel& c, uint64_t now) const {
  if (!c.armed) return 0;
  if (c.frozen) return c.frozen_ticks;
  return NsToTicks(ElapsedNs(now, c.start_ns), kHz);
}

uint16_t Pit8254::CountAt(const Channel& c, uint64_t now) const {
  const uint32_t n = c.reload;
  if (!c.armed) return c.bcd ? ToBcd(n % 10000) : uint16_t(n);
  const uint64_t t = Ticks(c, now);
  const uint32_t modulus = c.bcd ? 10000 : 0x10000;
  uint32_t v;
  switch (c.mode) {
    case 2:
      v = n - uint32_t(t % n);
      break;
    case 3:
      v = n - uint32_t((2 * t) % n);
      break;
    default:  // 0, 1, 4, 5: count down through zero and wrap
      v = uint32_t((uint64_t(n) + modulus - t % modulus) % modulus);
      break;
  }
  v %= modulus;
  return c.bcd ? ToBcd(v) : uint16_t(v);
}

bool Pit8254::OutAt(const Channel& c, uint64_t now) const {
  if (!c.loaded) return c.mode != 0;
  const uint32_t n = c.reload;
  switch (c.mode) {
    case 0:
      return c.armed && Ticks(c, now) >= n;
    case 1:
      return !c.armed || Ticks(c, now) >= n;
    case 2:
      return !c.armed || n <= 1 || Ticks(c, now) % n != n - 1;
    case 3:
      return !c.armed || Ticks(c, now) % n < (n + 1) / 2;
    default:  // 4, 5: a one-tick low strobe at terminal count
      return !c.armed || Ticks(c, now) != n;
  }
}

uint8_t Pit8254::StatusAt(const Channel& c, uint64_t now) const {
  return uint8_t((OutAt(c, now) ? 0x80 : 0) | (c.null_count ? 0x40 : 0) | (c.access << 4) |
                 (c.mode << 1) | (c.bcd ? 1 : 0));
}

bool Pit8254::output(unsigned channel) const {
  std::lock_guard lock(mu_);
  return OutAt(ch_[channel], clock_.NowNs());
}

void Pit8254::LatchCount(Channel& c, uint64_t now) {
  if (c.count_latched) return;  // a second latch before the first is read is ignored
  c.count_latched = true;
  c.latched_count = CountAt(c, now);
  c.latch_bytes_left = c.access == 3 ? 2 : 1;
  c.latch_msb_next = c.access == 2;
}

void Pit8254::WriteControl(uint8_t value, uint64_t now) {
  const unsigned select = value >> 6;
  if (select == 3) {  // read-back command
    const bool latch_count = !(value & 0x20);
    const bool latch_status = !(value & 0x10);
    for (unsigned i = 0; i < 3; ++i) {
      if (!(value & (2u << i))) continue;
      Channel& c = ch_[i];
      if (latch_status && !c.status_latched) {
        c.status_latched = true;
        c.latched_status = StatusAt(c, now);
      }
      if (latch_count) LatchCount(c, now);
    }
    return;
  }
  Channel& c = ch_[select];
  const uint8_t access = (value >> 4) & 3;
  if (access == 0) {  // counter latch command
    LatchCount(c, now);
    return;
  }
  c.access = access;
  c.mode = (value >> 1) & 7;
  if (c.mode >= 6) c.mode -= 4;  // 6 and 7 are aliases of 2 and 3
  c.bcd = value & 1;
  c.loaded = false;
  c.armed = false;
  c.frozen = false;
  c.null_count = true;
  c.write_msb_next = false;
  c.read_msb_next = false;
  c.count_latched = false;
  c.status_latched = false;
  if (select == 0) ScheduleIrq(now);
}

void Pit8254::LoadCount(unsigned index, uint32_t raw, uint64_t now) {
  Channel& c = ch_[index];
  if (raw == 0) {
    c.reload = c.bcd ? 10000 : 0x10000;
  } else {
    c.reload = c.bcd ? std::max<uint32_t>(FromBcd(raw), 1) : raw;
  }
  c.loaded = true;
  c.null_count = false;
  c.start_ns = now;
  c.frozen = false;
  switch (c.mode) {
    case 0:
    case 4:
      c.armed = true;
      if (!c.gate) {  // loaded, but counting waits for the gate
        c.frozen = true;
        c.frozen_ticks = 0;
      }
      break;
    case 1:
    case 5:
      c.armed = false;  // waits for a gate trigger
      break;
    default:  // 2, 3
      c.armed = c.gate;
      break;
  }
  if (index == 0) ScheduleIrq(now);
}

void Pit8254::WriteCounter(unsigned index, uint8_t value, uint64_t now) {
  Channel& c = ch_[index];
  switch (c.access) {
    case 1:
      LoadCount(index, value, now);
      break;
    case 2:
      LoadCount(index, uint32_t(value) << 8, now);
      break;
    default:
      if (!c.write_msb_next) {
        c.write_lsb = value;
        c.write_msb_next = true;
      } else {
        c.write_msb_next = false;
        LoadCount(index, c.write_lsb | (uint32_t(value) << 8), now);
      }
      break;
  }
}

uint8_t Pit8254::ReadCounter(unsigned index, uint64_t now) {
  Channel& c = ch_[index];
  if (c.status_latched) {
    c.status_latched = false;
    return c.latched_status;
  }
  if (c.count_latched) {
    const bool msb = c.latch_msb_next;
    if (c.access == 3) c.latch_msb_next = !c.latch_msb_next;
    if (--c.latch_bytes_left == 0) c.count_latched = false;
    return msb ? uint8_t(c.latched_count >> 8) : uint8_t(c.latched_count);
  }
  const uint16_t v = CountAt(c, now);
  bool msb = c.access == 2;
  if (c.access == 3) {
    msb = c.read_msb_next;
    c.read_msb_next = !c.read_msb_next;
  }
  return msb ? uint8_t(v >> 8) : uint8_t(v);
}

void Pit8254::SetGate2(bool gate, uint64_t now) {
  Channel& c = ch_[2];
  if (c.gate == gate) return;
  c.gate = gate;
  if (!c.loaded) return;
  switch (c.mode) {
    case 0:
    case 4:
      if (!c.armed) break;
      if (!gate && !c.frozen) {
        c.frozen_ticks = Ticks(c, now);
        c.frozen = true;
      } else if (gate && c.frozen) {
        c.start_ns = now - TicksToNs(c.frozen_ticks, kHz);  // may wrap: see ElapsedNs
        c.frozen = false;
      }
      break;
    case 1:
    case 5:
      if (gate) {  // rising edge triggers (or retriggers)
        c.armed = true;
        c.frozen = false;
        c.start_ns = now;
      }
      break;
    default:  // 2, 3: gate low stops counting; the rising edge reloads
      c.armed = gate;
      c.start_ns = now;
      break;
  }
}

void Pit8254::ScheduleIrq(uint64_t now) {
  const Channel& c = ch_[0];
  irq_armed_ = false;
  if (!c.loaded || !c.armed || c.frozen) {
    timers_.Disarm(timer_id_);
    return;
  }
  const uint64_t n = c.reload;
  const uint64_t t = Ticks(c, now);
  uint64_t tick;
  switch (c.mode) {
    case 0:
    case 4:
      if (t >= n) {
        timers_.Disarm(timer_id_);
        return;
      }
      tick = n;
      break;
    case 2:
    case 3:
      tick = (t / n + 1) * n;
      break;
    default:  // 1, 5 never trigger on channel 0 (its gate is always high)
      timers_.Disarm(timer_id_);
      return;
  }
  uint64_t deadline = c.start_ns + TicksToNs(tick, kHz);
  if (c.mode == 2 || c.mode == 3) deadline = std::max(deadline, now + kMinIrqIntervalNs);
  next_irq_ns_ = deadline;
  irq_armed_ = true;
  timers_.Arm(timer_id_, deadline);
}

void Pit8254::OnTimer(uint64_t now) {
  std::lock_guard lock(mu_);
  if (!irq_armed_) return;
  if (now < next_irq_ns_) {  // raced with a reprogram
    timers_.Arm(timer_id_, next_irq_ns_);
    return;
  }
  irq0_.Pulse();
  ScheduleIrq(now);
}

void Pit8254::Read(unsigned window, uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  const uint64_t now = clock_.NowNs();
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t port = offset + i;
    uint8_t v = 0xFF;
    if (window == kCounterWindow) {
      if (port < 3) v = ReadCounter(unsigned(port), now);  // the control word is write-only
    } else if (window == kPortBWindow && port == 0) {
      v = uint8_t((ch_[2].gate ? 0x01 : 0) | (speaker_enable_ ? 0x02 : 0) | port_b_high_ |
                  ((((now + refresh_offset_ns_) / kRefreshPeriodNs) & 1) ? 0x10 : 0) |
                  (OutAt(ch_[2], now) ? 0x20 : 0));
    }
    data[i] = v;
  }
}

void Pit8254::Write(unsigned window, uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  const uint64_t now = clock_.NowNs();
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t port = offset + i;
    if (window == kCounterWindow) {
      if (port < 3) {
        WriteCounter(unsigned(port), data[i], now);
      } else if (port == 3) {
        WriteControl(data[i], now);
      }
    } else if (window == kPortBWindow && port == 0) {
      speaker_enable_ = data[i] & 0x02;
      port_b_high_ = data[i] & 0x0C;
      SetGate2(data[i] & 0x01, now);
    }
  }
}

// --- Snapshot. ---

void Pit8254::SaveState(StateWriter& out) const {
  std::lock_guard lock(mu_);
  const uint64_t now = clock_.NowNs();
  for (const Channel& c : ch_) {
    out.U8(c.mode);
    out.U8(c.access);
    out.Bool(c.bcd);
    out.U32(c.reload);
    out.Bool(c.loaded);
    out.Bool(c.armed);
    out.U64(ElapsedNs(now, c.start_ns));
    out.Bool(c.gate);
    out.Bool(c.frozen);
    out.U64(c.frozen_ticks);
    out.Bool(c.null_count);
    out.Bool(c.write_msb_next);
    out.U8(c.write_lsb);
    out.Bool(c.read_msb_next);
    out.Bool(c.count_latched);
    out.U16(c.latched_count);
    out.U8(c.latch_bytes_left);
    out.Bool(c.latch_msb_next);
    out.Bool(c.status_latched);
    out.U8(c.latched_status);
  }
  out.Bool(irq_armed_);
  out.U64(irq_armed_ ? RemainingNs(next_irq_ns_, now) : 0);
  out.Bool(speaker_enable_);
  out.U8(port_b_high_);
  // The refresh toggle's phase (v2).
  out.U64((now + refresh_offset_ns_) % (2 * kRefreshPeriodNs));
}

StateApply Pit8254::ParseState(StateReader& in) {
  Channel loaded[3];
  uint64_t elapsed[3];
  for (unsigned i = 0; i < 3; ++i) {
    Channel& c = loaded[i];
    c.mode = in.U8Max(5, "mode");
    c.access = in.U8Max(3, "access");
    if (c.access == 0) in.Fail("invalid access mode 0");
    c.bcd = in.Bool("bcd");
    c.reload = in.U32Max(0x10000, "reload");
    // (A BCD channel may still hold a binary reload: the control word changes the mode only.)
    if (c.reload == 0) in.Fail("reload value 0");
    c.loaded = in.Bool("loaded");
    c.armed = in.Bool("armed");
    elapsed[i] = in.U64Max(UINT64_MAX / 2, "elapsed ns");
    c.gate = in.Bool("gate");
    if (i != 2 && !c.gate) in.Fail("gate of channel 0/1 is low");
    c.frozen = in.Bool("frozen");
    c.frozen_ticks = in.U64("frozen ticks");
    c.null_count = in.Bool("null count");
    c.write_msb_next = in.Bool("write msb next");
    c.write_lsb = in.U8("write lsb");
    c.read_msb_next = in.Bool("read msb next");
    c.count_latched = in.Bool("count latched");
    c.latched_count = in.U16("latched count");
    c.latch_bytes_left = in.U8Max(2, "latch bytes left");
    if (c.count_latched != (c.latch_bytes_left != 0)) in.Fail("inconsistent count latch");
    c.latch_msb_next = in.Bool("latch msb next");
    c.status_latched = in.Bool("status latched");
    c.latched_status = in.U8("latched status");
  }
  const bool irq_armed = in.Bool("irq0 armed");
  const uint64_t irq_remaining = in.U64Max(UINT64_MAX / 2, "irq0 remaining ns");
  const bool speaker_enable = in.Bool("speaker enable");
  const uint8_t port_b_high = in.U8("port B bits");
  if (port_b_high & ~0x0C) in.Fail("invalid port B bits");
  const uint64_t refresh_phase = in.U64Max(2 * kRefreshPeriodNs - 1, "refresh phase ns");
  return [=, this]() mutable {
    std::lock_guard lock(mu_);
    const uint64_t now = clock_.NowNs();
    for (unsigned i = 0; i < 3; ++i) {
      ch_[i] = loaded[i];
      ch_[i].start_ns = now - elapsed[i];  // may wrap: Ticks() uses ElapsedNs
    }
    speaker_enable_ = speaker_enable;
    port_b_high_ = port_b_high;
    // Continue the refresh toggle from its saved phase.
    refresh_offset_ns_ = refresh_phase + 2 * kRefreshPeriodNs - now % (2 * kRefreshPeriodNs);
    irq_armed_ = irq_armed;
    if (irq_armed) {
      next_irq_ns_ = now + irq_remaining;
      timers_.Arm(timer_id_, next_irq_ns_);
    } else {
      next_irq_ns_ = 0;
      timers_.Disarm(timer_id_);
    }
  };
}

void Pit8254::LoadState(StateReader& in) {
  ParseState(in)();
}

}  // namespace rove
