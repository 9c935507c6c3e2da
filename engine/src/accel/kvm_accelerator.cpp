// The KVM vCPU loop and the translation between CpuState and KVM's vCPU state.
#include "kvm_accelerator.h"

#include <errno.h>
#include <fmt/core.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cstring>
#include <mutex>
#include <vector>

#include "rove/engine/msr.h"

namespace rove {

namespace {

// The signal that kicks a vCPU thread out of KVM_RUN (with immediate_exit set, so a kick that
// lands just before KVM_RUN is not lost). Its handler does nothing.
int KickSignal() {
  static const int sig = [] {
    const int s = SIGRTMIN + 5;
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sigaction(s, &sa, nullptr);
    return s;
  }();
  return sig;
}

[[noreturn]] void Fail(const std::string& what) {
  throw KvmUnavailable(fmt::format("{}: {}", what, std::strerror(errno)));
}

void Ioctl(int fd, unsigned long request, void* arg, const char* name) {
  if (ioctl(fd, request, arg) < 0) Fail(name);
}

kvm_segment ToKvm(const SegmentCache& s) {
  kvm_segment k{};
  k.base = s.base;
  k.limit = s.limit;
  k.selector = s.selector;
  k.type = s.attr & seg_attr::kTypeMask;
  k.s = (s.attr & seg_attr::kS) ? 1 : 0;
  k.dpl = (s.attr >> seg_attr::kDplShift) & 3;
  k.present = (s.attr & seg_attr::kP) ? 1 : 0;
  k.avl = (s.attr & seg_attr::kAvl) ? 1 : 0;
  k.l = (s.attr & seg_attr::kL) ? 1 : 0;
  k.db = (s.attr & seg_attr::kDb) ? 1 : 0;
  k.g = (s.attr & seg_attr::kG) ? 1 : 0;
  k.unusable = (s.attr & seg_attr::kUnusable) ? 1 : 0;
  return k;
}

SegmentCache FromKvm(const kvm_segment& k) {
  SegmentCache s;
  s.base = k.base;
  s.limit = k.limit;
  s.selector = k.selector;
  s.attr = (k.type & seg_attr::kTypeMask) | (k.s ? seg_attr::kS : 0) |
           (uint32_t{k.dpl & 3u} << seg_attr::kDplShift) | (k.present ? seg_attr::kP : 0) |
           (k.avl ? seg_attr::kAvl : 0) | (k.l ? seg_attr::kL : 0) | (k.db ? seg_attr::kDb : 0) |
           (k.g ? seg_attr::kG : 0) | (k.unusable ? seg_attr::kUnusable : 0);
  return s;
}

// The MSRs CpuState keeps that KVM holds while it runs the guest (the local APIC's are the
// APIC model's; FS/GS base travel with the segments, EFER with the special registers).
struct MsrSlot {
  uint32_t index;
  uint64_t MsrState::*field;
};
constexpr MsrSlot kPlainMsrs[] = {
    {msr::kStar, &MsrState::star},
    {msr::kLstar, &MsrState::lstar},
    {msr::kCstar, &MsrState::cstar},
    {msr::kSfmask, &MsrState::sfmask},
    {msr::kKernelGsBase, &MsrState::kernel_gs_base},
    {msr::kSysenterCs, &MsrState::sysenter_cs},
    {msr::kSysenterEsp, &MsrState::sysenter_esp},
    {msr::kSysenterEip, &MsrState::sysenter_eip},
    {msr::kTscAux, &MsrState::tsc_aux},
    {msr::kPat, &MsrState::pat},
    {msr::kMiscEnable, &MsrState::misc_enable},
    {msr::kSpecCtrl, &MsrState::spec_ctrl},
    {msr::kMtrrDefType, &MsrState::mtrr_def_type},
    {msr::kXss, &MsrState::xss},
};
constexpr uint32_t kFixedMtrrs[11] = {0x250, 0x258, 0x259, 0x268, 0x269, 0x26A,
                                      0x26B, 0x26C, 0x26D, 0x26E, 0x26F};

// Every (MSR, CpuState field) pair KVM knows.
std::vector<std::pair<uint32_t, uint64_t*>> MsrFields(CpuState& st, const KvmVm::Impl& vm) {
  std::vector<std::pair<uint32_t, uint64_t*>> out;
  for (const MsrSlot& m : kPlainMsrs) out.emplace_back(m.index, &(st.msr.*m.field));
  for (int i = 0; i < 11; ++i) out.emplace_back(kFixedMtrrs[i], &st.msr.mtrr_fixed[i]);
  for (uint32_t i = 0; i < 16; ++i) out.emplace_back(msr::kMtrrPhysBase0 + i, &st.msr.mtrr_var[i]);
  std::erase_if(out, [&](const auto& p) { return !vm.HasMsr(p.first); });
  return out;
}

// struct kvm_msrs with the C layout (see kvm_abi).
struct MsrBuffer {
  explicit MsrBuffer(size_t n) : words((kvm_abi::kMsrsHeader + n * sizeof(kvm_msr_entry)) / 8) {
    const auto count = static_cast<uint32_t>(n);
    std::memcpy(words.data(), &count, 4);
  }
  kvm_msr_entry* entries() {
    return reinterpret_cast<kvm_msr_entry*>(reinterpret_cast<uint8_t*>(words.data()) +
                                            kvm_abi::kMsrsHeader);
  }
  void* data() { return words.data(); }
  std::vector<uint64_t> words;  // 8-byte aligned
};

// CPUID leaves whose feature bits must be ones KVM can give the guest.
bool IsFeatureLeaf(uint32_t leaf) {
  return leaf == 1 || leaf == 6 || leaf == 7 || leaf == 0xD || leaf == 0x14 || leaf == 0x80000001 ||
         leaf == 0x80000007;
}

}  // namespace

KvmAccelerator::KvmAccelerator(VcpuCore& core, KvmVm& vm) : core_(core), vm_(vm.impl()) {
  KickSignal();
  fd_ = vm_.VcpuFd(core.index);
  void* p = mmap(nullptr, vm_.run_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) Fail("mapping the KVM vCPU's kvm_run");
  run_ = static_cast<kvm_run*>(p);
  SetCpuid();
}

KvmAccelerator::~KvmAccelerator() {
  if (run_) munmap(run_, vm_.run_mmap_size);
}

void KvmAccelerator::SetCpuid() {
  // The guest sees rove's CPU model, restricted to what KVM can run. The dynamic bits
  // (OSXSAVE, APIC enable, XSAVE sizes of the current XCR0) KVM keeps up to date itself.
  CpuState reset;
  ResetCpuState(reset);
  std::vector<kvm_cpuid_entry2> entries;
  for (const kvm_cpuid_entry2& sup : vm_.supported_cpuid) {
    if (sup.function >= 0x40000000 && sup.function <= 0x4FFFFFFF) continue;  // KVM's PV leaves
    kvm_cpuid_entry2 e = sup;
    const CpuidResult m = core_.model.Query(sup.function, sup.index, reset);
    if (IsFeatureLeaf(sup.function)) {
      e.eax = sup.function == 7 && sup.index == 0 ? std::min(m.eax, sup.eax) : (m.eax & sup.eax);
      e.ebx = m.ebx & sup.ebx;
      e.ecx = m.ecx & sup.ecx;
      e.edx = m.edx & sup.edx;
      if (sup.function == 1) {
        // Leaf 1 EAX is the signature and EBX the APIC ID: the model's. The local APIC, its
        // TSC-deadline mode and x2APIC are rove's model, not KVM's; the hypervisor bit is ours.
        e.eax = m.eax;
        e.ebx = m.ebx;
        constexpr uint32_t kModelEcx = (1u << 21) | (1u << 24) | (1u << 31);
        e.ecx = (e.ecx & ~kModelEcx) | (m.ecx & kModelEcx);
        e.edx = (e.edx & ~(1u << 9)) | (m.edx & (1u << 9));
      }
      if (sup.function == 0xD && sup.index != 1) {  // sizes and offsets: the model's
        e.ebx = m.ebx;
        e.ecx = m.ecx;
      }
    } else {
      e.eax = m.eax;
      e.ebx = m.ebx;
      e.ecx = m.ecx;
      e.edx = m.edx;
    }
    entries.push_back(e);
  }
  // The model's hypervisor leaves.
  const CpuidResult hv = core_.model.Query(0x40000000, 0, reset);
  if (hv.eax >= 0x40000000 && hv.eax < 0x40000100) {
    for (uint32_t leaf = 0x40000000; leaf <= hv.eax; ++leaf) {
      const CpuidResult m = core_.model.Query(leaf, 0, reset);
      kvm_cpuid_entry2 e{};
      e.function = leaf;
      e.eax = m.eax;
      e.ebx = m.ebx;
      e.ecx = m.ecx;
      e.edx = m.edx;
      entries.push_back(e);
    }
  }
  std::vector<uint8_t> buf(kvm_abi::kCpuidHeader + entries.size() * sizeof(kvm_cpuid_entry2));
  const auto count = static_cast<uint32_t>(entries.size());
  std::memcpy(buf.data(), &count, 4);
  std::memcpy(buf.data() + kvm_abi::kCpuidHeader, entries.data(),
              entries.size() * sizeof(kvm_cpuid_entry2));
  Ioctl(fd_, kvm_abi::kSetCpuid2, buf.data(), "KVM_SET_CPUID2");
}

void KvmAccelerator::LoadState() {
  CpuState& st = core_.state;

  kvm_sregs sregs{};
  Ioctl(fd_, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
  kvm_segment* segs[kSegCount] = {&sregs.es, &sregs.cs, &sregs.ss, &sregs.ds, &sregs.fs, &sregs.gs};
  for (int i = 0; i < kSegCount; ++i) *segs[i] = ToKvm(st.seg[i]);
  sregs.ldt = ToKvm(st.ldtr);
  sregs.tr = ToKvm(st.tr);
  sregs.gdt.base = st.gdtr.base;
  sregs.gdt.limit = static_cast<uint16_t>(st.gdtr.limit);
  sregs.idt.base = st.idtr.base;
  sregs.idt.limit = static_cast<uint16_t>(st.idtr.limit);
  sregs.cr0 = st.cr0;
  sregs.cr2 = st.cr2;
  sregs.cr3 = st.cr3;
  sregs.cr4 = st.cr4;
  sregs.cr8 = core_.hooks ? core_.hooks->ReadCr8() : st.cr8;
  sregs.efer = st.efer;
  bool gp = false;
  std::optional<uint64_t> apic_base;
  if (core_.hooks) apic_base = core_.hooks->ReadMsr(msr::kApicBase, gp);
  sregs.apic_base = apic_base.value_or(st.msr.apic_base);
  apic_base_fallback_ = st.msr.apic_base;
  std::memset(sregs.interrupt_bitmap, 0, sizeof(sregs.interrupt_bitmap));
  Ioctl(fd_, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");

  kvm_regs regs{};
  __u64* gprs[kGprCount] = {&regs.rax, &regs.rcx, &regs.rdx, &regs.rbx, &regs.rsp, &regs.rbp,
                            &regs.rsi, &regs.rdi, &regs.r8,  &regs.r9,  &regs.r10, &regs.r11,
                            &regs.r12, &regs.r13, &regs.r14, &regs.r15};
  for (int i = 0; i < kGprCount; ++i) *gprs[i] = st.gpr[i];
  regs.rip = st.rip;
  regs.rflags = st.rflags | rflags::kFixed1;
  Ioctl(fd_, KVM_SET_REGS, &regs, "KVM_SET_REGS");

  kvm_xcrs xcrs{};
  xcrs.nr_xcrs = 1;
  xcrs.xcrs[0].xcr = 0;
  xcrs.xcrs[0].value = st.xcr0;
  Ioctl(fd_, KVM_SET_XCRS, &xcrs, "KVM_SET_XCRS");

  static_assert(kvm_abi::kXsaveSize == kXsaveAreaSize);
  Ioctl(fd_, kvm_abi::kSetXsave, st.xsave, "KVM_SET_XSAVE");

  kvm_debugregs dbg{};
  for (int i = 0; i < 4; ++i) dbg.db[i] = st.dr[i];
  dbg.dr6 = st.dr[6];
  dbg.dr7 = st.dr[7];
  Ioctl(fd_, KVM_SET_DEBUGREGS, &dbg, "KVM_SET_DEBUGREGS");

  // MSRs, and the TSC continuing from the guest clock's value.
  auto fields = MsrFields(st, vm_);
  MsrBuffer buf(fields.size() + 1);
  for (size_t i = 0; i < fields.size(); ++i) {
    buf.entries()[i].index = fields[i].first;
    buf.entries()[i].data = *fields[i].second;
  }
  buf.entries()[fields.size()].index = msr::kTsc;
  buf.entries()[fields.size()].data = core_.clock.ReadTsc(st);
  const int set = ioctl(fd_, kvm_abi::kSetMsrs, buf.data());
  if (set < 0) Fail("KVM_SET_MSRS");
  if (static_cast<size_t>(set) != fields.size() + 1) {
    errno = EINVAL;
    Fail(fmt::format("KVM_SET_MSRS refused MSR {:#x} (value {:#x})", buf.entries()[set].index,
                     buf.entries()[set].data));
  }

  // Interrupt shadow, and an event the other accelerator had accepted but not delivered.
  kvm_vcpu_events ev{};
  Ioctl(fd_, KVM_GET_VCPU_EVENTS, &ev, "KVM_GET_VCPU_EVENTS");
  ev.flags = KVM_VCPUEVENT_VALID_SHADOW;
  ev.interrupt.shadow = 0;
  if (st.interrupt_shadow)
    ev.interrupt.shadow =
        (st.rflags & rflags::kIf) ? KVM_X86_SHADOW_INT_STI : KVM_X86_SHADOW_INT_MOV_SS;
  ev.interrupt.injected = 0;
  ev.exception.injected = 0;
  ev.exception.pending = 0;
  if (core_.pending_exception) {
    const GuestException& e = *core_.pending_exception;
    ev.exception.injected = 1;
    ev.exception.nr = e.vector;
    ev.exception.has_error_code = e.has_error_code;
    ev.exception.error_code = e.error_code;
    core_.pending_exception.reset();
  } else if (core_.pending_external_vector >= 0) {
    ev.interrupt.injected = 1;
    ev.interrupt.nr = static_cast<uint8_t>(core_.pending_external_vector);
    ev.interrupt.soft = 0;
    core_.pending_external_vector = -1;
  }
  Ioctl(fd_, KVM_SET_VCPU_EVENTS, &ev, "KVM_SET_VCPU_EVENTS");

  halted_ = st.halted;
  if_flag_ = (st.rflags & rflags::kIf) != 0;
  entered_ = false;
}

void KvmAccelerator::SaveState() {
  CpuState& st = core_.state;

  kvm_regs regs{};
  Ioctl(fd_, KVM_GET_REGS, &regs, "KVM_GET_REGS");
  const uint64_t gprs[kGprCount] = {regs.rax, regs.rcx, regs.rdx, regs.rbx, regs.rsp, regs.rbp,
                                    regs.rsi, regs.rdi, regs.r8,  regs.r9,  regs.r10, regs.r11,
                                    regs.r12, regs.r13, regs.r14, regs.r15};
  for (int i = 0; i < kGprCount; ++i) st.gpr[i] = gprs[i];
  st.rip = regs.rip;
  st.rflags = regs.rflags;

  kvm_sregs sregs{};
  Ioctl(fd_, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
  const kvm_segment* segs[kSegCount] = {&sregs.es, &sregs.cs, &sregs.ss,
                                        &sregs.ds, &sregs.fs, &sregs.gs};
  for (int i = 0; i < kSegCount; ++i) st.seg[i] = FromKvm(*segs[i]);
  st.ldtr = FromKvm(sregs.ldt);
  st.tr = FromKvm(sregs.tr);
  st.gdtr.base = sregs.gdt.base;
  st.gdtr.limit = sregs.gdt.limit;
  st.idtr.base = sregs.idt.base;
  st.idtr.limit = sregs.idt.limit;
  st.cr0 = sregs.cr0;
  st.cr2 = sregs.cr2;
  st.cr3 = sregs.cr3;
  st.cr4 = sregs.cr4;
  st.cr8 = sregs.cr8;
  st.efer = sregs.efer;
  if (!core_.hooks) st.msr.apic_base = apic_base_fallback_;

  kvm_xcrs xcrs{};
  Ioctl(fd_, KVM_GET_XCRS, &xcrs, "KVM_GET_XCRS");
  for (uint32_t i = 0; i < xcrs.nr_xcrs; ++i)
    if (xcrs.xcrs[i].xcr == 0) st.xcr0 = xcrs.xcrs[i].value;

  Ioctl(fd_, kvm_abi::kGetXsave, st.xsave, "KVM_GET_XSAVE");

  kvm_debugregs dbg{};
  Ioctl(fd_, KVM_GET_DEBUGREGS, &dbg, "KVM_GET_DEBUGREGS");
  for (int i = 0; i < 4; ++i) st.dr[i] = dbg.db[i];
  st.dr[6] = dbg.dr6;
  st.dr[7] = dbg.dr7;

  auto fields = MsrFields(st, vm_);
  MsrBuffer buf(fields.size() + 1);
  for (size_t i = 0; i < fields.size(); ++i) buf.entries()[i].index = fields[i].first;
  buf.entries()[fields.size()].index = msr::kTsc;
  const int got = ioctl(fd_, kvm_abi::kGetMsrs, buf.data());
  if (got < 0) Fail("KVM_GET_MSRS");
  for (int i = 0; i < got && static_cast<size_t>(i) < fields.size(); ++i)
    *fields[i].second = buf.entries()[i].data;
  if (static_cast<size_t>(got) == fields.size() + 1)
    st.msr.tsc_offset = buf.entries()[fields.size()].data - core_.clock.BaseTsc();

  kvm_vcpu_events ev{};
  Ioctl(fd_, KVM_GET_VCPU_EVENTS, &ev, "KVM_GET_VCPU_EVENTS");
  st.interrupt_shadow = ev.interrupt.shadow != 0;
  if (ev.exception.injected || ev.exception.pending) {
    GuestException e;
    e.vector = ev.exception.nr;
    e.has_error_code = ev.exception.has_error_code;
    e.error_code = ev.exception.error_code;
    e.cr2 = st.cr2;
    core_.pending_exception = e;
  } else if (ev.interrupt.injected && !ev.interrupt.soft) {
    core_.pending_external_vector = ev.interrupt.nr;
  }
  st.halted = halted_;
}

void KvmAccelerator::Kick() {
  __atomic_store_n(&run_->immediate_exit, 1, __ATOMIC_SEQ_CST);
  std::lock_guard lock(kick_mu_);
  if (in_run_) pthread_kill(thread_, KickSignal());
}

void KvmAccelerator::HandleIo() {
  auto* data = reinterpret_cast<uint8_t*>(run_) + run_->io.data_offset;
  const unsigned size = run_->io.size;
  for (uint32_t i = 0; i < run_->io.count; ++i, data += size) {
    if (run_->io.direction == KVM_EXIT_IO_OUT) {
      uint32_t v = 0;
      std::memcpy(&v, data, size);
      core_.io.Out(run_->io.port, size, v);
    } else {
      const uint32_t v = core_.io.In(run_->io.port, size);
      std::memcpy(data, &v, size);
    }
  }
}

void KvmAccelerator::HandleMmio() {
  // Not RAM (KVM handles RAM itself): GuestMemory routes it to the machine's MMIO handler (the
  // local APIC page, then the MMIO bus), exactly as the BT slow path does.
  const unsigned len = std::min<unsigned>(run_->mmio.len, sizeof(run_->mmio.data));
  if (run_->mmio.is_write)
    core_.memory.Write(run_->mmio.phys_addr, run_->mmio.data, len);
  else
    core_.memory.Read(run_->mmio.phys_addr, run_->mmio.data, len);
}

void KvmAccelerator::HandleMsr(bool write) {
  const uint32_t index = run_->msr.index;
  bool gp = false;
  bool handled = false;
  if (core_.hooks) {
    if (write) {
      handled = core_.hooks->WriteMsr(index, run_->msr.data, gp);
    } else if (auto v = core_.hooks->ReadMsr(index, gp)) {
      run_->msr.data = *v;
      handled = true;
    }
  } else if (index == msr::kApicBase) {
    // A bare vCPU (no machine): IA32_APIC_BASE is a plain register, as in the BT emulator.
    if (write)
      apic_base_fallback_ = run_->msr.data;
    else
      run_->msr.data = apic_base_fallback_;
    handled = true;
  }
  run_->msr.error = (handled && !gp) ? 0 : 1;
}

std::string KvmAccelerator::Describe(const char* what) {
  kvm_regs regs{};
  kvm_sregs sregs{};
  ioctl(fd_, KVM_GET_REGS, &regs);
  ioctl(fd_, KVM_GET_SREGS, &sregs);
  return fmt::format(
      "{} (KVM) at cs:rip {:#x}:{:#x} rsp {:#x} rflags {:#x} cr0 {:#x} cr3 {:#x} cr4 {:#x} "
      "efer {:#x}",
      what, sregs.cs.selector, regs.rip, regs.rsp, regs.rflags, sregs.cr0, sregs.cr3, sregs.cr4,
      sregs.efer);
}

StopInfo KvmAccelerator::Run(uint64_t max_guest_exits) {
  VcpuCore& core = core_;
  {
    std::lock_guard lock(kick_mu_);
    thread_ = pthread_self();
    in_run_ = true;
  }
  struct Leave {
    KvmAccelerator& a;
    ~Leave() {
      std::lock_guard lock(a.kick_mu_);
      a.in_run_ = false;
    }
  } leave{*this};

  LoadState();
  uint64_t exits = 0;
  StopInfo stop;
  bool finished = false;
  while (!finished) {
    if (core.stop_requested.load()) {
      core.stop_requested.store(false);
      stop = StopInfo{StopReason::kStopRequested, {}};
      break;
    }
    if (max_guest_exits && exits++ >= max_guest_exits) {
      stop = StopInfo{StopReason::kInstructionLimit, {}};
      break;
    }
    // Clear the kick before looking at the controllers: a wake after this point re-arms it.
    __atomic_store_n(&run_->immediate_exit, 0, __ATOMIC_SEQ_CST);
    bool state_replaced = false;
    const bool started = core.HandleStartup(&state_replaced);
    if (state_replaced) LoadState();
    if (!started) continue;

    if (core.interrupts) {
      if (core.interrupts->TakeNmi(core.cpu_index)) {
        Ioctl(fd_, KVM_NMI, nullptr, "KVM_NMI");
        core.stats.interrupts++;
        halted_ = false;
      }
      run_->request_interrupt_window = 0;
      if (core.interrupts->HasInterrupt(core.cpu_index)) {
        // Before the first exit kvm_run's flags are stale: IF from the loaded state decides.
        const bool can_inject = entered_ ? (run_->ready_for_interrupt_injection && if_flag_)
                                         : (if_flag_ && !core.state.interrupt_shadow);
        if (can_inject) {
          if (auto vector = core.interrupts->AcknowledgeInterrupt(core.cpu_index)) {
            kvm_interrupt irq{};
            irq.irq = *vector;
            Ioctl(fd_, KVM_INTERRUPT, &irq, "KVM_INTERRUPT");
            core.stats.interrupts++;
            halted_ = false;
          }
        } else {
          run_->request_interrupt_window = 1;
        }
      }
    }
    if (halted_) {
      // HLT with interrupts disabled ends the run, as under BT.
      if (!core.interrupts || !if_flag_) {
        stop = StopInfo{StopReason::kHalted, {}};
        break;
      }
      core.WaitWhileHalted();
      continue;
    }

    const uint64_t cr8_before = core.hooks ? core.hooks->ReadCr8() : 0;
    if (core.hooks) run_->cr8 = cr8_before;
    const int r = ioctl(fd_, KVM_RUN, 0);
    exits_++;
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      Fail("KVM_RUN");
    }
    entered_ = true;
    if_flag_ = run_->if_flag != 0;
    if (core.hooks && run_->cr8 != cr8_before) core.hooks->WriteCr8(run_->cr8);
    switch (run_->exit_reason) {
      case KVM_EXIT_IO:
        HandleIo();
        break;
      case KVM_EXIT_MMIO:
        HandleMmio();
        break;
      case KVM_EXIT_X86_RDMSR:
        HandleMsr(false);
        break;
      case KVM_EXIT_X86_WRMSR:
        HandleMsr(true);
        break;
      case KVM_EXIT_HLT:
        halted_ = true;
        break;
      case KVM_EXIT_IRQ_WINDOW_OPEN:
      case KVM_EXIT_INTR:
      case KVM_EXIT_SET_TPR:
        break;
      case KVM_EXIT_SHUTDOWN:
        stop = StopInfo{StopReason::kShutdown, Describe("triple fault")};
        finished = true;
        break;
      case KVM_EXIT_FAIL_ENTRY:
        stop = StopInfo{StopReason::kShutdown,
                        Describe(fmt::format("KVM entry failed, hardware reason {:#x}",
                                             run_->fail_entry.hardware_entry_failure_reason)
                                     .c_str())};
        finished = true;
        break;
      case KVM_EXIT_INTERNAL_ERROR:
        stop = StopInfo{
            StopReason::kShutdown,
            Describe(
                fmt::format("KVM internal error, suberror {}", run_->internal.suberror).c_str())};
        finished = true;
        break;
      default:
        stop = StopInfo{StopReason::kShutdown,
                        Describe(fmt::format("unexpected KVM exit {}", run_->exit_reason).c_str())};
        finished = true;
        break;
    }
  }
  SaveState();
  return stop;
}

}  // namespace rove
