// Opening /dev/kvm, checking what rove needs, and creating the VM with its memory slots, the
// MSR filter that sends the local APIC's MSRs to rove's APIC model, and the vCPUs.
#include <errno.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "kvm_vm_impl.h"
#include "rove/engine/msr.h"
#include "rove/mmu/guest_memory.h"

namespace rove {

namespace {

// Addresses VMX needs for real mode on hosts without unrestricted guest (3 pages for the TSS,
// one for the identity map), in the hole below the BIOS where rove never puts RAM.
constexpr uint64_t kTssAddr = 0xFFFBD000;
constexpr uint64_t kIdentityMapAddr = 0xFFFBC000;

struct Capability {
  int cap;
  const char* name;
};

// What the accelerator relies on: memory slots over host memory, kicking with immediate_exit,
// MSR exits to userspace (the local APIC's MSRs live in rove's APIC model), and the state
// ioctls that capture a vCPU completely for switching accelerators.
constexpr Capability kRequired[] = {
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
    {KVM_CAP_X86_USER_SPACE_MSR, "KVM_CAP_X86_USER_SPACE_MSR"},
    {KVM_CAP_X86_MSR_FILTER, "KVM_CAP_X86_MSR_FILTER"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_XSAVE, "KVM_CAP_XSAVE"},
    {KVM_CAP_XCRS, "KVM_CAP_XCRS"},
    {KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS"},
    {KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
};

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    const int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_;
};

[[noreturn]] void Fail(const std::string& message) {
  throw KvmUnavailable(message);
}

std::string Errno() {
  return std::strerror(errno);
}

// Opens the device and checks the API version and capabilities; returns the descriptor.
int OpenChecked(const std::string& device) {
  Fd kvm(open(device.c_str(), O_RDWR | O_CLOEXEC));
  if (kvm.get() < 0) {
    if (errno == ENOENT) Fail(fmt::format("{} does not exist (this host offers no KVM)", device));
    if (errno == EACCES || errno == EPERM)
      Fail(fmt::format("no permission to open {} (add the user to its group, e.g. kvm)", device));
    Fail(fmt::format("cannot open {}: {}", device, Errno()));
  }
  const int version = ioctl(kvm.get(), KVM_GET_API_VERSION, 0);
  if (version < 0) Fail(fmt::format("{} is not a KVM device ({})", device, Errno()));
  if (version != KVM_API_VERSION)
    Fail(fmt::format("{} speaks KVM API version {}, rove needs {}", device, version,
                     KVM_API_VERSION));
  for (const Capability& c : kRequired)
    if (ioctl(kvm.get(), KVM_CHECK_EXTENSION, c.cap) <= 0)
      Fail(fmt::format("KVM on {} lacks {}", device, c.name));
  return kvm.release();
}

}  // namespace

const char* AccelName(AccelKind kind) {
  switch (kind) {
    case AccelKind::kBt:
      return "bt";
    case AccelKind::kKvm:
      return "kvm";
  }
  return "?";
}

std::optional<AccelKind> ParseAccelName(std::string_view name) {
  if (name == "bt") return AccelKind::kBt;
  if (name == "kvm") return AccelKind::kKvm;
  return std::nullopt;
}

std::string DefaultKvmDevice() {
  const char* env = std::getenv("ROVE_KVM_DEVICE");
  return env && *env ? env : "/dev/kvm";
}

KvmVm::Impl::~Impl() {
  for (auto& [index, fd] : vcpu_fds) close(fd);
  if (vm_fd >= 0) close(vm_fd);
  if (kvm_fd >= 0) close(kvm_fd);
}

int KvmVm::Impl::VcpuFd(int index) {
  std::lock_guard lock(mu);
  auto it = vcpu_fds.find(index);
  if (it != vcpu_fds.end()) return it->second;
  const int fd = ioctl(vm_fd, KVM_CREATE_VCPU, index);
  if (fd < 0) Fail(fmt::format("KVM_CREATE_VCPU {} failed: {}", index, Errno()));
  vcpu_fds[index] = fd;
  return fd;
}

bool KvmVm::Impl::HasMsr(uint32_t index) const {
  return std::binary_search(msr_indices.begin(), msr_indices.end(), index);
}

KvmVm::KvmVm() : impl_(std::make_unique<Impl>()) {}
KvmVm::~KvmVm() = default;

const std::string& KvmVm::device() const {
  return impl_->device;
}

std::unique_ptr<KvmVm> KvmVm::Create(GuestMemory& memory, const std::string& device) {
  std::unique_ptr<KvmVm> vm(new KvmVm());
  Impl& im = *vm->impl_;
  im.device = device;
  im.memory = &memory;
  im.kvm_fd = OpenChecked(device);
  const int run_size = ioctl(im.kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (run_size <= 0) Fail(fmt::format("KVM_GET_VCPU_MMAP_SIZE failed: {}", Errno()));
  im.run_mmap_size = static_cast<size_t>(run_size);

  im.vm_fd = ioctl(im.kvm_fd, KVM_CREATE_VM, 0);
  if (im.vm_fd < 0) Fail(fmt::format("KVM_CREATE_VM on {} failed: {}", device, Errno()));
  if (ioctl(im.vm_fd, KVM_SET_TSS_ADDR, kTssAddr) < 0)
    Fail(fmt::format("KVM_SET_TSS_ADDR failed: {}", Errno()));
  uint64_t identity_map = kIdentityMapAddr;
  if (ioctl(im.kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0 &&
      ioctl(im.vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity_map) < 0)
    Fail(fmt::format("KVM_SET_IDENTITY_MAP_ADDR failed: {}", Errno()));

  // Guest RAM: the same host mapping the translator uses (host_base + gpa for both parts).
  const uint64_t low = std::min(memory.ram_size(), kLowRamLimit);
  const uint64_t high = memory.ram_size() - low;
  struct Slot {
    uint64_t gpa, size;
  };
  const Slot slots[] = {{0, low}, {kHighRamStart, high}};
  uint32_t slot_id = 0;
  for (const Slot& s : slots) {
    if (!s.size) continue;
    kvm_userspace_memory_region region{};
    region.slot = slot_id++;
    region.guest_phys_addr = s.gpa;
    region.memory_size = s.size;
    region.userspace_addr = reinterpret_cast<uint64_t>(memory.host_base() + s.gpa);
    if (ioctl(im.vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
      Fail(fmt::format("KVM_SET_USER_MEMORY_REGION ({:#x} bytes at {:#x}) failed: {}", s.size,
                       s.gpa, Errno()));
  }

  // MSRs KVM refuses or does not know, and the ones the filter denies, exit to rove.
  kvm_enable_cap cap{};
  cap.cap = KVM_CAP_X86_USER_SPACE_MSR;
  cap.args[0] =
      KVM_MSR_EXIT_REASON_FILTER | KVM_MSR_EXIT_REASON_UNKNOWN | KVM_MSR_EXIT_REASON_INVAL;
  if (ioctl(im.vm_fd, KVM_ENABLE_CAP, &cap) < 0)
    Fail(fmt::format("enabling KVM_CAP_X86_USER_SPACE_MSR failed: {}", Errno()));
  // The local APIC is rove's (no in-kernel irqchip): IA32_APIC_BASE, TSC_DEADLINE and the
  // x2APIC range go to its model. A zero bitmap bit denies the MSR, which makes it exit.
  static uint8_t deny_bitmap[256 / 8] = {};
  kvm_msr_filter filter{};
  filter.flags = KVM_MSR_FILTER_DEFAULT_ALLOW;
  const uint32_t denied[][2] = {{msr::kApicBase, 1}, {msr::kTscDeadline, 1}, {0x800, 256}};
  for (size_t i = 0; i < std::size(denied); ++i) {
    filter.ranges[i].flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE;
    filter.ranges[i].base = denied[i][0];
    filter.ranges[i].nmsrs = denied[i][1];
    filter.ranges[i].bitmap = deny_bitmap;
  }
  if (ioctl(im.vm_fd, KVM_X86_SET_MSR_FILTER, &filter) < 0)
    Fail(fmt::format("KVM_X86_SET_MSR_FILTER failed: {}", Errno()));

  // What CPUID KVM can present.
  for (uint32_t n = 128; n <= 4096; n *= 2) {
    std::vector<uint8_t> buf(kvm_abi::kCpuidHeader + n * sizeof(kvm_cpuid_entry2));
    std::memcpy(buf.data(), &n, 4);
    if (ioctl(im.kvm_fd, kvm_abi::kGetSupportedCpuid, buf.data()) == 0) {
      uint32_t got = 0;
      std::memcpy(&got, buf.data(), 4);
      im.supported_cpuid.resize(got);
      std::memcpy(im.supported_cpuid.data(), buf.data() + kvm_abi::kCpuidHeader,
                  got * sizeof(kvm_cpuid_entry2));
      break;
    }
    if (errno != E2BIG) Fail(fmt::format("KVM_GET_SUPPORTED_CPUID failed: {}", Errno()));
  }
  if (im.supported_cpuid.empty()) Fail("KVM_GET_SUPPORTED_CPUID returned nothing");

  // Which MSRs KVM saves and restores.
  for (uint32_t n = 256; n <= 16384; n *= 2) {
    std::vector<uint8_t> buf(kvm_abi::kMsrListHeader + n * sizeof(uint32_t));
    std::memcpy(buf.data(), &n, 4);
    if (ioctl(im.kvm_fd, kvm_abi::kGetMsrIndexList, buf.data()) == 0) {
      uint32_t got = 0;
      std::memcpy(&got, buf.data(), 4);
      im.msr_indices.resize(got);
      std::memcpy(im.msr_indices.data(), buf.data() + kvm_abi::kMsrListHeader, got * 4);
      std::sort(im.msr_indices.begin(), im.msr_indices.end());
      break;
    }
    if (errno != E2BIG) Fail(fmt::format("KVM_GET_MSR_INDEX_LIST failed: {}", Errno()));
  }
  return vm;
}

std::string KvmUnusableReason(const std::string& device) {
  try {
    Fd kvm(OpenChecked(device));
    Fd vm(ioctl(kvm.get(), KVM_CREATE_VM, 0));
    if (vm.get() < 0) return fmt::format("KVM_CREATE_VM on {} failed: {}", device, Errno());
    return "";
  } catch (const KvmUnavailable& e) {
    return e.what();
  }
}

}  // namespace rove
