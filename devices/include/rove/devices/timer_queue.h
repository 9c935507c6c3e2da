// Host-time timers for the devices (PIT channel 0, RTC periodic/update interrupts, each local
// APIC timer).
//
// Why a host timer thread rather than a deadline the vCPU loop polls: a timer interrupt must
// reach a vCPU that is halted (sleeping on a condition variable) and one that is running a long
// chained loop of translated code that never exits on its own. With a thread, the device
// raises the interrupt at the deadline and the interrupt path calls the engine's wake callback,
// which both notifies the sleeping vCPU and sets its exit request; the engine needs no timer
// logic and does not pay a clock read per exit. Device registers that only *read* time
// (counter values, PM timer, RTC) are computed from the clock on access and need no thread.
// The same queue can also be driven without the thread (RunDue), which is what deterministic
// tests do with a ManualClock; an engine that prefers polling can use NextDeadline/RunDue.
//
// Each device creates its timers once (Create) and then arms and disarms them. Callbacks run
// on the timer thread (or the RunDue caller), one at a time, without the queue's lock held, so
// they may take device locks and re-arm timers. Because a callback can race with a concurrent
// re-arm, a callback must check its device's own state to decide whether it is really due.
//
// Lifetime: every device that created a timer must outlive the thread; call Stop() (the
// destructor does) before destroying them.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "rove/devices/clock.h"

namespace rove {

class TimerQueue {
 public:
  using Callback = std::function<void(uint64_t now_ns)>;
  using TimerId = uint32_t;

  explicit TimerQueue(const Clock& clock) : clock_(clock) {}
  ~TimerQueue();
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  // Creates a disarmed timer. Thread-safe.
  TimerId Create(Callback callback);
  // (Re)arms `id` to fire once at `deadline_ns` (Clock::NowNs time); a deadline in the past
  // fires as soon as possible. Thread-safe.
  void Arm(TimerId id, uint64_t deadline_ns);
  void Disarm(TimerId id);
  bool armed(TimerId id) const;

  // Earliest armed deadline.
  std::optional<uint64_t> NextDeadline() const;
  // Runs the callbacks of every timer due at the clock's current time (disarming each before
  // its callback runs). Returns how many ran.
  size_t RunDue();

  // Starts / stops the host thread that sleeps until the next deadline and runs callbacks.
  void Start();
  void Stop();
  bool running() const;

  const Clock& clock() const { return clock_; }

 private:
  struct Timer {
    Callback callback;
    uint64_t deadline = 0;
    bool armed = false;
  };
  // Earliest armed timer, or null. Needs mu_.
  Timer* Earliest();
  void ThreadMain();

  const Clock& clock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Timer> timers_;  // deque: element addresses are stable across Create
  std::thread thread_;
  bool stop_ = false;
  bool started_ = false;
  uint64_t sleep_until_ = UINT64_MAX;  // what the thread is waiting for
};

}  // namespace rove
