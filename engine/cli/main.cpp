// rove command line.
//
//   rove run --kernel FILE [--initrd FILE] [--append TEXT] [--mem MiB] [--cpus N]
//            [--accel bt] [--serial stdio|file:PATH] [--stats]
//
// This first machine is minimal: one vCPU, a console on COM1's data port, and the QEMU
// debug-exit port at 0xF4. The full PC machine (PIC, PIT, APIC, ACPI power-off, SMP) is
// assembled from devices/ as part of the Linux boot work.
#include <fmt/core.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>

#include "rove/engine/io_ports.h"
#include "rove/engine/loader/kernel_loader.h"
#include "rove/engine/loader/load_error.h"
#include "rove/engine/vcpu.h"
#include "rove/mmu/guest_memory.h"

namespace {

// COM1 transmit + line status, and the debug-exit port.
class ConsolePorts : public rove::IoPorts {
 public:
  explicit ConsolePorts(std::FILE* out) : out_(out) {}
  void set_vcpu(rove::Vcpu* vcpu) { vcpu_ = vcpu; }

  uint32_t In(uint16_t port, unsigned width) override {
    if (port == 0x3FD) return 0x60;  // THR empty, transmitter idle
    return width == 1 ? 0xFF : width == 2 ? 0xFFFF : 0xFFFFFFFF;
  }
  void Out(uint16_t port, unsigned, uint32_t value) override {
    if (port == 0x3F8) {
      std::fputc(static_cast<int>(value & 0xFF), out_);
      if ((value & 0xFF) == '\n') std::fflush(out_);
    } else if (port == 0xF4) {
      exit_status = static_cast<int>(((value & 0xFF) << 1) | 1);
      if (vcpu_) vcpu_->RequestStop();
    }
  }
  int exit_status = -1;

 private:
  std::FILE* out_;
  rove::Vcpu* vcpu_ = nullptr;
};

std::atomic<rove::Vcpu*> g_running_vcpu{nullptr};

void OnInterrupt(int) {
  if (rove::Vcpu* v = g_running_vcpu.load()) v->RequestStop();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rove: run unmodified x86-64 virtual machines by binary translation"};
  app.require_subcommand(1);
  CLI::App* run = app.add_subcommand("run", "Boot a guest kernel");
  std::string kernel, initrd, append, accel = "bt", serial = "stdio";
  uint64_t mem_mib = 512;
  int cpus = 1;
  bool stats = false;
  run->add_option("--kernel", kernel, "Kernel: bzImage or multiboot ELF/a.out")->required();
  run->add_option("--initrd", initrd, "Initial ramdisk");
  run->add_option("--append", append, "Kernel command line");
  run->add_option("--mem", mem_mib, "Guest RAM in MiB")->check(CLI::Range(16, 65536));
  run->add_option("--cpus", cpus, "Number of vCPUs")->check(CLI::Range(1, 1));
  run->add_option("--accel", accel, "Accelerator")->check(CLI::IsMember({"bt"}));
  run->add_option("--serial", serial, "Console: stdio or file:PATH");
  run->add_flag("--stats", stats, "Print execution statistics on exit");
  CLI11_PARSE(app, argc, argv);

  std::FILE* out = stdout;
  if (serial.rfind("file:", 0) == 0) {
    out = std::fopen(serial.substr(5).c_str(), "w");
    if (!out) {
      fmt::print(stderr, "rove: cannot open serial file {}\n", serial.substr(5));
      return 2;
    }
  } else if (serial != "stdio") {
    fmt::print(stderr, "rove: --serial must be stdio or file:PATH\n");
    return 2;
  }

  try {
    auto memory = rove::GuestMemory::Create(mem_mib << 20);
    ConsolePorts ports(out);
    rove::Vcpu vcpu(*memory, ports);
    ports.set_vcpu(&vcpu);
    rove::loader::LoadOptions opt;
    opt.kernel_path = kernel;
    opt.initrd_path = initrd;
    opt.cmdline = append;
    rove::loader::LoadKernel(*memory, vcpu.state(), opt);

    g_running_vcpu.store(&vcpu);
    struct sigaction sa {};
    sa.sa_handler = OnInterrupt;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    rove::StopInfo stop = vcpu.Run();
    g_running_vcpu.store(nullptr);
    std::fflush(out);

    if (stats) {
      const auto& s = vcpu.stats();
      fmt::print(stderr,
                 "stats: blocks translated {}, guest instructions translated {}, cache flushes {},"
                 " emulated instructions {}, exceptions {}, soft-TLB misses {}\n",
                 s.blocks_translated, s.instructions_translated, s.code_flushes,
                 s.emulated_instructions, s.exceptions, s.tlb_misses);
    }
    switch (stop.reason) {
      case rove::StopReason::kHalted:
        fmt::print(stderr, "rove: guest halted\n");
        return 0;
      case rove::StopReason::kShutdown:
        fmt::print(stderr, "rove: guest triple fault: {}\n", stop.message);
        return 3;
      case rove::StopReason::kStopRequested:
        if (ports.exit_status >= 0) return ports.exit_status;
        fmt::print(stderr, "rove: stopped\n");
        return 130;
      default:
        fmt::print(stderr, "rove: stopped ({})\n", stop.message);
        return 4;
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "rove: {}\n", e.what());
    return 2;
  }
}
