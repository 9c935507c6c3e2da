// ACPI table builder. Table layouts follow the ACPI 6.x specification; the DSDT's AML is
// assembled by hand (it holds one named package).
#include "rove/engine/loader/acpi.h"

#include <fmt/format.h>

#include <string_view>

#include "bytes.h"
#include "guest_writer.h"
#include "rove/engine/loader/load_error.h"
#include "rove/mmu/guest_memory.h"

namespace rove::loader {
namespace {

using detail::AlignUp;
using detail::ByteBuffer;

constexpr std::string_view kOemId = "ROVE  ";         // 6 bytes
constexpr std::string_view kOemTableId = "ROVEVM  ";  // 8 bytes
constexpr std::string_view kCreatorId = "ROVE";
constexpr uint32_t kOemRevision = 1;
constexpr uint32_t kCreatorRevision = 1;
constexpr size_t kHeaderSize = 36;

// Generic Address Structure address space IDs.
constexpr uint8_t kGasSystemIo = 1;
constexpr uint8_t kGasAccessByte = 1;

// FADT flags.
constexpr uint32_t kFadtWbinvd = 1u << 0;
constexpr uint32_t kFadtProcC1 = 1u << 2;
constexpr uint32_t kFadtPwrButton = 1u << 4;  // no fixed-feature power button
constexpr uint32_t kFadtSlpButton = 1u << 5;  // no fixed-feature sleep button
constexpr uint32_t kFadtTmrValExt = 1u << 8;
constexpr uint32_t kFadtResetRegSup = 1u << 10;
// IAPC_BOOT_ARCH.
constexpr uint16_t kBootArchLegacyDevices = 1u << 0;
constexpr uint16_t kBootArch8042 = 1u << 1;
constexpr uint16_t kBootArchVgaNotPresent = 1u << 2;

// MADT.
constexpr uint32_t kMadtPcatCompat = 1u << 0;
constexpr uint8_t kMadtLocalApic = 0;
constexpr uint8_t kMadtIoApic = 1;
constexpr uint8_t kMadtSourceOverride = 2;
constexpr uint8_t kMadtLocalApicNmi = 4;
constexpr uint32_t kLocalApicEnabled = 1u << 0;
constexpr uint16_t kMpsActiveHigh = 0x1;
constexpr uint16_t kMpsLevel = 0x3 << 2;

// AML opcodes.
constexpr uint8_t kAmlNameOp = 0x08;
constexpr uint8_t kAmlPackageOp = 0x12;
constexpr uint8_t kAmlBytePrefix = 0x0A;

// Starts a table with its standard header; length and checksum are filled by FinishTable.
ByteBuffer StartTable(std::string_view signature, uint8_t revision) {
  ByteBuffer t(kHeaderSize);
  t.PutString(0, signature);
  t.Put8(8, revision);
  t.PutString(10, kOemId);
  t.PutString(16, kOemTableId);
  t.Put32(24, kOemRevision);
  t.PutString(28, kCreatorId);
  t.Put32(32, kCreatorRevision);
  return t;
}

void FinishTable(ByteBuffer& t) {
  t.Put32(4, static_cast<uint32_t>(t.size()));
  t.Put8(9, 0);
  t.Put8(9, static_cast<uint8_t>(-AcpiChecksum(t.data(), t.size())));
}

void PutGas(ByteBuffer& t, size_t offset, uint8_t space, uint8_t bit_width, uint8_t access_size,
            uint64_t address) {
  t.Put8(offset, space);
  t.Put8(offset + 1, bit_width);
  t.Put8(offset + 2, 0);
  t.Put8(offset + 3, access_size);
  t.Put64(offset + 4, address);
}

// Places tables one after another in the image, each aligned.
class ImageBuilder {
 public:
  explicit ImageBuilder(uint64_t base) : base_(base) {}
  // Reserves `size` bytes aligned to `align` and returns the guest address.
  uint64_t Reserve(size_t size, size_t align) {
    size_t off = AlignUp(image_.size(), align);
    image_.Grow(off + size);
    return base_ + off;
  }
  void Place(uint64_t gpa, const ByteBuffer& table) { image_.PutBytes(gpa - base_, table.span()); }
  std::vector<uint8_t> Take() { return std::move(image_.vector()); }

