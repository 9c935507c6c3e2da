#include "rove/engine/loader/acpi.h"

#include <gtest/gtest.h>

#include <string_view>

#include "loader_test_util.h"
#include "rove/engine/loader/load_error.h"

namespace rove::loader {
namespace {

using namespace rove::loader::testing;

// A view of one table inside the image.
struct Table {
  const uint8_t* p;
  uint32_t length;
  std::string_view signature() const { return {reinterpret_cast<const char*>(p), 4}; }
  template <typename T>
  T at(size_t off) const {
    T v;
    std::memcpy(&v, p + off, sizeof v);
    return v;
  }
};

Table TableAt(const AcpiTables& t, uint64_t gpa) {
  const uint8_t* p = t.image.data() + (gpa - t.base);
  uint32_t len;
  std::memcpy(&len, p + 4, 4);
  EXPECT_LE(gpa - t.base + len, t.image.size());
  return {p, len};
}

TEST(Acpi, RsdpPointsToValidTablesWithGoodChecksums) {
  AcpiTables t = BuildAcpiTables(AcpiConfig{});
  EXPECT_EQ(t.base, kAcpiTablesAddr);
  EXPECT_EQ(t.rsdp, kAcpiTablesAddr);
  const uint8_t* rsdp = t.image.data();
  EXPECT_EQ(std::string_view(reinterpret_cast<const char*>(rsdp), 8), "RSD PTR ");
  EXPECT_EQ(AcpiChecksum(rsdp, 20), 0);
  EXPECT_EQ(AcpiChecksum(rsdp, 36), 0);
  EXPECT_EQ(rsdp[15], 2);
  uint32_t rsdt;
  uint64_t xsdt;
  std::memcpy(&rsdt, rsdp + 16, 4);
  std::memcpy(&xsdt, rsdp + 24, 8);
  EXPECT_EQ(rsdt, t.rsdt);
  EXPECT_EQ(xsdt, t.xsdt);

  for (uint64_t gpa : {t.rsdt, t.xsdt, t.fadt, t.madt, t.dsdt}) {
    Table tb = TableAt(t, gpa);
    EXPECT_EQ(AcpiChecksum(tb.p, tb.length), 0) << tb.signature();
  }
  Table x = TableAt(t, t.xsdt);
  EXPECT_EQ(x.signature(), "XSDT");
  ASSERT_EQ(x.length, 36u + 16);
  EXPECT_EQ(TableAt(t, x.at<uint64_t>(36)).signature(), "FACP");
  EXPECT_EQ(TableAt(t, x.at<uint64_t>(44)).signature(), "APIC");
  Table r = TableAt(t, t.rsdt);
  EXPECT_EQ(r.signature(), "RSDT");
  EXPECT_EQ(r.at<uint32_t>(36), t.fadt);
  EXPECT_EQ(r.at<uint32_t>(40), t.madt);
  // Everything sits in the legacy BIOS area where the RSDP scan looks.
  EXPECT_LE(t.base + t.image.size(), kAcpiTablesEnd);
}

TEST(Acpi, FadtDescribesPortsResetAndDsdt) {
  AcpiConfig c;
  c.pm1a_event_port = 0xB000;
  c.pm1a_control_port = 0xB004;
  c.pm_timer_port = 0xB008;
  AcpiTables t = BuildAcpiTables(c);
  Table f = TableAt(t, t.fadt);
  EXPECT_EQ(f.signature(), "FACP");
  EXPECT_EQ(f.length, 276u);
  EXPECT_EQ(f.p[8], 6);              // revision
  EXPECT_EQ(f.at<uint16_t>(46), 9);  // SCI_INT
  EXPECT_EQ(f.at<uint32_t>(56), 0xB000u);
  EXPECT_EQ(f.at<uint32_t>(64), 0xB004u);
  EXPECT_EQ(f.at<uint32_t>(76), 0xB008u);
  EXPECT_EQ(f.p[88], 4);
  EXPECT_EQ(f.p[89], 2);
  EXPECT_EQ(f.p[91], 4);
  const uint32_t flags = f.at<uint32_t>(112);
  EXPECT_TRUE(flags & (1u << 10)) << "RESET_REG_SUP";
  EXPECT_FALSE(flags & (1u << 20)) << "HW_REDUCED_ACPI";
  EXPECT_FALSE(flags & (1u << 8)) << "TMR_VAL_EXT (24-bit timer by default)";
  EXPECT_EQ(f.p[116], 1);  // RESET_REG: system I/O
  EXPECT_EQ(f.p[117], 8);
  EXPECT_EQ(f.at<uint64_t>(120), 0xCF9u);
  EXPECT_EQ(f.p[128], 0x06);
  EXPECT_EQ(f.at<uint64_t>(140), t.dsdt);  // X_DSDT
  EXPECT_EQ(f.at<uint32_t>(40), t.dsdt);
  EXPECT_EQ(f.at<uint32_t>(36), t.facs);        // FIRMWARE_CTRL
  EXPECT_EQ(f.at<uint64_t>(132), 0u);           // X_FIRMWARE_CTRL: only one FACS pointer
  EXPECT_EQ(f.at<uint64_t>(148 + 4), 0xB000u);  // X_PM1a_EVT_BLK address
  EXPECT_EQ(f.at<uint64_t>(172 + 4), 0xB004u);
  EXPECT_EQ(f.at<uint64_t>(208 + 4), 0xB008u);
  EXPECT_EQ(t.facs % 64, 0u);
  EXPECT_EQ(std::string_view(reinterpret_cast<const char*>(t.image.data() + (t.facs - t.base)), 4),
            "FACS");
}

TEST(Acpi, DefaultPortsAreDocumentedOnes) {
  AcpiConfig c;
  EXPECT_EQ(c.pm1a_event_port, 0x600);
  EXPECT_EQ(c.pm1a_control_port, 0x604);
  EXPECT_EQ(c.pm_timer_port, 0x608);
  AcpiTables t = BuildAcpiTables(c);
  Table f = TableAt(t, t.fadt);
  EXPECT_EQ(f.at<uint32_t>(56), 0x600u);
  EXPECT_EQ(f.at<uint32_t>(64), 0x604u);
  EXPECT_EQ(f.at<uint32_t>(76), 0x608u);
  EXPECT_EQ(f.at<uint32_t>(80), 0x60Cu);  // GPE0_BLK
  EXPECT_EQ(f.p[92], 4);
  EXPECT_EQ(f.at<uint64_t>(220 + 4), 0x60Cu);
  c.gpe0_length = 0;
  AcpiTables no_gpe = BuildAcpiTables(c);
  EXPECT_EQ(TableAt(no_gpe, no_gpe.fadt).at<uint32_t>(80), 0u);
  c.gpe0_length = 3;
  EXPECT_THROW(BuildAcpiTables(c), LoadError);
}

TEST(Acpi, MadtHasOneLocalApicPerCpuIoApicAndOverrides) {
  for (int cpus : {1, 2, 8}) {
    AcpiConfig c;
    c.cpu_count = cpus;
    AcpiTables t = BuildAcpiTables(c);
    Table m = TableAt(t, t.madt);
    EXPECT_EQ(m.signature(), "APIC");
    EXPECT_EQ(m.at<uint32_t>(36), 0xFEE00000u);
    EXPECT_EQ(m.at<uint32_t>(40) & 1, 1u);  // PCAT_COMPAT
    int lapics = 0, ioapics = 0, overrides = 0, nmis = 0, entries = 0;
    for (uint32_t o = 44; o < m.length; o += m.p[o + 1]) {
      ASSERT_GE(m.p[o + 1], 2);
      ++entries;
      switch (m.p[o]) {
        case 0:
          EXPECT_EQ(m.p[o + 3], lapics) << "APIC IDs are 0..n-1";
          EXPECT_EQ(m.at<uint32_t>(o + 4), 1u);
          ++lapics;
          break;
        case 1:
          EXPECT_EQ(m.p[o + 2], cpus) << "I/O APIC ID follows the CPUs'";
          EXPECT_EQ(m.at<uint32_t>(o + 4), 0xFEC00000u);
          EXPECT_EQ(m.at<uint32_t>(o + 8), 0u);
          ++ioapics;
          break;
        case 2:
          if (m.p[o + 3] == 0) {
            EXPECT_EQ(m.at<uint32_t>(o + 4), 2u);
          } else {
            EXPECT_EQ(m.p[o + 3], 9);
            EXPECT_EQ(m.at<uint32_t>(o + 4), 9u);
            EXPECT_EQ(m.at<uint16_t>(o + 8), 0xDu) << "level, active high";
          }
          ++overrides;
          break;
        case 4:
          ++nmis;
          break;
        default:
          ADD_FAILURE() << "unexpected MADT entry type " << int(m.p[o]);
      }
    }
    EXPECT_EQ(lapics, cpus);
    EXPECT_EQ(ioapics, 1);
    EXPECT_EQ(overrides, 2);
    EXPECT_EQ(nmis, 1);
    EXPECT_EQ(entries, cpus + 4);
  }
}

TEST(Acpi, DsdtHoldsS5Package) {
  AcpiTables t = BuildAcpiTables(AcpiConfig{});
  Table d = TableAt(t, t.dsdt);
  EXPECT_EQ(d.signature(), "DSDT");
  std::string_view body(reinterpret_cast<const char*>(d.p) + 36, d.length - 36);
  EXPECT_NE(body.find("_S5_"), std::string_view::npos);
  // NameOp "_S5_" PackageOp PkgLength NumElements BytePrefix 5 ...
  const uint8_t expect[] = {0x08, '_', 'S', '5', '_', 0x12, 0x0A, 0x04, 0x0A, 0x05, 0x0A, 0x05};
  EXPECT_EQ(0, std::memcmp(d.p + 36, expect, sizeof expect));
}

TEST(Acpi, McfgOnlyWithEcam) {
  EXPECT_EQ(BuildAcpiTables(AcpiConfig{}).mcfg, 0u);
  AcpiConfig c;
  c.ecam = EcamConfig{0xB0000000, 0, 0, 255};
  AcpiTables t = BuildAcpiTables(c);
  ASSERT_NE(t.mcfg, 0u);
  Table m = TableAt(t, t.mcfg);
  EXPECT_EQ(m.signature(), "MCFG");
  EXPECT_EQ(AcpiChecksum(m.p, m.length), 0);
  EXPECT_EQ(m.at<uint64_t>(44), 0xB0000000u);
  EXPECT_EQ(m.p[55], 255);
  Table x = TableAt(t, t.xsdt);
  EXPECT_EQ(x.length, 36u + 24);
  EXPECT_EQ(x.at<uint64_t>(52), t.mcfg);
}

TEST(Acpi, InvalidConfigurationsAreRefused) {
  AcpiConfig c;
  c.cpu_count = 0;
  EXPECT_THROW(BuildAcpiTables(c), LoadError);
  c.cpu_count = 255;
  EXPECT_THROW(BuildAcpiTables(c), LoadError);
  c.cpu_count = 1;
  EXPECT_THROW(BuildAcpiTables(c, 0xE0004), LoadError);
  c.sci_irq = 16;
  EXPECT_THROW(BuildAcpiTables(c), LoadError);
}

TEST(Acpi, InstallWritesTablesIntoGuestRam) {
  auto mem = GuestMemory::Create(64 * kMiB);
  AcpiConfig c;
  c.cpu_count = 2;
  uint64_t rsdp = InstallAcpiTables(*mem, c);
  EXPECT_EQ(rsdp, kAcpiTablesAddr);
  AcpiTables t = BuildAcpiTables(c);
  EXPECT_EQ(ReadGuest(*mem, kAcpiTablesAddr, t.image.size()), t.image);
}

// Independent check: ACPICA's disassembler must accept every table without complaint.
TEST(Acpi, IaslDisassemblesTables) {
  if (!HaveTool("iasl")) GTEST_SKIP() << "iasl not installed (Debian package acpica-tools)";
  AcpiConfig c;
  c.cpu_count = 2;
  c.ecam = EcamConfig{0xB0000000, 0, 0, 255};
  AcpiTables t = BuildAcpiTables(c);
  TempDir dir;
  struct Named {
    const char* file;
    uint64_t gpa;
    const char* must_contain;
  };
  const Named tables[] = {
      {"facp.dat", t.fadt, "Reset Register"},
      {"apic.dat", t.madt, "Local Apic"},
      {"dsdt.dat", t.dsdt, "_S5_"},
      {"xsdt.dat", t.xsdt, "ACPI Table Address"},
      {"rsdt.dat", t.rsdt, "ACPI Table Address"},
      {"mcfg.dat", t.mcfg, "Base Address"},
  };
  for (const Named& n : tables) {
    Table tb = TableAt(t, n.gpa);
    std::string path = dir.Write(n.file, Bytes(tb.p, tb.p + tb.length));
    std::string out;
    int rc = RunCommand("cd " + dir.path().string() + " && iasl -d " + path, &out);
    EXPECT_EQ(rc, 0) << n.file << ":\n" << out;
    std::string dsl_path = path.substr(0, path.size() - 4) + ".dsl";
    Bytes dsl = ReadFile(dsl_path);
    std::string text(dsl.begin(), dsl.end());
    EXPECT_NE(text.find(n.must_contain), std::string::npos) << n.file << ":\n" << text;
    for (const char* bad : {"Invalid", "invalid", "Incorrect", "Error", "WARNING", "Warning"}) {
      EXPECT_EQ(text.find(bad), std::string::npos) << n.file << " mentions " << bad << ":\n"
                                                   << text;
      EXPECT_EQ(out.find(bad), std::string::npos) << n.file << " mentions " << bad << ":\n" << out;
    }
  }
}

}  // namespace
}  // namespace rove::loader
