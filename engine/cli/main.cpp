// rove command line.
//
//   rove run --kernel FILE [--initrd FILE] [--append TEXT] [--mem MiB] [--cpus N]
//            [--accel bt|kvm|auto] [--serial stdio|file:PATH] [--stats]
//            [--save-on-stop FILE] [--restore FILE]
//
// --save-on-stop writes a snapshot (docs/SNAPSHOT.md) when the run is stopped by SIGINT or
// SIGTERM; --restore continues such a snapshot instead of booting (the machine is built from the
// same --kernel/--initrd/--mem/--cpus, then its RAM, vCPUs and devices are replaced).
//
// --accel kvm runs the same machine on /dev/kvm ($ROVE_KVM_DEVICE overrides the path); auto
// times a tiny guest loop on both and picks the faster, printing one "accel:" line on stderr.
//
// The machine is a PC (engine/include/rove/engine/machine.h): PIC, PIT, local and I/O APIC,
// 16550 UART console, CMOS, i8042, PCI host bridge, ACPI power-off and reset, fw_cfg, and the
// QEMU debug-exit port at 0xF4.
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

#include "rove/engine/machine.h"

namespace {

std::atomic<rove::Machine*> g_running_machine{nullptr};

void OnInterrupt(int) {
  if (rove::Machine* m = g_running_machine.load()) m->RequestStop();
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
  std::string save_on_stop, restore;
  run->add_option("--kernel", kernel, "Kernel: bzImage or multiboot ELF/a.out")->required();
  run->add_option("--initrd", initrd, "Initial ramdisk");
  run->add_option("--append", append, "Kernel command line");
  run->add_option("--mem", mem_mib, "Guest RAM in MiB")->check(CLI::Range(16, 65536));
  run->add_option("--cpus", cpus, "Number of vCPUs")->check(CLI::Range(1, 64));
  run->add_option("--accel", accel, "Accelerator: bt, kvm, or auto (the faster, measured)")
      ->check(CLI::IsMember({"bt", "kvm", "auto"}));
  run->add_option("--serial", serial, "Console: stdio or file:PATH");
  run->add_flag("--stats", stats, "Print execution statistics on exit");
  run->add_option("--save-on-stop", save_on_stop,
                  "Write a snapshot of the machine to FILE when SIGINT/SIGTERM stops it");
  run->add_option("--restore", restore,
                  "Continue the snapshot in FILE (taken with the same --kernel/--mem/--cpus)");
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
    rove::MachineConfig config;
    config.ram_bytes = mem_mib << 20;
    config.cpus = static_cast<unsigned>(cpus);
    config.kernel_path = kernel;
    config.initrd_path = initrd;
    config.cmdline = append;
    if (accel == "auto") {
      const rove::AccelChoice choice = rove::ChooseAccelerator();
      fmt::print(stderr, "{}\n", choice.summary);
      config.accel = choice.kind;
    } else {
      config.accel = *rove::ParseAccelName(accel);
    }
    config.serial_output = [out](uint8_t byte) {
      std::fputc(byte, out);
      if (byte == '\n') std::fflush(out);
    };
    rove::Machine machine(config);
    if (!restore.empty()) {
      machine.LoadSnapshotFile(restore);
      fmt::print(stderr, "rove: restored {}\n", restore);
    }
    g_running_machine.store(&machine);
    struct sigaction sa {};
    sa.sa_handler = OnInterrupt;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    rove::MachineResult result = machine.Run();
    g_running_machine.store(nullptr);
    std::fflush(out);

    if (stats) {
      rove::MachineStats s = machine.stats();
      fmt::print(stderr,
                 "stats: blocks translated {}, guest instructions translated {}, cache flushes {},"
                 " emulated instructions {}, exceptions {}, interrupts {}, soft-TLB misses {},"
                 " unclaimed port accesses {}, unclaimed MMIO accesses {}, KVM exits {},"
                 " counted loops {} (fast entries {})\n",
                 s.cpu.blocks_translated, s.cpu.instructions_translated, s.cpu.code_flushes,
                 s.cpu.emulated_instructions, s.cpu.exceptions, s.cpu.interrupts, s.cpu.tlb_misses,
                 s.unclaimed_pio, s.unclaimed_mmio, s.cpu.kvm_exits, s.cpu.counted_loops,
                 s.cpu.loop_fast_entries);
      std::string kinds;
      for (size_t i = 0; i < s.emulated_by_kind.size() && i < 12; ++i)
        kinds += fmt::format("{}{} {}", i ? ", " : "", s.emulated_by_kind[i].first,
                             s.emulated_by_kind[i].second);
      fmt::print(stderr, "stats: emulator exits by instruction: {}\n",
                 kinds.empty() ? "none" : kinds);
    }
    switch (result.reason) {
      case rove::MachineStopReason::kPowerOff:
        fmt::print(stderr, "rove: guest powered off\n");
        return 0;
      case rove::MachineStopReason::kHalted:
        fmt::print(stderr, "rove: guest halted\n");
        return 0;
      case rove::MachineStopReason::kReset:
        fmt::print(stderr, "rove: guest requested a reboot; stopping\n");
        return 0;
      case rove::MachineStopReason::kDebugExit:
        return result.exit_status;
      case rove::MachineStopReason::kTripleFault:
        fmt::print(stderr, "rove: guest triple fault: {}\n", result.message);
        return 3;
      case rove::MachineStopReason::kStopped:
        if (!save_on_stop.empty()) {
          machine.SaveSnapshotFile(save_on_stop);
          fmt::print(stderr, "rove: stopped; snapshot saved to {}\n", save_on_stop);
        } else {
          fmt::print(stderr, "rove: stopped\n");
        }
        return 130;
    }
    return 4;
  } catch (const rove::KvmUnavailable& e) {
    fmt::print(stderr, "rove: --accel kvm: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "rove: {}\n", e.what());
    return 2;
  }
}
