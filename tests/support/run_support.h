// Helpers shared by the differential harness and the guest tests: an IoPorts implementation with
// the test devices (debug-exit port 0xF4, console port 0x3F8), a watchdog around Vcpu::Run, and
// running a piece of test code in a forked child so that a crash fails one case only.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "rove/engine/io_ports.h"

#ifndef ROVE_TESTS_HAVE_VCPU
#define ROVE_TESTS_HAVE_VCPU 0
#endif

#if ROVE_TESTS_HAVE_VCPU
#include "rove/engine/vcpu.h"
#endif

namespace rove {
class Vcpu;
}

namespace rove::testing {

inline constexpr uint16_t kDebugExitPort = 0xF4;
inline constexpr uint16_t kConsolePort = 0x3F8;

// Port 0xF4: a write of V records exit status (V << 1) | 1 and asks the vCPU to stop.
// Port 0x3F8: bytes written are collected in console(); the line status register (0x3FD) reads
// "transmitter empty". Every other port reads as all ones and ignores writes.
class RecordingIo : public IoPorts {
 public:
  uint32_t In(uint16_t port, unsigned width) override;
  void Out(uint16_t port, unsigned width, uint32_t value) override;

  void set_vcpu(Vcpu* vcpu) { vcpu_ = vcpu; }
  bool exited() const { return exited_; }
  uint32_t exit_status() const { return exit_status_; }
  // The value the guest wrote to the debug-exit port.
  uint32_t exit_value() const { return exit_status_ >> 1; }
  const std::string& console() const { return console_; }
  uint64_t other_accesses() const { return other_accesses_; }

 private:
  Vcpu* vcpu_ = nullptr;
  bool exited_ = false;
  uint32_t exit_status_ = 0;
  std::string console_;
  uint64_t other_accesses_ = 0;
};

#if ROVE_TESTS_HAVE_VCPU
const char* StopReasonName(StopReason reason);
// Vcpu::Run(max_exits) with a watchdog thread that calls RequestStop() after timeout_ms.
StopInfo RunWithWatchdog(Vcpu& vcpu, uint64_t max_exits, unsigned timeout_ms);
#endif

// Forks; the child calls child_fn(shared) with a zeroed MAP_SHARED buffer of `shared_bytes`
// and exits; if the child exited normally the parent calls parent_fn(shared). Returns "" on
// success, otherwise how the child ended (signal, exit code, timeout after timeout_ms).
std::string RunInChild(size_t shared_bytes, const std::function<void(void*)>& child_fn,
                       const std::function<void(const void*)>& parent_fn, unsigned timeout_ms);

}  // namespace rove::testing
