// The PC machine: guest RAM, the PC devices on the buses, the kernel loaded with ACPI tables,
// and one host thread per vCPU.
#include "rove/engine/machine.h"

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "rove/devices/bus.h"
#include "rove/devices/device_manager.h"
#include "rove/devices/device_state.h"
#include "rove/engine/cpu_model.h"
#include "rove/engine/guest_clock.h"
#include "rove/engine/io_ports.h"
#include "rove/engine/loader/acpi.h"
#include "rove/engine/loader/kernel_loader.h"
#include "rove/engine/msr.h"
#include "rove/engine/platform_hooks.h"
#include "rove/engine/snapshot.h"
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

  // Pausing the running vCPU threads (accelerator switches, snapshots).
  std::mutex pause_mu;
  std::condition_variable pause_cv;
  bool run_active = false;
  bool pause_requested = false;
  size_t running_threads = 0;
  size_t parked = 0;
  std::mutex control_mu;  // one pause at a time

  bool IsFinished() {
    std::lock_guard lock(mu);
    return finished;
  }

  // Stops every vCPU thread at an instruction boundary (no-op when the machine is not running).
  void Pause() {
    std::unique_lock lock(pause_mu);
    if (!run_active) return;
    pause_requested = true;
    lock.unlock();
    for (auto& v : vcpus) v->RequestStop();
    lock.lock();
    pause_cv.wait(lock, [&] { return parked == running_threads; });
  }
  void Resume() {
    {
      std::lock_guard lock(pause_mu);
      pause_requested = false;
    }
    pause_cv.notify_all();
  }
  // In a vCPU thread whose Run() returned kStopRequested: parks while paused. Returns true if
  // the vCPU should run again: every stop that is not a pause goes through Finish(), and a
  // stop request left over from a pause that found this vCPU already parked is not one.
  bool ParkIfPaused() {
    std::unique_lock lock(pause_mu);
    if (IsFinished()) return false;
    if (!pause_requested) return true;
    ++parked;
    pause_cv.notify_all();
    pause_cv.wait(lock, [&] { return !pause_requested; });
    --parked;
    return !IsFinished();
  }

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
  {
    std::lock_guard lock(im.pause_mu);
    im.run_active = true;
    im.running_threads = im.vcpus.size();
  }
  for (size_t i = 0; i < im.vcpus.size(); ++i) {
    threads.emplace_back([&im, &stops, i] {
      MmioRouter::CurrentCpu() = static_cast<unsigned>(i);
      try {
        do {
          stops[i] = im.vcpus[i]->Run();
        } while (stops[i].reason == StopReason::kStopRequested && im.ParkIfPaused());
      } catch (const std::exception& e) {
        stops[i] = StopInfo{StopReason::kShutdown, std::string("internal error: ") + e.what()};
      }
      {
        std::lock_guard lock(im.pause_mu);
        --im.running_threads;
      }
      im.pause_cv.notify_all();
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
  {
    std::lock_guard lock(im.pause_mu);
    im.run_active = false;
  }
  std::lock_guard lock(im.mu);
  if (!im.finished) {
    im.finished = true;
    im.result.reason = MachineStopReason::kStopped;
  }
  return im.result;
}

void Machine::SwitchAccelerator(AccelKind kind) {
  Impl& im = *impl_;
  std::lock_guard control(im.control_mu);
  im.Pause();
  try {
    if (kind == AccelKind::kKvm && !im.kvm)
      im.kvm = KvmVm::Create(
          *im.memory, im.config.kvm_device.empty() ? DefaultKvmDevice() : im.config.kvm_device);
    for (auto& v : im.vcpus) v->SetAccelerator(kind, im.kvm.get());
  } catch (...) {
    for (auto& v : im.vcpus) v->SetAccelerator(AccelKind::kBt);
    im.Resume();
    throw;
  }
  im.Resume();
}

namespace {

constexpr uint32_t kMachineSection = StateTag("MACH");
constexpr uint32_t kCpusSection = StateTag("CPUS");
constexpr uint32_t kDevicesSection = StateTag("DEVS");
constexpr uint32_t kRamSection = StateTag("RAM ");
constexpr uint64_t kRamEnd = ~0ull;

// The RAM ranges of a GuestMemory: below the PCI hole, then from 4 GiB.
std::vector<std::pair<uint64_t, uint64_t>> RamRanges(const GuestMemory& memory) {
  const uint64_t low = std::min(memory.ram_size(), kLowRamLimit);
  std::vector<std::pair<uint64_t, uint64_t>> ranges{{0, low}};
  if (memory.ram_size() > low) ranges.push_back({kHighRamStart, memory.ram_size() - low});
  return ranges;
}

bool ZeroPage(const uint8_t* p) {
  static const uint8_t zero[kPageSize] = {};
  return std::memcmp(p, zero, kPageSize) == 0;
}

}  // namespace

std::vector<uint8_t> Machine::SaveSnapshot() {
  Impl& im = *impl_;
  std::lock_guard control(im.control_mu);
  im.Pause();
  std::vector<SnapshotSection> sections;
  try {
    StateWriter mach;
    mach.U64(im.config.ram_bytes);
    mach.U32(static_cast<uint32_t>(im.vcpus.size()));
    mach.U8(static_cast<uint8_t>(im.vcpus[0]->accelerator()));
    sections.push_back({kMachineSection, 1, mach.Take()});

    StateWriter cpus;
    for (auto& v : im.vcpus) v->SaveState(cpus);
    sections.push_back({kCpusSection, 1, cpus.Take()});

    StateWriter devs;
    im.pc->SaveState(devs);
    sections.push_back({kDevicesSection, 1, devs.Take()});

    // RAM: every page that is not all zeros, as (gpa, 4 KiB), then kRamEnd.
    StateWriter ram;
    ram.U64(im.memory->ram_size());
    for (const auto& [base, size] : RamRanges(*im.memory)) {
      for (uint64_t gpa = base; gpa < base + size; gpa += kPageSize) {
        const uint8_t* page = im.memory->host_base() + gpa;
        if (ZeroPage(page)) continue;
        ram.U64(gpa);
        ram.Bytes(page, kPageSize);
      }
    }
    ram.U64(kRamEnd);
    sections.push_back({kRamSection, 1, ram.Take()});
  } catch (...) {
    im.Resume();
    throw;
  }
  im.Resume();
  return EncodeSnapshot(sections);
}

void Machine::LoadSnapshot(std::span<const uint8_t> snapshot) {
  Impl& im = *impl_;
  std::lock_guard control(im.control_mu);
  {
    std::lock_guard lock(im.pause_mu);
    if (im.run_active) throw std::logic_error("Machine::LoadSnapshot while the machine runs");
  }
  const std::vector<SnapshotSection> sections = DecodeSnapshot(snapshot);
  const uint32_t expected[] = {kMachineSection, kCpusSection, kDevicesSection, kRamSection};
  if (sections.size() != std::size(expected))
    throw SnapshotError(
        fmt::format("snapshot has {} sections, expected {}", sections.size(), std::size(expected)));
  for (size_t i = 0; i < sections.size(); ++i) {
    if (sections[i].tag != expected[i])
      throw SnapshotError(fmt::format("snapshot section {} is '{}', expected '{}'", i + 1,
                                      StateTagName(sections[i].tag), StateTagName(expected[i])));
    if (sections[i].version != 1)
      throw SnapshotError(fmt::format("snapshot section '{}' has version {}, this rove reads 1",
                                      StateTagName(sections[i].tag), sections[i].version));
  }
  try {
    StateReader mach(sections[0].payload, "MACH");
    const uint64_t ram_bytes = mach.U64("RAM size");
    const uint32_t cpus = mach.U32("vCPU count");
    mach.U8Max(1, "accelerator");
    mach.ExpectEnd();
    if (ram_bytes != im.config.ram_bytes || cpus != im.vcpus.size())
      throw SnapshotError(fmt::format(
          "snapshot is of a machine with {} MiB and {} vCPUs; this one has {} MiB and {}",
          ram_bytes >> 20, cpus, im.config.ram_bytes >> 20, im.vcpus.size()));

    // Parse RAM completely before changing anything.
    StateReader ram(sections[3].payload, "RAM ");
    if (ram.U64("RAM size") != im.memory->ram_size())
      throw SnapshotError("snapshot RAM size does not match the machine's");
    std::vector<std::pair<uint64_t, size_t>> pages;  // gpa, offset of its bytes in the payload
    uint64_t previous = 0;
    for (;;) {
      const uint64_t gpa = ram.U64("page address");
      if (gpa == kRamEnd) break;
      if ((gpa & (kPageSize - 1)) || !im.memory->IsRam(gpa) || (!pages.empty() && gpa <= previous))
        ram.Fail(fmt::format("invalid page address {:#x}", gpa));
      pages.emplace_back(gpa, ram.offset());
      uint8_t skip[kPageSize];
      ram.Bytes(skip, kPageSize, "page contents");
      previous = gpa;
    }
    ram.ExpectEnd();
    // The vCPU and device sections too, so that bad input changes nothing.
    StateReader cpus_check(sections[1].payload, "CPUS");
    for (size_t i = 0; i < im.vcpus.size(); ++i) Vcpu::CheckState(cpus_check);
    cpus_check.ExpectEnd();
    StateReader devs_check(sections[2].payload, "DEVS");
    im.pc->CheckState(devs_check);
    devs_check.ExpectEnd();

    // RAM, then the vCPUs (loading one drops its translations of the old RAM) and devices.
    for (const auto& [base, size] : RamRanges(*im.memory))
      std::memset(im.memory->host_base() + base, 0, size);
    for (const auto& [gpa, offset] : pages)
      std::memcpy(im.memory->host_base() + gpa, sections[3].payload.data() + offset, kPageSize);
    StateReader cpus_in(sections[1].payload, "CPUS");
    for (auto& v : im.vcpus) v->LoadState(cpus_in);
    cpus_in.ExpectEnd();
    StateReader devs(sections[2].payload, "DEVS");
    im.pc->LoadState(devs);
  } catch (const StateError& e) {
    throw SnapshotError(std::string("bad snapshot: ") + e.what());
  }
}

void Machine::SaveSnapshotFile(const std::string& path) {
  const std::vector<uint8_t> bytes = SaveSnapshot();
  WriteSnapshotFile(path, bytes);
}

void Machine::LoadSnapshotFile(const std::string& path) {
  LoadSnapshot(ReadSnapshotFile(path));
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
    s.cpu.counted_loops += c.counted_loops;
    s.cpu.loop_fast_entries += c.loop_fast_entries;
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
