// The i8254 programmable interval timer at 0x40-0x43 (channels 0-2 and the control word) and
// the PC's system control port B at 0x61 (channel 2 gate, speaker enable, channel 2 output,
// refresh toggle).
//
// Counters run at 1.193182 MHz on the given Clock; a counter value is computed from the time
// elapsed since it was loaded whenever the guest reads it, so reads need no timer. Supported:
// modes 0-5 (hardware-triggered modes 1 and 5 need a gate, so only channel 2 can use them),
// binary and BCD counting, LSB / MSB / LSB-then-MSB access, counter latch and read-back
// (count and status) commands, channel 2 gating through port 0x61.
//
// Channel 0 drives IRQ0: every rising edge of its OUT pin (terminal count in mode 0, each
// period in modes 2 and 3, the strobe in mode 4) is produced at its host-time deadline by the
// TimerQueue. Missed periods (a late host thread) are coalesced into one edge, not replayed.
//
// Windows: kCounterWindow (4 ports at 0x40), kPortBWindow (1 port at 0x61).
#pragma once

#include <cstdint>
#include <mutex>

#include "rove/devices/bus.h"
#include "rove/devices/clock.h"
#include "rove/devices/device_state.h"
#include "rove/devices/irq.h"
#include "rove/devices/timer_queue.h"

namespace rove {

class Pit8254 final : public MultiWindowDevice {
 public:
  enum Window : unsigned { kCounterWindow = 0, kPortBWindow = 1 };
  static constexpr uint64_t kHz = 1'193'182;

  // At reset, like a PC after its BIOS, channel 0 runs in mode 3 with count 65536 (18.2 Hz)
  // and the other channels in mode 3 too (channel 2's gate is low).
  Pit8254(TimerQueue& timers, IrqLine irq0);
  ~Pit8254() override;

  void Read(unsigned window, uint64_t offset, std::span<uint8_t> data) override;
  void Write(unsigned window, uint64_t offset, std::span<const uint8_t> data) override;

  // Inspection for tests: OUT pin of `channel` now.
  bool output(unsigned channel) const;

  // Snapshot (record body, see device_state.h): counters relative to the clock now, channel
  // 0's next IRQ0 edge as time remaining; LoadState re-bases both on the clock at load.
  void SaveState(StateWriter& out) const;
  void LoadState(StateReader& in);
  // LoadState in two steps: reads and checks everything (throwing StateError, changing
  // nothing), then returns what applies it.
  StateApply ParseState(StateReader& in);

 private:
  struct Channel {
    uint8_t mode = 3;
    uint8_t access = 3;  // 1 LSB, 2 MSB, 3 LSB then MSB
    bool bcd = false;
    uint32_t reload = 0x10000;  // N (0 programs 0x10000, or 10000 in BCD)
    bool loaded = false;        // a count has been written since the control word
    bool armed = false;         // counting (modes 1/5: triggered)
    uint64_t start_ns = 0;      // when counting from `reload` began
    bool gate = true;
    bool frozen = false;  // modes 0/4 with gate low: counting suspended
    uint64_t frozen_ticks = 0;
    bool null_count = true;
    // Access state machines.
    bool write_msb_next = false;
    uint8_t write_lsb = 0;
    bool read_msb_next = false;
    bool count_latched = false;
    uint16_t latched_count = 0;
    uint8_t latch_bytes_left = 0;
    bool latch_msb_next = false;
    bool status_latched = false;
    uint8_t latched_status = 0;
  };

  uint64_t Ticks(const Channel& c, uint64_t now) const;
  uint16_t CountAt(const Channel& c, uint64_t now) const;
  bool OutAt(const Channel& c, uint64_t now) const;
  uint8_t StatusAt(const Channel& c, uint64_t now) const;
  void LatchCount(Channel& c, uint64_t now);
  void WriteControl(uint8_t value, uint64_t now);
  void WriteCounter(unsigned index, uint8_t value, uint64_t now);
  uint8_t ReadCounter(unsigned index, uint64_t now);
  void LoadCount(unsigned index, uint32_t raw, uint64_t now);
  void SetGate2(bool gate, uint64_t now);
  // Channel 0: recompute the next IRQ0 edge and arm (or disarm) the timer.
  void ScheduleIrq(uint64_t now);
  void OnTimer(uint64_t now);

  TimerQueue& timers_;
  const Clock& clock_;
  IrqLine irq0_;
  TimerQueue::TimerId timer_id_;
  mutable std::mutex mu_;
  Channel ch_[3];
  uint64_t next_irq_ns_ = 0;
  bool irq_armed_ = false;
  bool speaker_enable_ = false;
  uint8_t port_b_high_ = 0;
  uint64_t refresh_offset_ns_ = 0;  // added to the clock for port 0x61's refresh toggle  // bits
                                    // 2-3 (parity/channel check enables) as written
};

}  // namespace rove
