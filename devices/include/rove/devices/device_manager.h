// The standard PC device set: every port, IRQ and MMIO address in one place, and
// BuildPcDevices(), which creates the devices and registers them on a PIO bus and an MMIO bus.
//
// Integration (the engine):
//
//   Bus pio("pio"), mmio("mmio");
//   PcConfig config{.cpus = n, .ram_size = bytes, .tsc_hz = guest_tsc_hz, .dma_memory = &dma};
//   PcCallbacks cb{.com1_output = ..., .reset = ..., .power_off = ..., .debug_exit = ...,
//                  .wake = ..., .startup = ...};
//   auto pc = BuildPcDevices(config, std::move(cb), pio, mmio);
//
//   vCPU i, on IN/OUT:            pio.Read/Write(port, span of the access width)
//   vCPU i, on a non-RAM access:  if (pc->lapic(i).ClaimsMmio(gpa)) pc->lapic(i).Mmio*(gpa -
//                                 pc->lapic(i).mmio_base(), ...); else mmio.Read/Write(gpa, ...)
//   vCPU i, RDMSR/WRMSR:          0x1B, 0x6E0, 0x800-0x8FF -> pc->lapic(i) (see local_apic.h)
//   vCPU i, MOV CR8:              pc->lapic(i).cr8() / SetCr8()
//   vCPU i, interrupt window:     pc->interrupts().TakeNmi / HasInterrupt / AcknowledgeInterrupt
//   Loader:                       pc->fw_cfg().SetE820(...), SetKernel/SetCmdline (optional)
//   Snapshot (vCPUs paused):      StateWriter w; pc->SaveState(w); ... later, into a machine
//                                 built the same way: StateReader r(bytes); pc->LoadState(r);
//                                 (records: device_state.h)
//
// The callbacks run on whatever thread triggers them (a vCPU thread for port writes, the timer
// thread for timer interrupts); see vcpu_interrupts.h for the rules on wake and startup.
//
// Lifetime: the PcDevices handle owns the timer thread; destroying it stops the thread. The
// devices themselves are shared with the buses and live until both the handle and the buses
// are gone, so any destruction order is safe. (Accessing a bus after its PcDevices is gone
// still works but no timer fires any more.)
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "rove/devices/acpi_pm.h"
#include "rove/devices/apic_bus.h"
#include "rove/devices/bus.h"
#include "rove/devices/clock.h"
#include "rove/devices/cmos_rtc.h"
#include "rove/devices/debug_exit.h"
#include "rove/devices/device_state.h"
#include "rove/devices/fw_cfg.h"
#include "rove/devices/i8042.h"
#include "rove/devices/io_apic.h"
#include "rove/devices/irq.h"
#include "rove/devices/local_apic.h"
#include "rove/devices/pci.h"
#include "rove/devices/pic8259.h"
#include "rove/devices/pit8254.h"
#include "rove/devices/post_code.h"
#include "rove/devices/timer_queue.h"
#include "rove/devices/uart16550.h"
#include "rove/devices/vcpu_interrupts.h"

namespace rove::pc {

// --- I/O ports. ---
inline constexpr uint16_t kPicMasterPort = 0x20;  // 2 ports
inline constexpr uint16_t kPicSlavePort = 0xA0;   // 2 ports
inline constexpr uint16_t kElcrPort = 0x4D0;      // 2 ports
inline constexpr uint16_t kPitPort = 0x40;        // 4 ports
inline constexpr uint16_t kSystemControlBPort = 0x61;
inline constexpr uint16_t kI8042DataPort = 0x60;
inline constexpr uint16_t kI8042CommandPort = 0x64;
inline constexpr uint16_t kCmosPort = 0x70;  // 2 ports
inline constexpr uint16_t kPostPort = 0x80;
inline constexpr uint16_t kDebugExitPort = 0xF4;  // 4 ports (QEMU: iobase=0xf4,iosize=0x04)
inline constexpr uint16_t kCom1Port = 0x3F8;      // 8 ports
inline constexpr uint16_t kCom2Port = 0x2F8;      // 8 ports
inline constexpr uint16_t kFwCfgPort = 0x510;     // 12 ports (selector, data, DMA)
inline constexpr uint16_t kAcpiPmPort = 0x600;    // 16 ports
inline constexpr uint16_t kPm1aEventPort = kAcpiPmPort + AcpiPm::kPm1EvtOffset;
inline constexpr uint16_t kPm1aControlPort = kAcpiPmPort + AcpiPm::kPm1CntOffset;
inline constexpr uint16_t kPmTimerPort = kAcpiPmPort + AcpiPm::kPmTmrOffset;
inline constexpr uint16_t kGpe0Port = kAcpiPmPort + AcpiPm::kGpe0Offset;
inline constexpr uint16_t kPciConfigPort = 0xCF8;  // 8 ports, includes the reset register
inline constexpr uint16_t kResetPort = 0xCF9;      // ACPI RESET_REG
inline constexpr uint8_t kResetValue = 0x06;
inline constexpr uint16_t kSlpTypS5 = AcpiPm::kSlpTypS5;  // DSDT \_S5

// --- ISA IRQs (and GSIs: ISA IRQ n is GSI n, except the PIT). ---
inline constexpr unsigned kPitIrq = 0;
inline constexpr unsigned kPitGsi = IrqRouter::GsiForIsaIrq(kPitIrq);  // 2: MADT override
inline constexpr unsigned kKeyboardIrq = 1;
inline constexpr unsigned kCascadeIrq = 2;
inline constexpr unsigned kCom2Irq = 3;
inline constexpr unsigned kCom1Irq = 4;
inline constexpr unsigned kRtcIrq = 8;
inline constexpr unsigned kSciIrq = 9;  // level, active high (MADT override)
inline constexpr unsigned kMouseIrq = 12;

// --- Physical addresses. ---
inline constexpr uint64_t kLocalApicBase = LocalApic::kDefaultBase;
inline constexpr uint64_t kIoApicBase = IoApic::kDefaultBase;
inline constexpr uint64_t kIoApicSize = IoApic::kMmioSize;
// RAM above this address is relocated above 4 GiB. Must equal the MMU's kLowRamLimit.
inline constexpr uint64_t kPciHoleStart = 0xC0000000;
inline constexpr uint64_t kHighRamStart = 0x100000000;
// ECAM for buses 0-255 (256 MiB) inside the PCI hole; reserve it in the e820 map and describe
// it with an MCFG table.
inline constexpr uint64_t kPciEcamBase = 0xE0000000;
inline constexpr unsigned kPciEcamBuses = 256;
inline constexpr uint64_t kPciEcamSize = PciRoot::EcamSize(kPciEcamBuses);
// Where 32-bit PCI BARs may go: the hole below the ECAM window.
inline constexpr uint64_t kPciMmioBase = kPciHoleStart;
inline constexpr uint64_t kPciMmioSize = kPciEcamBase - kPciHoleStart;

// Guest RAM split around the PCI hole.
struct RamLayout {
  uint64_t below_4g = 0;  // at [0, below_4g)
  uint64_t above_4g = 0;  // at [kHighRamStart, kHighRamStart + above_4g)
};
constexpr RamLayout SplitRam(uint64_t ram_size) {
  const uint64_t below = ram_size < kPciHoleStart ? ram_size : kPciHoleStart;
  return RamLayout{below, ram_size - below};
}

}  // namespace rove::pc

