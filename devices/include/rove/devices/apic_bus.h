// The machine's interrupt fabric between the interrupt controllers and the vCPUs: owns one
// LocalApic per vCPU, routes APIC messages (I/O APIC redirections, IPIs) to them by
// destination, passes the i8259's INTR to vCPUs that take ExtINT, and is the VcpuInterrupts the
// engine asks "is an interrupt pending for vCPU N / acknowledge it".
//
// IPIs: fixed, lowest-priority and NMI IPIs are delivered here directly (destination matching
// in physical, flat/cluster logical and x2APIC cluster modes, all shorthands). INIT resets the
// target's local APIC and, like SIPI, is handed to the engine's StartupFn, which owns vCPU
// run states. Lowest priority picks the matching APIC with the lowest TPR, rotating on ties.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "rove/devices/apic_message.h"
#include "rove/devices/device_state.h"
#include "rove/devices/local_apic.h"
#include "rove/devices/pic8259.h"
#include "rove/devices/timer_queue.h"
#include "rove/devices/vcpu_interrupts.h"

namespace rove {

struct ApicBusConfig {
  unsigned cpus = 1;  // vCPU i gets APIC ID i; vCPU 0 is the BSP
  uint64_t apic_bus_hz = 1'000'000'000;
  uint64_t tsc_hz = 1'000'000'000;
};

class ApicBus final : public VcpuInterrupts, public ApicMessageSink, private LocalApicHost {
 public:
  // `wake` and `startup` may be empty (then nothing is called).
  ApicBus(const ApicBusConfig& config, TimerQueue& timers, WakeFn wake, StartupFn startup);
  ~ApicBus() override;
  ApicBus(const ApicBus&) = delete;
  ApicBus& operator=(const ApicBus&) = delete;

  unsigned cpu_count() const { return unsigned(lapics_.size()); }
  LocalApic& lapic(unsigned cpu) { return *lapics_.at(cpu); }

  // Connects the PIC's INTR output (sets the PIC's output listener). Call once at setup.
  void ConnectPic(Pic8259* pic);
  // Receives EOIs of level-triggered vectors (the I/O APIC). Call once at setup.
  void SetEoiListener(std::function<void(uint8_t vector)> listener);

  // ApicMessageSink.
  void Deliver(const ApicMessage& message, int source_cpu) override;

  // VcpuInterrupts.
  bool HasInterrupt(unsigned cpu) override;
  std::optional<uint8_t> AcknowledgeInterrupt(unsigned cpu) override;
  bool TakeNmi(unsigned cpu) override;

  // Snapshot of the bus's own state (the lowest-priority rotor; the local APICs save
  // themselves).
  void SaveState(StateWriter& out) const;
  void LoadState(StateReader& in);
  // LoadState in two steps: reads and checks everything (throwing StateError, changing
  // nothing), then returns what applies it.
  StateApply ParseState(StateReader& in);

 private:
  // LocalApicHost.
  void SendIpi(unsigned from_cpu, const ApicMessage& message) override;
  void BroadcastEoi(uint8_t vector) override;
  void Wake(unsigned cpu) override;

  void OnPicOutput(bool intr);

  std::vector<std::unique_ptr<LocalApic>> lapics_;
  WakeFn wake_;
  StartupFn startup_;
  Pic8259* pic_ = nullptr;
  std::function<void(uint8_t)> eoi_listener_;
  std::atomic<unsigned> lowest_priority_rotor_{0};
};

}  // namespace rove
