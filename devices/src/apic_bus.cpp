#include "rove/devices/apic_bus.h"

namespace rove {

ApicBus::ApicBus(const ApicBusConfig& config, TimerQueue& timers, WakeFn wake, StartupFn startup)
    : wake_(std::move(wake)), startup_(std::move(startup)) {
  const unsigned cpus = config.cpus == 0 ? 1 : config.cpus;
  lapics_.reserve(cpus);
  for (unsigned i = 0; i < cpus; ++i) {
    LocalApicConfig c;
    c.apic_id = i;
    c.bsp = i == 0;
    c.bus_hz = config.apic_bus_hz;
    c.tsc_hz = config.tsc_hz;
    LocalApicHost& host = *this;
    lapics_.push_back(std::make_unique<LocalApic>(i, c, host, timers));
  }
}

ApicBus::~ApicBus() {
  if (pic_) pic_->SetOutputListener(nullptr);
}

void ApicBus::ConnectPic(Pic8259* pic) {
  pic_ = pic;
  if (pic_) pic_->SetOutputListener([this](bool intr) { OnPicOutput(intr); });
}

void ApicBus::SetEoiListener(std::function<void(uint8_t)> listener) {
  eoi_listener_ = std::move(listener);
}

void ApicBus::OnPicOutput(bool intr) {
  // Called with the PIC's lock held; LocalApic never calls the PIC, so taking its lock is safe.
  if (!intr) return;
  for (auto& l : lapics_) {
    if (l->AcceptsExtInt()) Wake(l->cpu());
  }
}

void ApicBus::Deliver(const ApicMessage& m, int source_cpu) {
  std::vector<LocalApic*> targets;
  targets.reserve(lapics_.size());
  for (auto& l : lapics_) {
    const bool self = int(l->cpu()) == source_cpu;
    bool hit;
    switch (m.shorthand) {
      case DestinationShorthand::kSelf:
        hit = self;
        break;
      case DestinationShorthand::kAllIncludingSelf:
        hit = true;
        break;
      case DestinationShorthand::kAllExcludingSelf:
        hit = !self;
        break;
      default:
        hit = l->MatchesDestination(m);
        break;
    }
    if (hit) targets.push_back(l.get());
  }
  if (targets.empty()) return;

  switch (m.mode) {
    case DeliveryMode::kFixed:
      for (LocalApic* t : targets) t->AcceptFixed(m.vector, m.level_triggered);
      break;
    case DeliveryMode::kLowestPriority: {
      const unsigned start = lowest_priority_rotor_.fetch_add(1, std::memory_order_relaxed);
      LocalApic* best = nullptr;
      unsigned best_prio = 256;
      for (size_t i = 0; i < targets.size(); ++i) {
        LocalApic* t = targets[(start + i) % targets.size()];
        const unsigned prio = t->arbitration_priority();
        if (prio < best_prio) {
          best = t;
          best_prio = prio;
        }
      }
      best->AcceptFixed(m.vector, m.level_triggered);
      break;
    }
    case DeliveryMode::kNmi:
      for (LocalApic* t : targets) t->AcceptNmi();
      break;
    case DeliveryMode::kInit:
      if (!m.assert && m.level_triggered) break;  // INIT level de-assert: no effect
      for (LocalApic* t : targets) {
        t->InitReset();
        if (startup_) startup_(t->cpu(), StartupEvent{StartupEvent::Kind::kInit, 0});
        Wake(t->cpu());
      }
      break;
    case DeliveryMode::kStartup:
      for (LocalApic* t : targets) {
        if (startup_) startup_(t->cpu(), StartupEvent{StartupEvent::Kind::kStartup, m.vector});
        Wake(t->cpu());
      }
      break;
    case DeliveryMode::kExtInt:
      for (LocalApic* t : targets) t->AcceptExtInt();
      break;
    default:  // SMI: no SMM
      break;
  }
}

bool ApicBus::HasInterrupt(unsigned cpu) {
  LocalApic& l = *lapics_.at(cpu);
  if (l.HasInterrupt()) return true;
  return pic_ && l.AcceptsExtInt() && pic_->InterruptOutput();
}

std::optional<uint8_t> ApicBus::AcknowledgeInterrupt(unsigned cpu) {
  LocalApic& l = *lapics_.at(cpu);
  if (auto v = l.Acknowledge()) return v;
  if (pic_ && l.AcceptsExtInt() && pic_->InterruptOutput()) {
    l.ClearExtInt();
    return pic_->Acknowledge();
  }
  return std::nullopt;
}

bool ApicBus::TakeNmi(unsigned cpu) {
  return lapics_.at(cpu)->TakeNmi();
}

void ApicBus::SendIpi(unsigned from_cpu, const ApicMessage& message) {
  Deliver(message, int(from_cpu));
}

void ApicBus::BroadcastEoi(uint8_t vector) {
  if (eoi_listener_) eoi_listener_(vector);
}

void ApicBus::Wake(unsigned cpu) {
  if (wake_) wake_(cpu);
}

// --- Snapshot. ---

void ApicBus::SaveState(StateWriter& out) const {
  out.U32(lowest_priority_rotor_.load(std::memory_order_relaxed));
}

StateApply ApicBus::ParseState(StateReader& in) {
  const uint32_t rotor = in.U32("lowest priority rotor");
  return [=, this]() mutable { lowest_priority_rotor_.store(rotor, std::memory_order_relaxed); };
}

void ApicBus::LoadState(StateReader& in) {
  ParseState(in)();
}

}  // namespace rove
