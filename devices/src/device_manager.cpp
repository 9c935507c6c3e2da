#include "rove/devices/device_manager.h"

#include <fmt/format.h>

#include <stdexcept>
#include <vector>

namespace rove {

using namespace pc;

// Every device of the machine in one block, shared between the PcDevices handle and the buses.
// Members are declared in dependency order: each is constructed after, and destroyed before,
// everything it refers to.
struct PcDevices::State {
  State(const PcConfig& c, PcCallbacks& cb)
      : own_clock(c.clock ? nullptr : std::make_unique<HostClock>()),
        clock(c.clock ? *c.clock : *own_clock),
        timers(clock),
        apic_bus(ApicBusConfig{c.cpus == 0 ? 1 : c.cpus, c.apic_bus_hz, c.tsc_hz}, timers,
                 std::move(cb.wake), std::move(cb.startup)),
        ioapic(apic_bus, uint8_t(c.cpus == 0 ? 1 : c.cpus)),
        router(&pic, &ioapic),
        pit(timers, router.Line(kPitIrq)),
        rtc(timers, router.Line(kRtcIrq)),
        com1(router.Line(kCom1Irq), std::move(cb.com1_output)),
        com2(router.Line(kCom2Irq), std::move(cb.com2_output)),
        i8042(router.Line(kKeyboardIrq), router.Line(kMouseIrq), cb.reset),
        acpi_pm(clock, router.Line(kSciIrq), std::move(cb.power_off)),
        pci(std::move(cb.reset)),
        fw_cfg(c.dma_memory),
        debug_exit(std::move(cb.debug_exit)) {}

  ~State() {
    timers.Stop();
    apic_bus.ConnectPic(nullptr);
  }