 private:
  uint64_t base_;
  ByteBuffer image_;
};

ByteBuffer BuildDsdt(const AcpiConfig& c) {
  ByteBuffer t = StartTable("DSDT", 2);
  // Name (_S5_, Package (4) { typ, typ, 0, 0 })
  const uint8_t aml[] = {kAmlNameOp,
                         '_',
                         'S',
                         '5',
                         '_',
                         kAmlPackageOp,
                         0x0A,  // PkgLength: itself, NumElements and 8 bytes of elements
                         0x04,  // NumElements
                         kAmlBytePrefix,
                         c.s5_sleep_type,
                         kAmlBytePrefix,
                         c.s5_sleep_type,
                         kAmlBytePrefix,
                         0x00,
                         kAmlBytePrefix,
                         0x00};
  static_assert(sizeof(aml) == 16);
  t.PutBytes(kHeaderSize, aml);
  FinishTable(t);
  return t;
}

ByteBuffer BuildFacs() {
  ByteBuffer t(64);
  t.PutString(0, "FACS");
  t.Put32(4, 64);
  t.Put8(32, 2);  // version
  return t;
}

ByteBuffer BuildFadt(const AcpiConfig& c, uint64_t dsdt, uint64_t facs) {
  ByteBuffer t = StartTable("FACP", 6);
  t.Grow(276);
  t.Put32(36, static_cast<uint32_t>(facs));          // FIRMWARE_CTRL
  t.Put32(40, static_cast<uint32_t>(dsdt));          // DSDT
  t.Put8(45, 0);                                     // preferred PM profile: unspecified
  t.Put16(46, c.sci_irq);                            // SCI_INT
  t.Put32(48, 0);                                    // SMI_CMD: none, always in ACPI mode
  t.Put32(56, c.pm1a_event_port);                    // PM1a_EVT_BLK
  t.Put32(64, c.pm1a_control_port);                  // PM1a_CNT_BLK
  t.Put32(76, c.pm_timer_port);                      // PM_TMR_BLK
  if (c.gpe0_length != 0) t.Put32(80, c.gpe0_port);  // GPE0_BLK
  t.Put8(88, 4);                                     // PM1_EVT_LEN
  t.Put8(89, 2);                                     // PM1_CNT_LEN
  t.Put8(91, 4);                                     // PM_TMR_LEN
  t.Put8(92, c.gpe0_length);                         // GPE0_BLK_LEN
  t.Put16(96, 101);                                  // P_LVL2_LAT > 100: C2 not supported
  t.Put16(98, 1001);                                 // P_LVL3_LAT > 1000: C3 not supported
  t.Put8(108, 0x32);                                 // CENTURY: CMOS register of the century
  t.Put16(109, kBootArchLegacyDevices | kBootArch8042 | kBootArchVgaNotPresent);
  uint32_t flags = kFadtWbinvd | kFadtProcC1 | kFadtPwrButton | kFadtSlpButton | kFadtResetRegSup;
  if (c.pm_timer_32bit) flags |= kFadtTmrValExt;
  t.Put32(112, flags);
  PutGas(t, 116, kGasSystemIo, 8, kGasAccessByte, c.reset_port);  // RESET_REG
  t.Put8(128, c.reset_value);
  t.Put8(131, 0);  // FADT minor version
  // X_FIRMWARE_CTRL stays 0: the spec allows only one FACS pointer, and the FACS is below 4 GiB.
  t.Put64(140, dsdt);                                        // X_DSDT
  PutGas(t, 148, kGasSystemIo, 32, 0, c.pm1a_event_port);    // X_PM1a_EVT_BLK
  PutGas(t, 172, kGasSystemIo, 16, 0, c.pm1a_control_port);  // X_PM1a_CNT_BLK
  PutGas(t, 208, kGasSystemIo, 32, 0, c.pm_timer_port);      // X_PM_TMR_BLK
  if (c.gpe0_length != 0) {
    PutGas(t, 220, kGasSystemIo, static_cast<uint8_t>(c.gpe0_length * 8), 0, c.gpe0_port);
  }
  FinishTable(t);
  return t;
}

ByteBuffer BuildMadt(const AcpiConfig& c) {
  ByteBuffer t = StartTable("APIC", 5);
  t.Put32(36, c.lapic_address);
  t.Put32(40, kMadtPcatCompat);
  size_t o = 44;
  for (int i = 0; i < c.cpu_count; ++i, o += 8) {
    t.Put8(o, kMadtLocalApic);
    t.Put8(o + 1, 8);
    t.Put8(o + 2, static_cast<uint8_t>(i));  // ACPI processor UID
    t.Put8(o + 3, static_cast<uint8_t>(i));  // APIC ID
    t.Put32(o + 4, kLocalApicEnabled);
  }
  t.Put8(o, kMadtIoApic);
  t.Put8(o + 1, 12);
  t.Put8(o + 2, static_cast<uint8_t>(c.cpu_count));  // I/O APIC ID, after the CPUs'
  t.Put8(o + 3, 0);
  t.Put32(o + 4, c.ioapic_address);
  t.Put32(o + 8, 0);  // GSI base
  o += 12;
  auto source_override = [&](uint8_t irq, uint32_t gsi, uint16_t flags) {
    t.Put8(o, kMadtSourceOverride);
    t.Put8(o + 1, 10);
    t.Put8(o + 2, 0);  // ISA
    t.Put8(o + 3, irq);
    t.Put32(o + 4, gsi);
    t.Put16(o + 8, flags);
    o += 10;
  };
  source_override(0, 2, 0);  // PIT: conforms to the bus (edge, active high)
  source_override(c.sci_irq, c.sci_irq, kMpsActiveHigh | kMpsLevel);
  t.Put8(o, kMadtLocalApicNmi);
  t.Put8(o + 1, 6);
  t.Put8(o + 2, 0xFF);  // all processors
  t.Put16(o + 3, 0);    // conforms to the bus
  t.Put8(o + 5, 1);     // LINT1
  FinishTable(t);
  return t;
}

ByteBuffer BuildMcfg(const EcamConfig& e) {
  ByteBuffer t = StartTable("MCFG", 1);
  t.Put64(44, e.base);
  t.Put16(52, e.segment);
  t.Put8(54, e.start_bus);
  t.Put8(55, e.end_bus);
  t.Put32(56, 0);
  FinishTable(t);
  return t;
}

}  // namespace

uint8_t AcpiChecksum(const uint8_t* data, size_t length) {
  uint8_t sum = 0;
  for (size_t i = 0; i < length; ++i) sum = static_cast<uint8_t>(sum + data[i]);
  return sum;
}

AcpiTables BuildAcpiTables(const AcpiConfig& c, uint64_t base) {
  if (c.cpu_count < 1 || c.cpu_count > 254) {
    throw LoadError(fmt::format("ACPI: cpu count {} is outside 1..254", c.cpu_count));
  }
  if (base % 16 != 0)
    throw LoadError(fmt::format("ACPI: table base {:#x} is not 16-byte aligned", base));
  if (c.sci_irq >= 16)
    throw LoadError(fmt::format("ACPI: SCI IRQ {} is not an ISA IRQ", c.sci_irq));
  if (c.gpe0_length % 2 != 0 || c.gpe0_length > 30) {
    throw LoadError(
        fmt::format("ACPI: GPE0 block length {} is not an even number up to 30", c.gpe0_length));
  }
  if (c.ecam && c.ecam->end_bus < c.ecam->start_bus) {
    throw LoadError("ACPI: ECAM end bus is below its start bus");
  }

  AcpiTables out;
  out.base = base;
  ImageBuilder image(base);
  constexpr size_t kRsdpSize = 36;
  const size_t table_count = c.ecam ? 3 : 2;  // FADT, MADT, [MCFG]

  ByteBuffer dsdt = BuildDsdt(c);
  ByteBuffer facs = BuildFacs();
  ByteBuffer madt = BuildMadt(c);
  std::optional<ByteBuffer> mcfg;
  if (c.ecam) mcfg = BuildMcfg(*c.ecam);

  out.rsdp = image.Reserve(kRsdpSize, 16);
  out.facs = image.Reserve(facs.size(), 64);
  out.rsdt = image.Reserve(kHeaderSize + 4 * table_count, 16);
  out.xsdt = image.Reserve(kHeaderSize + 8 * table_count, 16);
  out.fadt = image.Reserve(276, 16);
  out.madt = image.Reserve(madt.size(), 16);
  out.dsdt = image.Reserve(dsdt.size(), 16);
  if (mcfg) out.mcfg = image.Reserve(mcfg->size(), 16);

  ByteBuffer fadt = BuildFadt(c, out.dsdt, out.facs);
  std::vector<uint64_t> entries = {out.fadt, out.madt};
  if (mcfg) entries.push_back(out.mcfg);

  ByteBuffer rsdt = StartTable("RSDT", 1);
  ByteBuffer xsdt = StartTable("XSDT", 1);
  for (size_t i = 0; i < entries.size(); ++i) {
    rsdt.Put32(kHeaderSize + 4 * i, static_cast<uint32_t>(entries[i]));
    xsdt.Put64(kHeaderSize + 8 * i, entries[i]);
  }
  FinishTable(rsdt);
  FinishTable(xsdt);

  ByteBuffer rsdp(kRsdpSize);
  rsdp.PutString(0, "RSD PTR ");
  rsdp.PutString(9, kOemId);
  rsdp.Put8(15, 2);  // revision: ACPI 2.0+
  rsdp.Put32(16, static_cast<uint32_t>(out.rsdt));
  rsdp.Put32(20, kRsdpSize);
  rsdp.Put64(24, out.xsdt);
  rsdp.Put8(8, static_cast<uint8_t>(-AcpiChecksum(rsdp.data(), 20)));
  rsdp.Put8(32, static_cast<uint8_t>(-AcpiChecksum(rsdp.data(), kRsdpSize)));

  image.Place(out.rsdp, rsdp);
  image.Place(out.facs, facs);
  image.Place(out.rsdt, rsdt);
  image.Place(out.xsdt, xsdt);
  image.Place(out.fadt, fadt);
  image.Place(out.madt, madt);
  image.Place(out.dsdt, dsdt);
  if (mcfg) image.Place(out.mcfg, *mcfg);
  out.image = image.Take();
  if (base + out.image.size() > (1ull << 32)) {
    throw LoadError(fmt::format("ACPI: tables at {:#x} do not fit below 4 GiB", base));
  }
  return out;
}

uint64_t InstallAcpiTables(GuestMemory& memory, const AcpiConfig& config) {
  AcpiTables tables = BuildAcpiTables(config, kAcpiTablesAddr);
  if (kAcpiTablesAddr + tables.image.size() > kAcpiTablesEnd) {
    throw LoadError(fmt::format("ACPI: {} bytes of tables do not fit in [{:#x}, {:#x})",
                                tables.image.size(), kAcpiTablesAddr, kAcpiTablesEnd));
  }
  detail::GuestWriter writer(memory);
  writer.Write("ACPI tables", kAcpiTablesAddr, tables.image);
  return tables.rsdp;
}

}  // namespace rove::loader
