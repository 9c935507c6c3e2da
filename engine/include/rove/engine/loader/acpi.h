// ACPI tables for the PC machine: RSDP (v2), RSDT, XSDT, FADT (revision 6), FACS, MADT, a
// minimal DSDT and, when the machine has ECAM, an MCFG.
//
// What the guest learns from them:
// - MADT: one enabled local APIC per vCPU (APIC IDs and ACPI processor UIDs 0..cpu_count-1), one
//   I/O APIC with ID cpu_count at ioapic_address, GSI base 0, interrupt source overrides ISA IRQ0
//   -> GSI 2 (the PIT) and IRQ sci_irq -> GSI sci_irq level-triggered active-high (the SCI), LINT1
//   of every local APIC is NMI; PCAT_COMPAT is set (an i8259 pair exists).
// - FADT: not hardware-reduced; SMI_CMD 0 (the hardware is always in ACPI mode, so the PM1
//   control register must read back SCI_EN = 1); PM1a event block (4 bytes), PM1a control block
//   (2 bytes), PM timer (4 bytes, 24-bit unless pm_timer_32bit) and GPE0 block (gpe0_length
//   bytes, none if 0) at the I/O ports given below;
//   SCI on IRQ sci_irq; RESET_REG = I/O port reset_port, value reset_value, with RESET_REG_SUP;
//   IAPC_BOOT_ARCH says legacy devices and an 8042 are present and VGA is not; the DSDT is
//   reached through X_DSDT (and the equal 32-bit DSDT field), the FACS through FIRMWARE_CTRL
//   only (the spec allows one of FIRMWARE_CTRL and X_FIRMWARE_CTRL).
// - DSDT: only \_S5_ = Package { s5_sleep_type, s5_sleep_type, 0, 0 }. To power off, Linux writes
//   (SLP_TYP << 10) | SLP_EN (bit 13) to the PM1a control port: the device model must treat
//   SLP_EN with SLP_TYP == s5_sleep_type as power-off.
//
// Port defaults (the devices' model must match them; they match devices/acpi_pm.h at base
// 0x600): PM1a event 0x600, PM1a control 0x604, PM timer 0x608, GPE0 0x60C (4 bytes), reset
// 0xCF9 (value 0x06).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "rove/engine/loader/boot_layout.h"

namespace rove {
class GuestMemory;
}

namespace rove::loader {

struct EcamConfig {
  uint64_t base = 0;  // physical address of bus start_bus's configuration space
  uint16_t segment = 0;
  uint8_t start_bus = 0;
  uint8_t end_bus = 0;
};

struct AcpiConfig {
  int cpu_count = 1;  // 1..254
  uint16_t pm1a_event_port = 0x600;
  uint16_t pm1a_control_port = 0x604;
  uint16_t pm_timer_port = 0x608;
  bool pm_timer_32bit = false;
  // GPE0 block (status then enable, gpe0_length bytes); gpe0_length 0 = no GPE0 block.
  uint16_t gpe0_port = 0x60C;
  uint8_t gpe0_length = 4;
  uint8_t sci_irq = 9;
  uint16_t reset_port = 0xCF9;
  uint8_t reset_value = 0x06;
  uint8_t s5_sleep_type = 5;
  uint32_t lapic_address = 0xFEE00000;
  uint32_t ioapic_address = 0xFEC00000;
  std::optional<EcamConfig> ecam;  // adds an MCFG table
};

// The tables as one contiguous image to be placed at guest physical address `base`, with the
// guest addresses of each table (0 where a table is absent).
struct AcpiTables {
  uint64_t base = 0;
  std::vector<uint8_t> image;
  uint64_t rsdp = 0, rsdt = 0, xsdt = 0, fadt = 0, facs = 0, madt = 0, dsdt = 0, mcfg = 0;
};

// Builds the tables for placement at `base` (16-byte aligned; the image must fit below 4 GiB).
// Throws LoadError for an invalid configuration (cpu_count out of range, misaligned base).
AcpiTables BuildAcpiTables(const AcpiConfig& config, uint64_t base = kAcpiTablesAddr);

// Builds the tables and writes them into guest RAM at kAcpiTablesAddr (inside the reserved
// 0xE0000-0xFFFFF area, where an OS's legacy RSDP search finds them). Returns the RSDP address.
// Throws LoadError if that area is not RAM.
uint64_t InstallAcpiTables(GuestMemory& memory, const AcpiConfig& config);

// Sum of bytes modulo 256 (0 for a table with a valid checksum).
uint8_t AcpiChecksum(const uint8_t* data, size_t length);

}  // namespace rove::loader