  std::unique_ptr<HostClock> own_clock;
  const Clock& clock;
  TimerQueue timers;
  Pic8259 pic;
  ApicBus apic_bus;
  IoApic ioapic;
  IrqRouter router;
  Pit8254 pit;
  CmosRtc rtc;
  Uart16550 com1;
  Uart16550 com2;
  I8042 i8042;
  AcpiPm acpi_pm;
  PciRoot pci;
  FwCfg fw_cfg;
  DebugExit debug_exit;
  PostCode post;
};

PcDevices::~PcDevices() {
  state_->timers.Stop();
}

VcpuInterrupts& PcDevices::interrupts() {
  return state_->apic_bus;
}
ApicBus& PcDevices::apic_bus() {
  return state_->apic_bus;
}
LocalApic& PcDevices::lapic(unsigned cpu) {
  return state_->apic_bus.lapic(cpu);
}
unsigned PcDevices::cpu_count() const {
  return state_->apic_bus.cpu_count();
}
Pic8259& PcDevices::pic() {
  return state_->pic;
}
IoApic& PcDevices::ioapic() {
  return state_->ioapic;
}
IrqRouter& PcDevices::irq_router() {
  return state_->router;
}
Pit8254& PcDevices::pit() {
  return state_->pit;
}
CmosRtc& PcDevices::rtc() {
  return state_->rtc;
}
Uart16550& PcDevices::com1() {
  return state_->com1;
}
Uart16550& PcDevices::com2() {
  return state_->com2;
}
I8042& PcDevices::i8042() {
  return state_->i8042;
}
AcpiPm& PcDevices::acpi_pm() {
  return state_->acpi_pm;
}
PciRoot& PcDevices::pci() {
  return state_->pci;
}
FwCfg& PcDevices::fw_cfg() {
  return state_->fw_cfg;
}
DebugExit& PcDevices::debug_exit() {
  return state_->debug_exit;
}
PostCode& PcDevices::post_code() {
  return state_->post;
}
TimerQueue& PcDevices::timers() {
  return state_->timers;
}
const Clock& PcDevices::clock() const {
  return state_->clock;
}

std::unique_ptr<PcDevices> BuildPcDevices(const PcConfig& config, PcCallbacks callbacks, Bus& pio,
                                          Bus& mmio) {
  auto state = std::make_shared<PcDevices::State>(config, callbacks);
  PcDevices::State& s = *state;

  // Devices on the buses share ownership of the whole state block (aliasing shared_ptrs).
  auto insert = [&](Bus& bus, BusDevice* device, uint64_t base, uint64_t length, const char* what) {
    if (!bus.Insert(std::shared_ptr<BusDevice>(state, device), base, length)) {
      throw std::runtime_error(fmt::format("{} bus: window {:#x}+{:#x} for {} is taken", bus.name(),
                                           base, length, what));
    }
  };
  auto insert_window = [&](Bus& bus, MultiWindowDevice* device, unsigned window, uint64_t base,
                           uint64_t length, const char* what) {
    auto shared = std::shared_ptr<MultiWindowDevice>(state, device);
    if (!bus.Insert(std::make_shared<BusWindow>(std::move(shared), window), base, length)) {
      throw std::runtime_error(fmt::format("{} bus: window {:#x}+{:#x} for {} is taken", bus.name(),
                                           base, length, what));
    }
  };

  insert_window(pio, &s.pic, Pic8259::kMasterWindow, kPicMasterPort, 2, "PIC master");
  insert_window(pio, &s.pic, Pic8259::kSlaveWindow, kPicSlavePort, 2, "PIC slave");
  insert_window(pio, &s.pic, Pic8259::kElcrWindow, kElcrPort, 2, "ELCR");
  insert_window(pio, &s.pit, Pit8254::kCounterWindow, kPitPort, 4, "PIT");
  insert_window(pio, &s.pit, Pit8254::kPortBWindow, kSystemControlBPort, 1, "port B");
  insert_window(pio, &s.i8042, I8042::kDataWindow, kI8042DataPort, 1, "i8042 data");
  insert_window(pio, &s.i8042, I8042::kCommandWindow, kI8042CommandPort, 1, "i8042 command");
  insert(pio, &s.rtc, kCmosPort, 2, "CMOS/RTC");
  insert(pio, &s.post, kPostPort, 1, "POST port");
  insert(pio, &s.debug_exit, kDebugExitPort, DebugExit::kSize, "debug exit");
  insert(pio, &s.com1, kCom1Port, 8, "COM1");
  insert(pio, &s.com2, kCom2Port, 8, "COM2");
  insert(pio, &s.fw_cfg, kFwCfgPort, FwCfg::kSize, "fw_cfg");
  insert(pio, &s.acpi_pm, kAcpiPmPort, AcpiPm::kSize, "ACPI PM");
  insert_window(pio, &s.pci, PciRoot::kConfigPortsWindow, kPciConfigPort, PciRoot::kConfigPortsSize,
                "PCI config");
  insert(mmio, &s.ioapic, kIoApicBase, kIoApicSize, "I/O APIC");
  if (config.ecam) {
    insert_window(mmio, &s.pci, PciRoot::kEcamWindow, kPciEcamBase, kPciEcamSize, "PCI ECAM");
  }

  // The state firmware leaves the machine in.
  s.apic_bus.ConnectPic(&s.pic);
  s.apic_bus.SetEoiListener([ioapic = &s.ioapic](uint8_t vector) { ioapic->Eoi(vector); });
  s.apic_bus.lapic(0).SetVirtualWire();
  s.pci.Add(0, 0, std::make_shared<PciHostBridge>());
  const RamLayout ram = SplitRam(config.ram_size);
  const unsigned cpus = s.apic_bus.cpu_count();
  s.rtc.SetMemorySize(ram.below_4g, ram.above_4g);
  s.rtc.SetCpuCount(cpus);
  s.fw_cfg.SetRamSize(config.ram_size);
  s.fw_cfg.SetCpuCount(uint16_t(cpus), uint16_t(cpus));
  std::vector<E820Entry> e820;
  if (ram.below_4g) e820.push_back({0, ram.below_4g, kE820Ram});
  if (ram.above_4g) e820.push_back({kHighRamStart, ram.above_4g, kE820Ram});
  s.fw_cfg.SetE820(e820);

  if (config.start_timer_thread) s.timers.Start();
  return std::unique_ptr<PcDevices>(new PcDevices(std::move(state)));
}

// --- Snapshot. ---

namespace {

constexpr uint32_t kMachineTag = StateTag("PCDV");
constexpr uint32_t kVersion1 = 1;
constexpr uint32_t kPitVersion = 2;  // v2: port 0x61's refresh toggle phase
constexpr uint32_t kRtcVersion = 2;  // v2: periodic phase relative to the clock, for any rate

// Stops the timer thread (waiting for a callback under way) and restarts it when done, so no
// timer callback runs while the devices are saved or loaded.
class TimerPause {
 public:
  explicit TimerPause(TimerQueue& timers) : timers_(timers), was_running_(timers.running()) {
    if (was_running_) timers_.Stop();
  }
  ~TimerPause() {
    if (was_running_) timers_.Start();
  }
  TimerPause(const TimerPause&) = delete;
  TimerPause& operator=(const TimerPause&) = delete;

