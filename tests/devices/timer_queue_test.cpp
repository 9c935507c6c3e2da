#include "rove/devices/timer_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace rove {
namespace {

TEST(TimerQueue, RunDueRunsOnlyExpiredTimersInDeadlineOrder) {
  ManualClock clock(1000);
  TimerQueue q(clock);
  std::vector<int> order;
  auto a = q.Create([&](uint64_t) { order.push_back(1); });
  auto b = q.Create([&](uint64_t) { order.push_back(2); });
  q.Arm(a, 3000);
  q.Arm(b, 2000);
  EXPECT_EQ(q.NextDeadline(), 2000u);
  EXPECT_EQ(q.RunDue(), 0u);
  clock.Set(2500);
  EXPECT_EQ(q.RunDue(), 1u);
  clock.Set(5000);
  EXPECT_EQ(q.RunDue(), 1u);
  EXPECT_EQ(order, (std::vector<int>{2, 1}));
  EXPECT_FALSE(q.NextDeadline().has_value());
}

TEST(TimerQueue, DisarmAndRearmFromCallback) {
  ManualClock clock(0);
  TimerQueue q(clock);
  int fired = 0;
  TimerQueue::TimerId id = 0;
  id = q.Create([&](uint64_t now) {
    ++fired;
    if (fired < 3) q.Arm(id, now + 100);  // periodic re-arm
  });
  q.Arm(id, 100);
  for (int i = 0; i < 10; ++i) {
    clock.Advance(100);
    q.RunDue();
  }
  EXPECT_EQ(fired, 3);
  auto other = q.Create([&](uint64_t) { fired += 100; });
  q.Arm(other, clock.NowNs());
  q.Disarm(other);
  EXPECT_EQ(q.RunDue(), 0u);
  EXPECT_FALSE(q.armed(other));
}

TEST(TimerQueue, ThreadFiresAtHostDeadline) {
  HostClock clock;
  TimerQueue q(clock);
  std::atomic<uint64_t> fired_at{0};
  auto id = q.Create([&](uint64_t now) { fired_at = now; });
  q.Start();
  const uint64_t start = clock.NowNs();
  q.Arm(id, start + 20'000'000);  // 20 ms
  for (int i = 0; i < 400 && fired_at == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  q.Stop();
  ASSERT_NE(fired_at.load(), 0u);
  EXPECT_GE(fired_at.load(), start + 20'000'000);
  EXPECT_LT(fired_at.load(), start + 1'000'000'000);  // generous slack
}

TEST(TimerQueue, EarlierArmWakesTheSleepingThread) {
  HostClock clock;
  TimerQueue q(clock);
  std::atomic<int> fired{0};
  auto late = q.Create([&](uint64_t) {});
  auto early = q.Create([&](uint64_t) { fired = 1; });
  q.Start();
  q.Arm(late, clock.NowNs() + 60'000'000'000ull);  // a minute away
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  q.Arm(early, clock.NowNs() + 1'000'000);
  for (int i = 0; i < 400 && !fired; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(fired.load(), 1);
  q.Stop();
}

TEST(Clock, TickConversionsRoundTrip) {
  EXPECT_EQ(NsToTicks(1'000'000'000, 1'193'182), 1'193'182u);
  EXPECT_EQ(TicksToNs(1'193'182, 1'193'182), 1'000'000'000u);
  // Rounds up: one PIT tick is 838.09 ns.
  EXPECT_EQ(TicksToNs(1, 1'193'182), 839u);
  EXPECT_EQ(NsToTicks(838, 1'193'182), 0u);
  // No overflow for large values.
  EXPECT_EQ(NsToTicks(uint64_t{1} << 62, 1'000'000'000), uint64_t{1} << 62);
}

}  // namespace
}  // namespace rove
