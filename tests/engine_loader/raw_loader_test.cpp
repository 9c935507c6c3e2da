#include "rove/engine/loader/raw_loader.h"

#include <gtest/gtest.h>

#include "loader_test_util.h"
#include "rove/engine/loader/boot_layout.h"
#include "rove/engine/loader/load_error.h"

namespace rove::loader {
namespace {

using namespace rove::loader::testing;

class RawLoaderTest : public ::testing::Test {
 protected:
  void ExpectError(const Bytes& image, const RawBinaryOptions& o, const std::string& needle) {
    auto cpu = GarbageCpu();
    try {
      LoadRawBinary(*mem_, *cpu, image, o);
      ADD_FAILURE() << "no error; expected one mentioning \"" << needle << "\"";
    } catch (const LoadError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
  std::unique_ptr<GuestMemory> mem_ = GuestMemory::Create(16 * kMiB);
  std::unique_ptr<CpuState> cpu_ = GarbageCpu();
  const Bytes code_ = {0xF4, 0xEB, 0xFD, 0x90, 0x90};  // hlt; jmp $-1; nop; nop
};

TEST_F(RawLoaderTest, RealModeBootSector) {
  RawBinaryOptions o;
  o.load_address = 0x7C00;
  o.entry = 0x7C00;
  o.mode = EntryMode::kReal16;
  o.stack_pointer = 0x7C00;
  LoadResult r = LoadRawBinary(*mem_, *cpu_, code_, o);
  EXPECT_EQ(r.format, KernelFormat::kRawBinary);
  EXPECT_EQ(ReadGuest(*mem_, 0x7C00, code_.size()), code_);
  const CpuState& c = *cpu_;
  EXPECT_FALSE(c.protected_mode());
  EXPECT_EQ(c.code_bits(), 16);
  EXPECT_EQ(c.seg[kCs].selector, 0);
  EXPECT_EQ(c.seg[kCs].base, 0u);
  EXPECT_EQ(c.rip, 0x7C00u);
  EXPECT_EQ(c.gpr[kRsp], 0x7C00u);
  EXPECT_EQ(c.gpr[kRax], 0u);
  EXPECT_FALSE(c.rflags & rflags::kIf);
  EXPECT_EQ(c.idtr.limit, 0x3FFu);
  // Nothing else written: the GDT area is untouched.
  EXPECT_EQ(r.ranges.size(), 1u);
}

TEST_F(RawLoaderTest, RealModeSegmentDerivation) {
  RawBinaryOptions o;
  o.load_address = 0xF0000;
  o.entry = 0xF0010;
  o.mode = EntryMode::kReal16;
  LoadRawBinary(*mem_, *cpu_, code_, o);
  EXPECT_EQ(cpu_->seg[kCs].selector, 0xF000);
  EXPECT_EQ(cpu_->seg[kCs].base, 0xF0000u);
  EXPECT_EQ(cpu_->rip, 0x10u);
  o.real_mode_cs = 0xEFFF;
  LoadRawBinary(*mem_, *cpu_, code_, o);
  EXPECT_EQ(cpu_->seg[kCs].base, 0xEFFF0u);
  EXPECT_EQ(cpu_->rip, 0x20u);
  o.real_mode_cs = 0x1000;
  ExpectError(code_, o, "not reachable");
  o.real_mode_cs.reset();
  o.entry = 0x100000;
  ExpectError(code_, o, "above 1 MiB");
}

TEST_F(RawLoaderTest, ProtectedMode32) {
  RawBinaryOptions o;
  o.load_address = 0x100000;
  o.entry = 0x100001;
  o.mode = EntryMode::kProtected32;
  o.stack_pointer = 0x90000;
  LoadRawBinary(*mem_, *cpu_, code_, o);
  const CpuState& c = *cpu_;
  EXPECT_TRUE(c.protected_mode());
  EXPECT_FALSE(c.cr0 & cr0::kPg);
  EXPECT_EQ(c.code_bits(), 32);
  EXPECT_EQ(c.stack_bits(), 32);
  EXPECT_EQ(c.rip, 0x100001u);
  EXPECT_EQ(c.gpr[kRsp], 0x90000u);
  EXPECT_EQ(c.gdtr.base, kBootGdtAddr);
  EXPECT_NE(GuestGet<uint64_t>(*mem_, kBootGdtAddr + 0x10), 0u);
  o.entry = 0x100000000ull;
  ExpectError(code_, o, "above 4 GiB");
}

TEST_F(RawLoaderTest, LongMode64) {
  RawBinaryOptions o;
  o.load_address = 0x200000;
  o.entry = 0x200000;
  o.mode = EntryMode::kLong64;
  LoadRawBinary(*mem_, *cpu_, code_, o);
  const CpuState& c = *cpu_;
  EXPECT_TRUE(c.code64());
  EXPECT_EQ(c.code_bits(), 64);
  EXPECT_EQ(c.rip, 0x200000u);
  for (uint64_t va : {0x0ull, 0x200000ull, 0xFFFFFull, 0xC0000000ull, 0xFFFFF000ull}) {
    EXPECT_EQ(Translate(*mem_, c.cr3, va), va);
  }
}

TEST_F(RawLoaderTest, Errors) {
  RawBinaryOptions o;
  o.mode = EntryMode::kProtected32;
  o.load_address = 0x100000;
  ExpectError({}, o, "empty");
  o.load_address = 16 * kMiB - 2;
  ExpectError(code_, o, "does not fit in guest RAM");
  o.load_address = ~0ull - 2;
  ExpectError(code_, o, "wraps");
  o.load_address = kBootGdtAddr;
  ExpectError(code_, o, "boot GDT");
  o.mode = EntryMode::kLong64;
  o.load_address = kPageTablesAddr + 0x1000;
  ExpectError(code_, o, "page tables");
  // Real mode writes no loader structures, so the same place is fine there.
  o.mode = EntryMode::kReal16;
  o.entry = kPageTablesAddr + 0x1000;
  EXPECT_NO_THROW(LoadRawBinary(*mem_, *cpu_, code_, o));
}

}  // namespace
}  // namespace rove::loader
