#include "guest_runner.h"

#include <fmt/format.h>

#include <cstring>
#include <fstream>
#include <iterator>

#if ROVE_TESTS_HAVE_VCPU
#include "rove/engine/vcpu.h"
#include "rove/mmu/guest_memory.h"
#include "rove/translator/cpu_state.h"
#endif

namespace rove::testing {

std::string GuestImagePath(const std::string& name) {
  return std::string(ROVE_GUESTS_DIR) + "/" + name + ".bin";
}

std::vector<uint8_t> ReadFileBytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), {});
}

GuestResult RunGuestImage(const std::vector<uint8_t>& image, const GuestOptions& options) {
  GuestResult r;
#if !ROVE_TESTS_HAVE_VCPU
  (void)image;
  (void)options;
  r.error = "engine Vcpu not in this build";
#else
  if (image.empty() || image.size() > kGuestRamBytes - kGuestLoadAddr) {
    r.error = "empty or oversized guest image";
    return r;
  }
  try {
    std::unique_ptr<GuestMemory> mem = GuestMemory::Create(kGuestRamBytes);
    std::memcpy(mem->host_base() + kGuestLoadAddr, image.data(), image.size());
    if (options.prepare) options.prepare(mem->host_base());
    RecordingIo io;
    Vcpu vcpu(*mem, io);
    io.set_vcpu(&vcpu);
    CpuState& s = vcpu.state();
    ResetCpuState(s);
    // Real mode, CS:IP = 0000:kGuestLoadAddr.
    s.seg[kCs].selector = 0;
    s.seg[kCs].base = 0;
    s.rip = kGuestLoadAddr;
    const StopInfo stop = RunWithWatchdog(vcpu, options.max_exits, options.timeout_ms);
    r.exited = io.exited();
    r.exit_value = io.exit_value();
    r.console = io.console();
    r.stop = fmt::format("{} ({}) at cs:rip {:#x}:{:#x}, cr0 {:#x}, efer {:#x}",
                         StopReasonName(stop.reason), stop.message, s.seg[kCs].selector, s.rip,
                         s.cr0, s.efer);
  } catch (const std::exception& e) {
    r.error = std::string("exception: ") + e.what();
  }
#endif
  return r;
}

}  // namespace rove::testing
