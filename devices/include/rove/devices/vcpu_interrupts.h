// What a vCPU needs from the interrupt controllers, and the callbacks the engine gives them.
//
// The engine's vCPU loop, at each instruction boundary where it may take an interrupt:
//
//   if (irqs.TakeNmi(cpu)) -> deliver NMI (vector 2)                    [NMI not blocked]
//   else if (RFLAGS.IF && !interrupt_shadow && irqs.HasInterrupt(cpu))
//     if (auto v = irqs.AcknowledgeInterrupt(cpu)) -> deliver external interrupt *v
//
// and when it halts (HLT), it sleeps until woken. The devices call the WakeFn for a vCPU every
// time something may have become deliverable to it (an IRR bit set, an NMI, INIT or SIPI, the
// PIC's INTR rising for a vCPU that takes ExtINT). The engine's WakeFn should set the vCPU's
// exit request (so translated code returns at the next block boundary) and notify the
// condition variable a halted vCPU sleeps on. The wake is a hint, not a level: after the guest
// sets IF (STI, POPF, IRET) or lowers its priority (TPR/CR8 write, EOI) the engine re-checks
// HasInterrupt itself.
//
// Threading: every method is thread-safe. The WakeFn and StartupFn may be called from any
// thread (another vCPU sending an IPI, the timer thread, a device thread), sometimes with
// device locks held: they must not call back into the devices and must not block on a lock
// that a vCPU thread holds while it calls into the devices. The halt loop that satisfies this
// (the wake callback sets `woken` under `mu` and notifies `cv`):
//
//   while (!irqs.HasInterrupt(cpu) && !irqs_nmi_or_stop()) {   // devices: without `mu`
//     std::unique_lock lock(mu);
//     cv.wait(lock, [&] { return woken; });                    // predicate: flag only
//     woken = false;
//   }
//
// Holding `mu` while calling HasInterrupt (e.g. inside the wait predicate) can deadlock against
// a timer interrupt being delivered.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

namespace rove {

class VcpuInterrupts {
 public:
  virtual ~VcpuInterrupts() = default;
  // True if a maskable interrupt is deliverable to `cpu` (its local APIC has an IRR vector
  // above the processor priority, or the PIC's INTR is asserted and `cpu` takes ExtINT). The
  // caller checks RFLAGS.IF and the interrupt shadow itself.
  virtual bool HasInterrupt(unsigned cpu) = 0;
  // The interrupt-acknowledge cycle: the vector to deliver (moved to in-service), or nullopt if
  // nothing is deliverable any more.
  virtual std::optional<uint8_t> AcknowledgeInterrupt(unsigned cpu) = 0;
  // Consumes a pending NMI for `cpu`.
  virtual bool TakeNmi(unsigned cpu) = 0;
};

using WakeFn = std::function<void(unsigned cpu)>;

// INIT and SIPI reaching a vCPU through its local APIC (sent by another vCPU's ICR). The local
// APIC has already been reset for INIT. The engine puts the vCPU into wait-for-SIPI on kInit
// (unless it is the BSP being reset), and on kStartup — only if the vCPU is waiting for SIPI —
// starts it in real mode at CS = vector << 8, IP = 0 (address vector * 0x1000).
struct StartupEvent {
  enum class Kind : uint8_t { kInit, kStartup };
  Kind kind = Kind::kInit;
  uint8_t vector = 0;  // kStartup only
};
using StartupFn = std::function<void(unsigned cpu, StartupEvent event)>;

}  // namespace rove
