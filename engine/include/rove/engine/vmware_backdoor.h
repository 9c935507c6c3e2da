// The VMware "backdoor": `in eax, dx` with EAX = 0x564D5868 ('VMXh') and DX = 0x5658 is a call
// into the hypervisor, with the command in ECX and results in EAX-EDX. VMware guests probe it
// (Linux: TSC and APIC-bus frequency, then it trusts the TSC instead of re-checking it against
// jiffies, which timer-interrupt latency under binary translation makes fail). rove answers the
// commands guests use at boot; any other command answers "not supported" (EAX = 0xFFFFFFFF).
#pragma once

#include <cstdint>

#include "rove/translator/cpu_state.h"

namespace rove {

namespace vmware {
inline constexpr uint32_t kMagic = 0x564D5868;
inline constexpr uint16_t kPort = 0x5658;
inline constexpr uint32_t kCmdGetVersion = 10;
inline constexpr uint32_t kCmdGetHz = 45;
inline constexpr uint32_t kCmdGetVcpuInfo = 68;
inline constexpr uint32_t kVersion = 6;
inline constexpr uint32_t kProductEsx = 2;
inline constexpr uint32_t kNotSupported = 0xFFFFFFFF;
}  // namespace vmware

struct VmwareBackdoorConfig {
  uint64_t tsc_hz = 0;
  uint64_t apic_bus_hz = 0;  // the local APIC timer's input clock
};

// True if this IN is a backdoor call (then it is handled and `state`'s registers hold the
// result); false for an ordinary port read.
bool IsVmwareBackdoorCall(const CpuState& state, uint16_t port, unsigned width);
void HandleVmwareBackdoor(CpuState& state, const VmwareBackdoorConfig& config);

}  // namespace rove
