// The binary-translation accelerator: translated execution (BtCpu) plus the engine's emulation
// of what the translator hands back (SystemEmulator), interrupt windows, halts and stops.
#pragma once

#include "rove/engine/system_emulator.h"
#include "rove/mmu/linear_memory.h"
#include "rove/translator/bt_cpu.h"
#include "vcpu_core.h"

namespace rove {

class BtAccelerator : public Accelerator {
 public:
  explicit BtAccelerator(VcpuCore& core)
      : core_(core),
        linear_(core.memory),
        bt_(core.memory, core.state),
        emulator_(core.state, core.memory, linear_, core.io, bt_, core.model, core.clock) {}

  AccelKind kind() const override { return AccelKind::kBt; }
  StopInfo Run(uint64_t max_guest_exits) override;
  void Kick() override { bt_.RequestExit(); }
  void TakeOver() override;

  BtCpu& bt() { return bt_; }
  SystemEmulator& emulator() { return emulator_; }

 private:
  EmulationResult TakeInterrupts();

  VcpuCore& core_;
  LinearMemory linear_;
  BtCpu bt_;
  SystemEmulator emulator_;
};

}  // namespace rove
