#include "rove/engine/vmware_backdoor.h"

namespace rove {

namespace {
void SetLow32(CpuState& s, int reg, uint32_t v) {
  s.gpr[reg] = v;  // a 32-bit result zero-extends, as `in eax, dx` does for EAX
}
}  // namespace

bool IsVmwareBackdoorCall(const CpuState& s, uint16_t port, unsigned width) {
  return port == vmware::kPort && width == 4 && uint32_t(s.gpr[kRax]) == vmware::kMagic;
}

void HandleVmwareBackdoor(CpuState& s, const VmwareBackdoorConfig& config) {
  switch (uint32_t(s.gpr[kRcx])) {
    case vmware::kCmdGetVersion:
      SetLow32(s, kRax, vmware::kVersion);
      SetLow32(s, kRbx, vmware::kMagic);
      SetLow32(s, kRcx, vmware::kProductEsx);
      break;
    case vmware::kCmdGetHz:
      SetLow32(s, kRax, uint32_t(config.tsc_hz));
      SetLow32(s, kRbx, uint32_t(config.tsc_hz >> 32));
      SetLow32(s, kRcx, uint32_t(config.apic_bus_hz));
      break;
    case vmware::kCmdGetVcpuInfo:
      SetLow32(s, kRax, 0);  // no legacy x2APIC, no other vCPU properties
      break;
    default:
      SetLow32(s, kRax, vmware::kNotSupported);
      break;
  }
}

}  // namespace rove
