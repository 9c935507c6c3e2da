// A vCPU: its core (state, model, clock, interrupt controllers, INIT/SIPI) and the accelerator
// that runs it. The BT accelerator always exists (its translations are flushed when it takes a
// vCPU back); the KVM one is created on the first switch to KVM and kept, because KVM cannot
// destroy a single vCPU.
#include "rove/engine/vcpu.h"

#include <optional>
#include <stdexcept>

#include "accel/bt_accelerator.h"
#include "accel/kvm_accelerator.h"
#include "accel/vcpu_core.h"
#include "rove/devices/device_state.h"
#include "rove/engine/snapshot.h"

namespace rove {

struct Vcpu::Impl {
  Impl(GuestMemory& memory, IoPorts& io, int index, GuestClock* clock, int cpu_count)
      : core(memory, io, index, clock, cpu_count), bt(core) {}

  VcpuCore core;
  BtAccelerator bt;
  std::unique_ptr<KvmAccelerator> kvm;
  Accelerator* active = &bt;
  std::atomic<bool> running{false};
};

Vcpu::Vcpu(GuestMemory& memory, IoPorts& io, int index, GuestClock* clock, int cpu_count)
    : impl_(std::make_unique<Impl>(memory, io, index, clock, cpu_count)) {}

Vcpu::~Vcpu() = default;

void Vcpu::SetPeers(const std::vector<Vcpu*>& peers) {
  std::vector<BtCpu*> bts;
  for (Vcpu* v : peers) bts.push_back(&v->impl_->bt.bt());
  impl_->bt.bt().SetPeers(bts);
}

void Vcpu::NotifyCodeWrite(uint64_t page_gpa) {
  impl_->bt.bt().NotifyCodeWrite(page_gpa);
}

void Vcpu::SetWaitForStartup(bool wait) {
  std::lock_guard lock(impl_->core.mu);
  impl_->core.waiting_for_sipi = wait;
}

void Vcpu::Startup(bool init, uint8_t vector) {
  VcpuCore& core = impl_->core;
  {
    std::lock_guard lock(core.mu);
    if (init) {
      core.pending_init = true;
    } else if (core.waiting_for_sipi || core.pending_init) {
      core.pending_sipi = vector;
    }
    core.woken = true;
  }
  impl_->active->Kick();
  core.cv.notify_all();
}

CpuState& Vcpu::state() {
  return impl_->core.state;
}

StopInfo Vcpu::Run(uint64_t max_guest_exits) {
  impl_->running.store(true);
  struct Clear {
    std::atomic<bool>& flag;
    ~Clear() { flag.store(false); }
  } clear{impl_->running};
  return impl_->active->Run(max_guest_exits);
}

void Vcpu::RequestStop() {
  impl_->core.stop_requested.store(true);
  impl_->active->Kick();
  impl_->core.SetWoken();
}

void Vcpu::AttachPlatform(VcpuInterrupts* interrupts, unsigned cpu_index, PlatformHooks* hooks) {
  impl_->core.interrupts = interrupts;
  impl_->core.cpu_index = cpu_index;
  impl_->core.hooks = hooks;
  impl_->bt.emulator().SetPlatformHooks(hooks);
}

void Vcpu::Wake() {
  impl_->active->Kick();
  impl_->core.SetWoken();
}

void Vcpu::SetAccelerator(AccelKind kind, KvmVm* vm) {
  if (impl_->running.load())
    throw std::logic_error("Vcpu::SetAccelerator called while the vCPU is running");
  if (kind == impl_->active->kind()) return;
  switch (kind) {
    case AccelKind::kBt:
      impl_->active = &impl_->bt;
      break;
    case AccelKind::kKvm:
      if (!impl_->kvm) {
        if (!vm) throw std::invalid_argument("Vcpu::SetAccelerator(kKvm) needs a KvmVm");
        impl_->kvm = std::make_unique<KvmAccelerator>(impl_->core, *vm);
      }
      impl_->active = impl_->kvm.get();
      break;
  }
  impl_->active->TakeOver();
}

AccelKind Vcpu::accelerator() const {
  return impl_->active->kind();
}

namespace {
constexpr uint32_t kVcpuRecord = StateTag("VCPU");
constexpr uint32_t kVcpuRecordVersion = 1;
}  // namespace

void Vcpu::SaveState(StateWriter& out) const {
  if (impl_->running.load()) throw std::logic_error("Vcpu::SaveState while the vCPU is running");
  VcpuCore& core = impl_->core;
  std::lock_guard lock(core.mu);
  const size_t record = out.BeginRecord(kVcpuRecord, kVcpuRecordVersion);
  WriteCpuState(out, core.state, core.clock.ReadTsc(core.state));
  out.Bool(core.waiting_for_sipi);
  out.Bool(core.pending_init);
  out.U32(static_cast<uint32_t>(core.pending_sipi));  // -1: none
  out.U32(static_cast<uint32_t>(core.pending_external_vector));
  out.Bool(core.pending_exception.has_value());
  const GuestException e = core.pending_exception.value_or(GuestException{});
  out.U8(e.vector);
  out.Bool(e.has_error_code);
  out.U32(e.error_code);
  out.U64(e.cr2);
  out.EndRecord(record);
}

namespace {

struct VcpuRecord {
  CpuState state;
  uint64_t guest_tsc = 0;
  bool waiting_for_sipi = false;
  bool pending_init = false;
  int32_t pending_sipi = -1;
  int32_t pending_vector = -1;
  std::optional<GuestException> pending_exception;
};

VcpuRecord ParseVcpuRecord(StateReader& in) {
  StateReader r = in.ReadRecord(kVcpuRecord, kVcpuRecordVersion);
  VcpuRecord v;
  ReadCpuState(r, v.state, v.guest_tsc);
  v.waiting_for_sipi = r.Bool("waiting for SIPI");
  v.pending_init = r.Bool("pending INIT");
  v.pending_sipi = static_cast<int32_t>(r.U32("pending SIPI"));
  v.pending_vector = static_cast<int32_t>(r.U32("pending external vector"));
  if (v.pending_sipi < -1 || v.pending_sipi > 255) r.Fail("invalid pending SIPI vector");
  if (v.pending_vector < -1 || v.pending_vector > 255) r.Fail("invalid pending interrupt vector");
  const bool has_exception = r.Bool("pending exception");
  GuestException e;
  e.vector = r.U8Max(31, "pending exception vector");
  e.has_error_code = r.Bool("pending exception error code flag");
  e.error_code = r.U32("pending exception error code");
  e.cr2 = r.U64("pending exception CR2");
  r.ExpectEnd();
  if (has_exception) v.pending_exception = e;
  return v;
}

}  // namespace

void Vcpu::CheckState(StateReader& in) {
  ParseVcpuRecord(in);
}

void Vcpu::LoadState(StateReader& in) {
  if (impl_->running.load()) throw std::logic_error("Vcpu::LoadState while the vCPU is running");
  const VcpuRecord v = ParseVcpuRecord(in);
  VcpuCore& core = impl_->core;
  std::lock_guard lock(core.mu);
  core.state = v.state;
  core.clock.WriteTsc(core.state, v.guest_tsc);  // continue the TSC on this machine's clock
  core.waiting_for_sipi = v.waiting_for_sipi;
  core.pending_init = v.pending_init;
  core.pending_sipi = v.pending_sipi;
  core.pending_external_vector = v.pending_vector;
  core.pending_exception = v.pending_exception;
  // Guest memory was replaced underneath any translations.
  impl_->active->TakeOver();
}

const VcpuStats& Vcpu::stats() const {
  const BtStats& b = impl_->bt.bt().stats();
  VcpuStats& s = impl_->core.stats;
  s.blocks_translated = b.blocks_translated;
  s.instructions_translated = b.instructions_translated;
  s.code_flushes = b.cache_flushes;
  s.tlb_misses = b.tlb_misses;
  s.counted_loops = b.counted_loops;
  s.loop_fast_entries = b.loop_fast_entries;
  s.kvm_exits = impl_->kvm ? impl_->kvm->exits() : 0;
  return s;
}

std::vector<std::pair<std::string, uint64_t>> Vcpu::EmulatedProfile(size_t top_n) const {
  return impl_->bt.emulator().EmulatedProfile(top_n);
}

uint64_t Vcpu::ReadTsc() const {
  return impl_->core.clock.ReadTsc(impl_->core.state);
}

uint64_t Vcpu::tsc_hz() const {
  return impl_->core.clock.tsc_hz();
}

}  // namespace rove
