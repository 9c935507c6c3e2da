// Per-vCPU registers that belong to the machine rather than the CPU core: the local APIC's
// MSRs (IA32_APIC_BASE, TSC_DEADLINE, the x2APIC range) and CR8 (the task priority).
// The machine implements this; the system emulator consults it before its own MSR table.
#pragma once

#include <cstdint>
#include <optional>

namespace rove {

class PlatformHooks {
 public:
  virtual ~PlatformHooks() = default;
  // RDMSR: nullopt if the MSR is not the platform's; otherwise the value, or a #GP when
  // `gp` is set.
  virtual std::optional<uint64_t> ReadMsr(uint32_t index, bool& gp) = 0;
  // WRMSR: false if the MSR is not the platform's; sets `gp` to refuse the value.
  virtual bool WriteMsr(uint32_t index, uint64_t value, bool& gp) = 0;
  virtual uint64_t ReadCr8() = 0;
  virtual void WriteCr8(uint64_t value) = 0;
};

}  // namespace rove
