// An interrupt message on the (virtual) APIC bus: what an I/O APIC redirection entry, an MSI or
// a local APIC's ICR sends to the local APICs.
#pragma once

#include <cstdint>

namespace rove {

enum class DeliveryMode : uint8_t {
  kFixed = 0,
  kLowestPriority = 1,
  kSmi = 2,
  kNmi = 4,
  kInit = 5,
  kStartup = 6,
  kExtInt = 7,
};

enum class DestinationShorthand : uint8_t {
  kNone = 0,
  kSelf = 1,
  kAllIncludingSelf = 2,
  kAllExcludingSelf = 3,
};

struct ApicMessage {
  uint8_t vector = 0;
  DeliveryMode mode = DeliveryMode::kFixed;
  bool logical = false;          // destination mode
  bool level_triggered = false;  // trigger mode (sets TMR; EOI is then broadcast)
  bool assert = true;            // INIT with assert = false is the "INIT level de-assert"
  DestinationShorthand shorthand = DestinationShorthand::kNone;
  // 8-bit xAPIC destination (I/O APIC, MSI, xAPIC ICR) unless `wide` (x2APIC ICR: 32 bits).
  uint32_t destination = 0;
  bool wide = false;
};

// Delivers messages to the local APICs. `source_cpu` is the sender for IPIs (used by the
// self / all-excluding-self shorthands), or -1.
class ApicMessageSink {
 public:
  virtual ~ApicMessageSink() = default;
  virtual void Deliver(const ApicMessage& message, int source_cpu) = 0;
};

}  // namespace rove
