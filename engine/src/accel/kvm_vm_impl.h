// The KVM VM behind KvmVm: the /dev/kvm and VM descriptors, what the host's KVM supports, and
// the vCPU descriptors (created once per vCPU index: KVM cannot destroy a single vCPU).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "rove/engine/accelerator.h"

namespace rove {

// linux/kvm.h declares its variable-length structs with __DECLARE_FLEX_ARRAY, which in C++
// adds a byte (an empty struct) before the array: sizeof and the array offset differ from C,
// and so do the ioctl numbers that encode the size. These are the C (kernel) values, and the
// buffers below are laid out by hand with the C offsets.
namespace kvm_abi {
inline constexpr unsigned long kGetSupportedCpuid = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, 8);
inline constexpr unsigned long kSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, 8);
inline constexpr unsigned long kGetMsrIndexList = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x02, 4);
inline constexpr unsigned long kGetMsrs = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, 8);
inline constexpr unsigned long kSetMsrs = _IOC(_IOC_WRITE, KVMIO, 0x89, 8);
inline constexpr unsigned long kGetXsave = _IOC(_IOC_READ, KVMIO, 0xA4, 4096);
inline constexpr unsigned long kSetXsave = _IOC(_IOC_WRITE, KVMIO, 0xA5, 4096);
inline constexpr size_t kCpuidHeader = 8;    // struct kvm_cpuid2: nent, padding
inline constexpr size_t kMsrListHeader = 4;  // struct kvm_msr_list: nmsrs
inline constexpr size_t kMsrsHeader = 8;     // struct kvm_msrs: nmsrs, pad
inline constexpr size_t kXsaveSize = 4096;   // struct kvm_xsave: region[1024]
}  // namespace kvm_abi

struct KvmVm::Impl {
  ~Impl();

  // The vCPU descriptor for `index` (its APIC ID), created on first use. Throws KvmUnavailable.
  int VcpuFd(int index);
  bool HasMsr(uint32_t index) const;

  std::string device;
  int kvm_fd = -1;
  int vm_fd = -1;
  size_t run_mmap_size = 0;
  GuestMemory* memory = nullptr;
  std::vector<kvm_cpuid_entry2> supported_cpuid;
  std::vector<uint32_t> msr_indices;  // sorted: the MSRs KVM saves and restores

  std::mutex mu;
  std::map<int, int> vcpu_fds;
};

}  // namespace rove
