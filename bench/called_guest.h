// What the micro benchmarks share: a 64-bit guest (the raw loader's identity-mapped long mode)
// whose flat code, loaded at kCodeAddr, is called like a function that returns to a HLT, the
// guest binaries bench/guest/*.asm assemble to, and thread CPU time.
#pragma once

#include <time.h>

#include <cstdint>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "rove/engine/io_ports.h"
#include "rove/engine/loader/raw_loader.h"
#include "rove/engine/vcpu.h"
#include "rove/mmu/guest_memory.h"

namespace rove::bench {

inline constexpr uint64_t kCodeAddr = 0x100000;
inline constexpr uint64_t kHltAddr = 0x0FF000;
inline constexpr uint64_t kStackTop = 0x800000;

// Thread CPU time: on a loaded machine wall time includes time spent descheduled, so the
// benchmarks also report ratios of CPU time.
inline double ThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

// A binary assembled from bench/guest/NAME.asm.
inline std::vector<uint8_t> ReadGuest(const std::string& name) {
  std::string path = std::string(ROVE_BENCH_GUEST_DIR) + "/" + name;
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("missing guest binary " + path);
  return {std::istreambuf_iterator<char>(f), {}};
}

class CalledGuest {
 public:
  CalledGuest(const std::vector<uint8_t>& code, uint64_t ram_bytes,
              std::unique_ptr<IoPorts> io_ports)
      : ports(std::move(io_ports)), mem(GuestMemory::Create(ram_bytes)) {
    vcpu = std::make_unique<Vcpu>(*mem, *ports);
    loader::RawBinaryOptions opt;
    opt.load_address = kCodeAddr;
    opt.entry = kCodeAddr;
    opt.mode = loader::EntryMode::kLong64;
    opt.stack_pointer = kStackTop;
    loader::LoadRawBinary(*mem, vcpu->state(), code, opt);
    const uint8_t hlt = 0xF4;
    mem->Write(kHltAddr, &hlt, 1);
  }

  // Runs the code at `entry` with the given registers set; its return address is the HLT.
  StopInfo CallAt(uint64_t entry, std::initializer_list<std::pair<int, uint64_t>> regs) {
    CpuState& s = vcpu->state();
    s.halted = false;
    s.rip = entry;
    for (const auto& [reg, value] : regs) s.gpr[reg] = value;
    s.gpr[kRsp] = kStackTop - 8;
    mem->WriteU64(kStackTop - 8, kHltAddr);
    return vcpu->Run();
  }

  std::unique_ptr<IoPorts> ports;
  std::unique_ptr<GuestMemory> mem;
  std::unique_ptr<Vcpu> vcpu;
};

}  // namespace rove::bench
