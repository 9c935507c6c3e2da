// A PC: guest RAM, the PC devices on a port-I/O and an MMIO bus, the loaded kernel and its
// vCPUs, each on its own host thread. One Machine per process.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "rove/engine/accelerator.h"
#include "rove/engine/vcpu.h"

namespace rove {

struct MachineConfig {
  uint64_t ram_bytes = 512ull << 20;
  unsigned cpus = 1;
  std::string kernel_path;
  std::string initrd_path;
  std::string cmdline;
  // Receives every byte the guest writes to COM1.
  std::function<void(uint8_t)> serial_output;
  // What runs the vCPUs. kKvm opens `kvm_device` (default: DefaultKvmDevice()); the constructor
  // throws KvmUnavailable when it cannot be used.
  AccelKind accel = AccelKind::kBt;
  std::string kvm_device;
};

enum class MachineStopReason : uint8_t {
  kPowerOff,     // ACPI S5
  kReset,        // i8042 reset line or the ACPI reset register
  kDebugExit,    // QEMU debug-exit port: status in MachineResult::exit_status
  kTripleFault,  // message holds the guest state
  kHalted,       // every vCPU halted with interrupts disabled
  kStopped,      // RequestStop()
};

struct MachineResult {
  MachineStopReason reason = MachineStopReason::kStopped;
  int exit_status = 0;
  std::string message;
};

struct MachineStats {
  VcpuStats cpu;  // summed over vCPUs
  uint64_t unclaimed_pio = 0;
  uint64_t unclaimed_mmio = 0;
  // Exits to the emulator by instruction, most frequent first (summed over vCPUs).
  std::vector<std::pair<std::string, uint64_t>> emulated_by_kind;
};

class Machine {
 public:
  // Builds the machine and loads the kernel; throws std::runtime_error (or a LoadError) with a
  // one-line reason on bad input.
  explicit Machine(const MachineConfig& config);
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  // Runs until power-off, reset, debug exit, triple fault or RequestStop().
  MachineResult Run();
  // Thread- and signal-safe enough for a SIGINT handler (sets a flag and kicks vCPUs).
  void RequestStop();
  MachineStats stats() const;
  AccelKind accelerator() const;

  // Thread-safe, while Run() is active on another thread (or before it): stops every vCPU at
  // an instruction boundary, moves them all to `kind` and lets them continue; the guest does not
  // notice. Throws KvmUnavailable (the machine keeps running on its accelerator).
  void SwitchAccelerator(AccelKind kind);

  // Snapshots (docs/SNAPSHOT.md). Save may be called while Run() is active (the vCPUs are
  // paused for it) or not. Load is for a machine built with the same configuration (RAM, vCPU
  // count) that is not running; it throws SnapshotError (or StateError) on a bad or mismatched
  // snapshot. Everything is checked before anything is applied: a failed load changes nothing.
  std::vector<uint8_t> SaveSnapshot();
  void LoadSnapshot(std::span<const uint8_t> snapshot);
  void SaveSnapshotFile(const std::string& path);
  void LoadSnapshotFile(const std::string& path);
  // What the loader loaded, one line.
  const std::string& load_summary() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rove