namespace rove {

struct PcConfig {
  unsigned cpus = 1;
  uint64_t ram_size = 0;
  uint64_t tsc_hz = 1'000'000'000;       // the guest TSC rate (for TSC-deadline timers)
  uint64_t apic_bus_hz = 1'000'000'000;  // local APIC timer clock before its divider
  bool ecam = true;                      // register the ECAM window on the MMIO bus
  bool start_timer_thread = true;        // false: drive pc->timers().RunDue() yourself
  const Clock* clock = nullptr;          // null: host clocks
  DmaMemory* dma_memory = nullptr;       // fw_cfg DMA; null: no DMA interface
};

struct PcCallbacks {
  Uart16550::OutputFn com1_output;  // the console
  Uart16550::OutputFn com2_output;
  std::function<void()> reset;                 // i8042 reset line, 0xCF9 (ACPI reset register)
  std::function<void()> power_off;             // ACPI S5
  std::function<void(int status)> debug_exit;  // status = (V << 1) | 1
  WakeFn wake;                                 // vCPU n may have an interrupt
  StartupFn startup;                           // INIT / SIPI for vCPU n
};

class PcDevices {
 public:
  ~PcDevices();
  PcDevices(const PcDevices&) = delete;
  PcDevices& operator=(const PcDevices&) = delete;

  VcpuInterrupts& interrupts();
  ApicBus& apic_bus();
  LocalApic& lapic(unsigned cpu);
  unsigned cpu_count() const;

  Pic8259& pic();
  IoApic& ioapic();
  IrqRouter& irq_router();
  Pit8254& pit();
  CmosRtc& rtc();
  Uart16550& com1();
  Uart16550& com2();
  I8042& i8042();
  AcpiPm& acpi_pm();
  PciRoot& pci();
  FwCfg& fw_cfg();
  DebugExit& debug_exit();
  PostCode& post_code();
  TimerQueue& timers();
  const Clock& clock() const;

  // Snapshot of every device as a sequence of records (device_state.h lists them). Call with
  // the vCPUs paused (no port/MMIO/MSR access in flight); the timer thread is paused for the
  // duration, so the snapshot is consistent, and timers due meanwhile fire after it. Pausing
  // joins the timer thread: do not call this (or LoadState) while holding a lock that the wake
  // or startup callbacks take, nor from a timer callback.
  void SaveState(StateWriter& out) const;
  // Loads a snapshot into this machine, which must be built with the same PcConfig (CPU count,
  // PCI functions) and have its loader's fw_cfg items. Timers are re-based on this machine's
  // clock. Throws StateError on any malformed, truncated or mismatched input, before changing
  // anything: every record is parsed and checked first (ParseState), then applied.
  void LoadState(StateReader& in);
  // Parses and checks a snapshot as LoadState would, changing nothing (so a caller restoring
  // several parts of a machine can check them all before applying any). Throws StateError.
  void CheckState(StateReader& in);

 private:
  struct State;
  std::vector<StateApply> ParseState(StateReader& in);
  friend std::unique_ptr<PcDevices> BuildPcDevices(const PcConfig&, PcCallbacks, Bus&, Bus&);
  explicit PcDevices(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

// Creates the PC devices, puts the machine into its after-firmware state (BSP local APIC in
// virtual-wire mode, CMOS memory sizes, fw_cfg RAM size / CPU count / a RAM-only etc/e820,
// host bridge at 00:00.0, I/O APIC ID = cpus as in the MADT) and registers every window.
// Throws std::runtime_error if a window is already taken on a bus.
std::unique_ptr<PcDevices> BuildPcDevices(const PcConfig& config, PcCallbacks callbacks, Bus& pio,
                                          Bus& mmio);

}  // namespace rove
