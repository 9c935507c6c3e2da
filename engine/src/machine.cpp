// The PC machine: guest RAM, the PC devices on the buses, the kernel loaded with ACPI tables,
// and one host thread per vCPU.
#include "rove/engine/machine.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "rove/devices/bus.h"
#include "rove/devices/device_manager.h"
#include "rove/engine/cpu_model.h"
#include "rove/engine/guest_clock.h"
#include "rove/engine/io_ports.h"
#include "rove/engine/loader/acpi.h"
#include "rove/engine/loader/kernel_loader.h"
#include "rove/engine/msr.h"
#include "rove/engine/platform_hooks.h"
#include "rove/mmu/guest_memory.h"

namespace rove {

namespace {

// Port I/O of every vCPU goes to the shared PIO bus.
class BusPorts : public IoPorts {
 public:
  explicit BusPorts(Bus& bus) : bus_(bus) {}
  uint32_t In(uint16_t port, unsigned width) override {
    uint8_t buf[4] = {};
    bus_.Read(port, std::span<uint8_t>(buf, width));
    uint32_t v = 0;
    for (unsigned i = 0; i < width; ++i) v |= uint32_t{buf[i]} << (8 * i);
    return v;
  }
  void Out(uint16_t port, unsigned width, uint32_t value) override {
    uint8_t buf[4];
    for (unsigned i = 0; i < width; ++i) buf[i] = static_cast<uint8_t>(value >> (8 * i));
    bus_.Write(port, std::span<const uint8_t>(buf, width));
  }

 private:
  Bus& bus_;
};

// Non-RAM physical accesses: the local APIC page first (per vCPU; with one vCPU per thread the
// thread's own APIC), then the MMIO bus.
class MmioRouter : public MmioHandler {
 public:
  MmioRouter(Bus& bus, PcDevices& pc) : bus_(bus), pc_(pc) {}
  uint64_t MmioRead(uint64_t gpa, unsigned width) override {
    uint8_t buf[8] = {};
    std::span<uint8_t> data(buf, width);
    LocalApic& lapic = pc_.lapic(CurrentCpu());
    if (lapic.ClaimsMmio(gpa))
      lapic.MmioRead(gpa - lapic.mmio_base(), data);
    else
      bus_.Read(gpa, data);
    uint64_t v = 0;
    for (unsigned i = 0; i < width; ++i) v |= uint64_t{buf[i]} << (8 * i);
    return v;
  }
  void MmioWrite(uint64_t gpa, unsigned width, uint64_t value) override {
    uint8_t buf[8];
    for (unsigned i = 0; i < width; ++i) buf[i] = static_cast<uint8_t>(value >> (8 * i));
    std::span<const uint8_t> data(buf, width);
    LocalApic& lapic = pc_.lapic(CurrentCpu());
    if (lapic.ClaimsMmio(gpa))
      lapic.MmioWrite(gpa - lapic.mmio_base(), data);
    else
      bus_.Write(gpa, data);
  }
  static unsigned& CurrentCpu() {
    thread_local unsigned cpu = 0;
    return cpu;
  }

 private:
  Bus& bus_;
  PcDevices& pc_;
};

// The local APIC's MSRs and CR8 for one vCPU.
class ApicHooks : public PlatformHooks {
 public:
  ApicHooks(LocalApic& lapic, Vcpu& vcpu) : lapic_(lapic), vcpu_(vcpu) {}
  std::optional<uint64_t> ReadMsr(uint32_t index, bool& gp) override {
    if (index == msr::kApicBase) return lapic_.apic_base();
    if (index == msr::kTscDeadline) return lapic_.tsc_deadline();
    if (index >= 0x800 && index <= 0x8FF) {
      uint64_t v = 0;
      gp = !lapic_.ReadMsr(index, v);
      return v;
    }
    return std::nullopt;
  }
  bool WriteMsr(uint32_t index, uint64_t value, bool& gp) override {
    if (index == msr::kApicBase) {
      gp = !lapic_.SetApicBase(value);
      return true;
    }
    if (index == msr::kTscDeadline) {
      lapic_.SetTscDeadline(value, vcpu_.ReadTsc());
      return true;
    }
    if (index >= 0x800 && index <= 0x8FF) {
      gp = !lapic_.WriteMsr(index, value);
      return true;
    }
    return false;
  }
  uint64_t ReadCr8() override { return lapic_.cr8(); }
  void WriteCr8(uint64_t value) override { lapic_.SetCr8(static_cast<uint8_t>(value)); }

