// End to end: each loader's initial state, run by the real BT vCPU. Small guests assembled with
// nasm at test time read what the loader promised (registers, zero page, multiboot information,
// page tables) and report it on an I/O port, then halt.
#include <gtest/gtest.h>

#include <vector>

#include "loader_test_util.h"
#include "rove/engine/io_ports.h"
#include "rove/engine/loader/boot_layout.h"
#include "rove/engine/loader/kernel_loader.h"
#include "rove/engine/loader/multiboot_loader.h"
#include "rove/engine/loader/raw_loader.h"
#include "rove/engine/vcpu.h"

namespace rove::loader {
namespace {

using namespace rove::loader::testing;

constexpr uint16_t kReportPort = 0x500;

class ReportPorts : public IoPorts {
 public:
  uint32_t In(uint16_t, unsigned width) override {
    return width == 1 ? 0xFF : width == 2 ? 0xFFFF : 0xFFFFFFFF;
  }
  void Out(uint16_t port, unsigned, uint32_t value) override {
    if (port == kReportPort) reports.push_back(value);
  }
  std::vector<uint32_t> reports;
};

class BootHandoffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveTool("nasm")) GTEST_SKIP() << "nasm not installed";
  }
  Bytes Assemble(const std::string& source) {
    dir_.WriteText("guest.asm", source);
    std::string out;
    const int rc =
        RunCommand("cd " + dir_.path().string() + " && nasm -f bin -o guest.bin guest.asm", &out);
    EXPECT_EQ(rc, 0) << out;
    return ReadFile(dir_.File("guest.bin"));
  }
  // Runs until the guest halts (HLT with IF = 0).
  std::vector<uint32_t> Run(Vcpu& vcpu, ReportPorts& ports) {
    StopInfo stop = vcpu.Run(/*max_guest_exits=*/100000);
    EXPECT_EQ(stop.reason, StopReason::kHalted) << stop.message;
    return ports.reports;
  }
  TempDir dir_;
  std::unique_ptr<GuestMemory> mem_ = GuestMemory::Create(64 * kMiB);
  ReportPorts ports_;
};

TEST_F(BootHandoffTest, Linux64BitEntry) {
  // startup_64 stand-in at load address + 0x200.
  const Bytes code = Assemble(R"(
bits 64
org 0x100200
  mov dx, 0x500
  mov eax, esi                    ; RSI = zero page
  out dx, eax
  mov eax, [rsi + 0x202]          ; "HdrS"
  out dx, eax
  movzx eax, byte [rsi + 0x210]   ; type_of_loader
  out dx, eax
  mov eax, [rsi + 0x228]          ; cmd_line_ptr
  mov eax, [rax]                  ; first bytes of the command line
  out dx, eax
  mov eax, [rsi + 0x218]          ; ramdisk_image
  mov eax, [rax]                  ; first bytes of the initrd
  out dx, eax
  mov eax, cs
  out dx, eax
  mov eax, ss
  out dx, eax
  pushfq                          ; IF must be clear
  pop rax
  out dx, eax
  mov eax, [0x3FFFFF0]            ; identity-mapped RAM far from the kernel
  out dx, eax
  hlt
)");
  BzImageSpec spec;
  Bytes kernel = MakeBzImage(spec);
  const size_t setup = (spec.setup_sects + 1) * 512;
  std::copy(code.begin(), code.end(), kernel.begin() + setup + 0x200);
  const std::string kernel_path = dir_.Write("bzImage", kernel);
  const std::string initrd_path = dir_.Write("initrd", Bytes{'I', 'N', 'R', 'D', 0, 0, 0, 0});

  Vcpu vcpu(*mem_, ports_);
  LoadOptions o;
  o.kernel_path = kernel_path;
  o.initrd_path = initrd_path;
  o.cmdline = "root=/dev/ram0";
  o.acpi = AcpiConfig{};
  LoadKernel(*mem_, vcpu.state(), o);
  const uint32_t marker = 0x600DF00D;
  mem_->Write(0x3FFFFF0, &marker, sizeof marker);
  const std::vector<uint32_t> r = Run(vcpu, ports_);
  ASSERT_EQ(r.size(), 9u);
  EXPECT_EQ(r[0], kZeroPageAddr);
  EXPECT_EQ(r[1], 0x53726448u);  // "HdrS"
  EXPECT_EQ(r[2], 0xFFu);
  EXPECT_EQ(r[3], 0x746F6F72u);  // "root"
  EXPECT_EQ(r[4], 0x44524E49u);  // "INRD"
  EXPECT_EQ(r[5], kBootCodeSelector);
  EXPECT_EQ(r[6], kBootDataSelector);
  EXPECT_EQ(r[7] & 0x200, 0u);
  EXPECT_EQ(r[8], 0x600DF00Du);
}

