// The KVM accelerator: one KVM vCPU running the guest with rove's own machine model around it.
// Port I/O and MMIO exits (the local APIC page included) go to the same buses as under BT, the
// local APIC's MSRs to the same PlatformHooks, interrupts come from the same PIC/LAPIC/IOAPIC
// model and are injected with KVM_INTERRUPT / KVM_NMI, and HLT sleeps like the BT loop.
#pragma once

#include <linux/kvm.h>
#include <pthread.h>

#include <atomic>
#include <mutex>

#include "kvm_vm_impl.h"
#include "vcpu_core.h"

namespace rove {

class KvmAccelerator : public Accelerator {
 public:
  // Creates (or reuses) the KVM vCPU for core.index and sets its CPUID from the core's model.
  // Throws KvmUnavailable.
  KvmAccelerator(VcpuCore& core, KvmVm& vm);
  ~KvmAccelerator() override;
  KvmAccelerator(const KvmAccelerator&) = delete;
  KvmAccelerator& operator=(const KvmAccelerator&) = delete;

  AccelKind kind() const override { return AccelKind::kKvm; }
  StopInfo Run(uint64_t max_guest_exits) override;
  void Kick() override;
  void TakeOver() override {}

  uint64_t exits() const { return exits_; }

 private:
  void SetCpuid();
  // VcpuCore::state (plus the core's pending events) into KVM, and back.
  void LoadState();
  void SaveState();
  void HandleIo();
  void HandleMmio();
  void HandleMsr(bool write);
  std::string Describe(const char* what);

  VcpuCore& core_;
  KvmVm::Impl& vm_;
  int fd_ = -1;
  kvm_run* run_ = nullptr;
  uint64_t exits_ = 0;

  // Interrupt-injection bookkeeping: until the first KVM_RUN exit, kvm_run's flags are stale.
  bool entered_ = false;
  bool if_flag_ = false;
  bool halted_ = false;
  uint64_t apic_base_fallback_ = 0;  // without platform hooks (bare vCPU tests)

  std::mutex kick_mu_;
  bool in_run_ = false;
  pthread_t thread_{};
};

}  // namespace rove