 private:
  LocalApic& lapic_;
  Vcpu& vcpu_;
};

class RamDma : public DmaMemory {
 public:
  explicit RamDma(GuestMemory& memory) : memory_(memory) {}
  bool ReadPhysical(uint64_t gpa, std::span<uint8_t> data) override {
    memory_.Read(gpa, data.data(), data.size());
    return true;
  }
  bool WritePhysical(uint64_t gpa, std::span<const uint8_t> data) override {
    memory_.Write(gpa, data.data(), data.size());
    return true;
  }

 private:
  GuestMemory& memory_;
};

}  // namespace

struct Machine::Impl {
  MachineConfig config;
  std::unique_ptr<GuestMemory> memory;
  std::unique_ptr<GuestClock> clock;
  Bus pio{"pio"};
  Bus mmio{"mmio"};
  std::unique_ptr<RamDma> dma;
  std::unique_ptr<BusPorts> ports;
  std::unique_ptr<PcDevices> pc;
  std::unique_ptr<MmioRouter> mmio_router;
  std::unique_ptr<KvmVm> kvm;  // outlives the vCPUs
  std::vector<std::unique_ptr<Vcpu>> vcpus;
  std::vector<std::unique_ptr<ApicHooks>> hooks;
  std::string summary;

  std::mutex mu;
  std::atomic<size_t> halted_vcpus{0};
  bool finished = false;
  MachineResult result;