TEST_F(BootHandoffTest, Linux32BitEntry) {
  const Bytes code = Assemble(R"(
bits 32
org 0x100000
  mov dx, 0x500
  mov eax, esi
  out dx, eax
  mov eax, [esi + 0x202]
  out dx, eax
  mov eax, ebx                    ; EBX, EBP, EDI are zero
  or eax, ebp
  or eax, edi
  out dx, eax
  mov eax, cr0                    ; PE set, PG clear
  out dx, eax
  hlt
)");
  BzImageSpec spec;
  Bytes kernel = MakeBzImage(spec);
  std::copy(code.begin(), code.end(), kernel.begin() + (spec.setup_sects + 1) * 512);
  Vcpu vcpu(*mem_, ports_);
  LinuxBootOptions o;
  o.entry = LinuxEntry::k32Bit;
  LoadLinux(*mem_, vcpu.state(), kernel, {}, o);
  const std::vector<uint32_t> r = Run(vcpu, ports_);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0], kZeroPageAddr);
  EXPECT_EQ(r[1], 0x53726448u);
  EXPECT_EQ(r[2], 0u);
  EXPECT_EQ(r[3] & 0x80000001u, 1u);
}

TEST_F(BootHandoffTest, MultibootKernel) {
  const Bytes image = Assemble(R"(
bits 32
org 0x100000
FLAGS equ 0x00010003
header:
  dd 0x1BADB002, FLAGS, -(0x1BADB002 + FLAGS)
  dd header, header, load_end, bss_end, entry
entry:
  mov dx, 0x500
  out dx, eax                     ; 0x2BADB002
  mov ecx, [ebx + 8]              ; mem_upper
  mov eax, ecx
  out dx, eax
  mov esi, [ebx + 16]             ; command line
  mov eax, [esi]
  out dx, eax
  mov esi, [ebx + 24]             ; first module
  mov esi, [esi]
  mov eax, [esi]
  out dx, eax
  mov eax, [bss_start]            ; bss is zero
  out dx, eax
  mov eax, ds                     ; reloading a segment from the boot GDT works
  mov es, eax
  mov eax, [es:header]
  out dx, eax
  hlt
align 16
load_end:
bss_start equ load_end
bss_end equ load_end + 0x1000
)");
  Vcpu vcpu(*mem_, ports_);
  const Bytes module = {'M', 'O', 'D', '1'};
  MultibootOptions o;
  o.cmdline = "mbk args";
  o.modules = {{module, "module"}};
  LoadMultiboot(*mem_, vcpu.state(), image, o);
  const std::vector<uint32_t> r = Run(vcpu, ports_);
  ASSERT_EQ(r.size(), 6u);
  EXPECT_EQ(r[0], 0x2BADB002u);
  EXPECT_EQ(r[1], 63u * 1024);
  EXPECT_EQ(r[2], 0x206B626Du);  // "mbk "
  EXPECT_EQ(r[3], 0x31444F4Du);  // "MOD1"
  EXPECT_EQ(r[4], 0u);
  EXPECT_EQ(r[5], 0x1BADB002u);
}

TEST_F(BootHandoffTest, RawBinaryInEveryMode) {
  struct Case {
    EntryMode mode;
    const char* bits;
  };
  for (const Case& c : {Case{EntryMode::kReal16, "16"}, Case{EntryMode::kProtected32, "32"},
                        Case{EntryMode::kLong64, "64"}}) {
    const Bytes code = Assemble(std::string("bits ") + c.bits + R"(
org 0x8000
  mov dx, 0x500
  mov eax, 0x1234ABCD
  out dx, eax
  hlt
)");
    ReportPorts ports;
    auto mem = GuestMemory::Create(16 * kMiB);
    Vcpu vcpu(*mem, ports);
    RawBinaryOptions o;
    o.load_address = 0x8000;
    o.entry = 0x8000;
    o.mode = c.mode;
    o.stack_pointer = 0x7000;
    LoadRawBinary(*mem, vcpu.state(), code, o);
    const std::vector<uint32_t> r = Run(vcpu, ports);
    ASSERT_EQ(r.size(), 1u) << c.bits;
    EXPECT_EQ(r[0], 0x1234ABCDu) << c.bits;
  }
}

}  // namespace
}  // namespace rove::loader
