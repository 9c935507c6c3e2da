#include "rove/devices/timer_queue.h"

#include <chrono>

namespace rove {

TimerQueue::~TimerQueue() {
  Stop();
}

TimerQueue::TimerId TimerQueue::Create(Callback callback) {
  std::lock_guard lock(mu_);
  timers_.push_back(Timer{std::move(callback), 0, false});
  return TimerId(timers_.size() - 1);
}

void TimerQueue::Arm(TimerId id, uint64_t deadline_ns) {
  std::lock_guard lock(mu_);
  Timer& t = timers_.at(id);
  t.deadline = deadline_ns;
  t.armed = true;
  if (deadline_ns < sleep_until_) cv_.notify_one();
}

void TimerQueue::Disarm(TimerId id) {
  std::lock_guard lock(mu_);
  timers_.at(id).armed = false;
}

bool TimerQueue::armed(TimerId id) const {
  std::lock_guard lock(mu_);
  return timers_.at(id).armed;
}

TimerQueue::Timer* TimerQueue::Earliest() {
  Timer* best = nullptr;
  for (Timer& t : timers_) {
    if (t.armed && (!best || t.deadline < best->deadline)) best = &t;
  }
  return best;
}

std::optional<uint64_t> TimerQueue::NextDeadline() const {
  std::lock_guard lock(mu_);
  const Timer* best = const_cast<TimerQueue*>(this)->Earliest();
  if (!best) return std::nullopt;
  return best->deadline;
}

size_t TimerQueue::RunDue() {
  size_t ran = 0;
  std::unique_lock lock(mu_);
  const uint64_t now = clock_.NowNs();
  for (;;) {
    Timer* t = Earliest();
    if (!t || t->deadline > now) break;
    t->armed = false;
    lock.unlock();
    t->callback(now);
    ++ran;
    lock.lock();
  }
  return ran;
}

void TimerQueue::Start() {
  std::lock_guard lock(mu_);
  if (started_) return;
  stop_ = false;
  started_ = true;
  thread_ = std::thread([this] { ThreadMain(); });
}

void TimerQueue::Stop() {
  {
    std::lock_guard lock(mu_);
    if (!started_) return;
    stop_ = true;
    cv_.notify_all();
  }
  thread_.join();
  std::lock_guard lock(mu_);
  started_ = false;
  sleep_until_ = UINT64_MAX;
}

bool TimerQueue::running() const {
  std::lock_guard lock(mu_);
  return started_;
}

void TimerQueue::ThreadMain() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    Timer* t = Earliest();
    const uint64_t now = clock_.NowNs();
    if (t && t->deadline <= now) {
      t->armed = false;
      sleep_until_ = 0;  // busy running: no need to be notified
      lock.unlock();
      t->callback(now);
      lock.lock();
      continue;
    }
    if (t) {
      sleep_until_ = t->deadline;
      cv_.wait_for(lock, std::chrono::nanoseconds(t->deadline - now));
    } else {
      sleep_until_ = UINT64_MAX;
      cv_.wait(lock);
    }
  }
  sleep_until_ = UINT64_MAX;
}

}  // namespace rove
