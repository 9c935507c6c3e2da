// Accelerators: what executes a vCPU's guest code. `bt` is rove's binary translator; `kvm` runs
// the same machine (same RAM, buses, devices, interrupt controllers, CPU model) on /dev/kvm.
// A vCPU can be moved between them while it is stopped (Vcpu::SetAccelerator): the complete
// architectural state lives in CpuState whenever the vCPU is not running.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace rove {

class GuestMemory;

enum class AccelKind : uint8_t { kBt, kKvm };

const char* AccelName(AccelKind kind);
// "bt" or "kvm"; nullopt for anything else.
std::optional<AccelKind> ParseAccelName(std::string_view name);

// /dev/kvm cannot be used: missing, not permitted, not a KVM device, or lacking a capability
// rove needs. what() is one line meant for the user.
class KvmUnavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The KVM device rove opens: $ROVE_KVM_DEVICE when set (tests point it at missing or wrong
// files), else /dev/kvm.
std::string DefaultKvmDevice();

// A KVM virtual machine over a GuestMemory: its memory slots map the same host mapping as the
// binary translator uses (RAM below the PCI hole, and RAM from 4 GiB), so guest RAM is shared
// and a vCPU can switch accelerators without copying memory. One per Machine; it must outlive
// every vCPU using it, and `memory` must outlive it.
class KvmVm {
 public:
  // Throws KvmUnavailable with the reason.
  static std::unique_ptr<KvmVm> Create(GuestMemory& memory,
                                       const std::string& device = DefaultKvmDevice());
  ~KvmVm();
  KvmVm(const KvmVm&) = delete;
  KvmVm& operator=(const KvmVm&) = delete;

  const std::string& device() const;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  KvmVm();
  std::unique_ptr<Impl> impl_;
};

// Checks that `device` is a KVM device rove can use (opens it, checks the API version and
// capabilities, creates and drops a VM). Returns "" when usable, else the reason.
std::string KvmUnusableReason(const std::string& device = DefaultKvmDevice());

// `--accel auto`: when KVM is usable, times a tiny guest loop on each accelerator (well under a
// second in total) and picks the faster; otherwise bt. `summary` is the one line to print,
// beginning "accel: ".
struct AccelChoice {
  AccelKind kind = AccelKind::kBt;
  std::string summary;
  double bt_ns_per_iteration = 0;
  double kvm_ns_per_iteration = 0;  // 0 when KVM was not measured
};
AccelChoice ChooseAccelerator(const std::string& kvm_device = DefaultKvmDevice());

}  // namespace rove