  void Finish(MachineStopReason reason, int status, std::string message) {
    {
      std::lock_guard lock(mu);
      if (finished) return;
      finished = true;
      result.reason = reason;
      result.exit_status = status;
      result.message = std::move(message);
    }
    for (auto& v : vcpus) v->RequestStop();
  }
};

Machine::Machine(const MachineConfig& config) : impl_(std::make_unique<Impl>()) {
  Impl& im = *impl_;
  im.config = config;
  if (config.cpus < 1 || config.cpus > 64)
    throw std::runtime_error("--cpus must be between 1 and 64 (got " + std::to_string(config.cpus) +
                             ")");
  im.memory = GuestMemory::Create(config.ram_bytes);
  im.dma = std::make_unique<RamDma>(*im.memory);
  im.ports = std::make_unique<BusPorts>(im.pio);
  im.clock = std::make_unique<GuestClock>(CpuModel().tsc_hz());
  for (unsigned i = 0; i < config.cpus; ++i)
    im.vcpus.push_back(std::make_unique<Vcpu>(*im.memory, *im.ports, static_cast<int>(i),
                                              im.clock.get(), static_cast<int>(config.cpus)));
  std::vector<Vcpu*> all;
  for (auto& v : im.vcpus) all.push_back(v.get());
  for (auto& v : im.vcpus) v->SetPeers(all);
  for (size_t i = 1; i < im.vcpus.size(); ++i) im.vcpus[i]->SetWaitForStartup(true);
  im.memory->SetCodeWriteObserver([all](uint64_t page) {
    for (Vcpu* v : all) v->NotifyCodeWrite(page);
  });

  PcConfig pc_config;
  pc_config.cpus = config.cpus;
  pc_config.ram_size = config.ram_bytes;
  pc_config.tsc_hz = im.vcpus[0]->tsc_hz();
  pc_config.dma_memory = im.dma.get();
  PcCallbacks cb;
  cb.com1_output = config.serial_output;
  Impl* raw = &im;
  cb.reset = [raw] { raw->Finish(MachineStopReason::kReset, 0, "guest requested a reset"); };
  cb.power_off = [raw] { raw->Finish(MachineStopReason::kPowerOff, 0, "guest powered off"); };
  cb.debug_exit = [raw](int status) {
    raw->Finish(MachineStopReason::kDebugExit, status, "debug exit");
  };
  cb.wake = [raw](unsigned cpu) {
    if (cpu < raw->vcpus.size()) raw->vcpus[cpu]->Wake();
  };
  cb.startup = [raw](unsigned cpu, StartupEvent event) {
    if (cpu >= raw->vcpus.size()) return;
    raw->vcpus[cpu]->Startup(event.kind == StartupEvent::Kind::kInit, event.vector);
  };
  im.pc = BuildPcDevices(pc_config, std::move(cb), im.pio, im.mmio);
  im.mmio_router = std::make_unique<MmioRouter>(im.mmio, *im.pc);
  im.memory->SetMmioHandler(im.mmio_router.get());
  for (unsigned i = 0; i < config.cpus; ++i) {
    im.hooks.push_back(std::make_unique<ApicHooks>(im.pc->lapic(i), *im.vcpus[i]));
    im.vcpus[i]->AttachPlatform(&im.pc->interrupts(), i, im.hooks[i].get());
  }

  if (config.accel == AccelKind::kKvm) {
    im.kvm = KvmVm::Create(*im.memory,
                           config.kvm_device.empty() ? DefaultKvmDevice() : config.kvm_device);
    for (auto& v : im.vcpus) v->SetAccelerator(AccelKind::kKvm, im.kvm.get());
  }

  loader::LoadOptions opt;
  opt.kernel_path = config.kernel_path;
  opt.initrd_path = config.initrd_path;
  opt.cmdline = config.cmdline;
  loader::AcpiConfig acpi;
  acpi.cpu_count = static_cast<int>(config.cpus);
  loader::EcamConfig ecam;
  ecam.base = pc::kPciEcamBase;
  ecam.start_bus = 0;
  ecam.end_bus = static_cast<uint8_t>(pc::kPciEcamBuses - 1);
  acpi.ecam = ecam;
  opt.acpi = acpi;
  opt.reserved.push_back(
      loader::MemoryRegion{pc::kPciEcamBase, pc::kPciEcamSize, loader::MemoryType::kReserved});
  loader::LoadResult loaded = loader::LoadKernel(*im.memory, im.vcpus[0]->state(), opt);
  im.summary = loaded.summary;
  std::vector<E820Entry> e820;
  for (const auto& r : loaded.memory_map)
    e820.push_back(E820Entry{r.base, r.size, static_cast<uint32_t>(r.type)});
  if (!e820.empty()) im.pc->fw_cfg().SetE820(e820);
}

Machine::~Machine() {
  // Stop the timer thread before the vCPUs it may wake go away.
  if (impl_) impl_->pc.reset();
}

const std::string& Machine::load_summary() const {
  return impl_->summary;
}

void Machine::RequestStop() {
  impl_->Finish(MachineStopReason::kStopped, 0, "stopped");
}

MachineResult Machine::Run() {
  Impl& im = *impl_;
  std::vector<std::thread> threads;
  std::vector<StopInfo> stops(im.vcpus.size());
  for (size_t i = 0; i < im.vcpus.size(); ++i) {
    threads.emplace_back([&im, &stops, i] {
      MmioRouter::CurrentCpu() = static_cast<unsigned>(i);
      try {
        stops[i] = im.vcpus[i]->Run();
      } catch (const std::exception& e) {
        stops[i] = StopInfo{StopReason::kShutdown, std::string("internal error: ") + e.what()};
      }
      switch (stops[i].reason) {
        case StopReason::kShutdown:
          im.Finish(MachineStopReason::kTripleFault, 0, stops[i].message);
          break;
        case StopReason::kHalted:
          // A vCPU parked with interrupts off (e.g. an AP stopped for power-off) ends only its
          // thread; the machine ends when all of them are.
          if (++im.halted_vcpus == im.vcpus.size())
            im.Finish(MachineStopReason::kHalted, 0, "all vCPUs halted with interrupts disabled");
          break;
        default:
          break;
      }
    });
  }
  for (auto& t : threads) t.join();
  std::lock_guard lock(im.mu);
  if (!im.finished) {
    im.finished = true;
    im.result.reason = MachineStopReason::kStopped;
  }
  return im.result;
}

AccelKind Machine::accelerator() const {
  return impl_->vcpus[0]->accelerator();
}

MachineStats Machine::stats() const {
  MachineStats s;
  for (const auto& v : impl_->vcpus) {
    const VcpuStats& c = v->stats();
    s.cpu.blocks_translated += c.blocks_translated;
    s.cpu.instructions_translated += c.instructions_translated;
    s.cpu.code_flushes += c.code_flushes;
    s.cpu.tlb_misses += c.tlb_misses;
    s.cpu.emulated_instructions += c.emulated_instructions;
    s.cpu.exceptions += c.exceptions;
    s.cpu.interrupts += c.interrupts;
    s.cpu.kvm_exits += c.kvm_exits;
  }
  std::map<std::string, uint64_t> by_kind;
  for (const auto& v : impl_->vcpus)
    for (const auto& [name, count] : v->EmulatedProfile(1000)) by_kind[name] += count;
  s.emulated_by_kind.assign(by_kind.begin(), by_kind.end());
  std::sort(s.emulated_by_kind.begin(), s.emulated_by_kind.end(),
            [](const auto& a, const auto& b) { return a.second > b.second; });
  s.unclaimed_pio = impl_->pio.unclaimed_reads() + impl_->pio.unclaimed_writes();
  s.unclaimed_mmio = impl_->mmio.unclaimed_reads() + impl_->mmio.unclaimed_writes();
  return s;
}

}  // namespace rove