 private:
  TimerQueue& timers_;
  bool was_running_;
};

template <typename Device>
void SaveRecord(StateWriter& out, const char (&tag)[5], const Device& device,
                uint32_t version = kVersion1) {
  const size_t record = out.BeginRecord(StateTag(tag), version);
  device.SaveState(out);
  out.EndRecord(record);
}

// Parses one record into `applies`; nothing is changed yet.
template <typename Device>
void ParseRecord(StateReader& in, const char (&tag)[5], Device& device,
                 std::vector<StateApply>& applies, uint32_t version = kVersion1) {
  StateReader body = in.ReadRecord(StateTag(tag), version);
  applies.push_back(device.ParseState(body));
  body.ExpectEnd();
}

}  // namespace

// Record order: devices that drive interrupt lines first (loading them sets their lines), then
// the router and the interrupt controllers, which overwrite their input state with the saved
// one, and the local APICs last.
void PcDevices::SaveState(StateWriter& out) const {
  State& s = *state_;
  TimerPause pause(s.timers);
  const size_t header = out.BeginRecord(kMachineTag, kVersion1);
  out.U32(s.apic_bus.cpu_count());
  out.EndRecord(header);
  SaveRecord(out, "PIT ", s.pit, kPitVersion);
  SaveRecord(out, "RTC ", s.rtc, kRtcVersion);
  SaveRecord(out, "UART", s.com1);
  SaveRecord(out, "UART", s.com2);
  SaveRecord(out, "KBC ", s.i8042);
  SaveRecord(out, "ACPI", s.acpi_pm);
  SaveRecord(out, "PCI ", s.pci);
  SaveRecord(out, "FWCF", s.fw_cfg);
  SaveRecord(out, "DBGX", s.debug_exit);
  SaveRecord(out, "POST", s.post);
  SaveRecord(out, "IRQR", s.router);
  SaveRecord(out, "PIC ", s.pic);
  SaveRecord(out, "IOAP", s.ioapic);
  for (unsigned cpu = 0; cpu < s.apic_bus.cpu_count(); ++cpu) {
    SaveRecord(out, "APIC", s.apic_bus.lapic(cpu));
  }
  SaveRecord(out, "APBS", s.apic_bus);
}

std::vector<StateApply> PcDevices::ParseState(StateReader& in) {
  State& s = *state_;
  {
    StateReader header = in.ReadRecord(kMachineTag, kVersion1);
    const uint32_t cpus = header.U32("cpu count");
    if (cpus != s.apic_bus.cpu_count()) {
      header.Fail(
          fmt::format("the snapshot has {} vCPUs, this machine {}", cpus, s.apic_bus.cpu_count()));
    }
    header.ExpectEnd();
  }
  std::vector<StateApply> applies;
  ParseRecord(in, "PIT ", s.pit, applies, kPitVersion);
  ParseRecord(in, "RTC ", s.rtc, applies, kRtcVersion);
  ParseRecord(in, "UART", s.com1, applies);
  ParseRecord(in, "UART", s.com2, applies);
  ParseRecord(in, "KBC ", s.i8042, applies);
  ParseRecord(in, "ACPI", s.acpi_pm, applies);
  ParseRecord(in, "PCI ", s.pci, applies);
  ParseRecord(in, "FWCF", s.fw_cfg, applies);
  ParseRecord(in, "DBGX", s.debug_exit, applies);
  ParseRecord(in, "POST", s.post, applies);
  ParseRecord(in, "IRQR", s.router, applies);
  ParseRecord(in, "PIC ", s.pic, applies);
  ParseRecord(in, "IOAP", s.ioapic, applies);
  for (unsigned cpu = 0; cpu < s.apic_bus.cpu_count(); ++cpu) {
    ParseRecord(in, "APIC", s.apic_bus.lapic(cpu), applies);
  }
  ParseRecord(in, "APBS", s.apic_bus, applies);
  return applies;
}

void PcDevices::CheckState(StateReader& in) {
  ParseState(in);
}

void PcDevices::LoadState(StateReader& in) {
  // Every record is parsed and checked before any device changes, so bad input leaves the
  // machine as it was.
  const std::vector<StateApply> applies = ParseState(in);
  TimerPause pause(state_->timers);
  for (const StateApply& apply : applies) apply();
}

}  // namespace rove
