#include "rove/devices/acpi_pm.h"

#include <gtest/gtest.h>

#include <array>
#include <memory>

namespace rove {
namespace {

class LevelSink : public IrqSink {
 public:
  void SetIrq(unsigned line, bool level) override { levels[line] = level; }
  std::array<bool, 24> levels{};
};

constexpr uint16_t kBase = 0x600;

class AcpiPmTest : public ::testing::Test {
 protected:
  AcpiPmTest() {
    pm = std::make_shared<AcpiPm>(clock, router.Line(9), [this] { ++power_offs; });
    pio.Insert(pm, kBase, AcpiPm::kSize);
  }
  uint32_t In(uint16_t port, unsigned width) {
    std::array<uint8_t, 4> b{};
    pio.Read(port, std::span(b).first(width));
    return uint32_t(LoadLe(std::span(b).first(width)));
  }
  void Out(uint16_t port, unsigned width, uint32_t v) {
    std::array<uint8_t, 4> b{};
    StoreLe(b, v);
    pio.Write(port, std::span(b).first(width));
  }

  ManualClock clock;
  LevelSink sink;
  IrqRouter router{&sink, nullptr};
  std::shared_ptr<AcpiPm> pm;
  Bus pio{"pio"};
  int power_offs = 0;
};

TEST_F(AcpiPmTest, SciEnabledAndS5PowersOff) {
  EXPECT_EQ(In(kBase + 4, 2) & AcpiPm::kSciEn, AcpiPm::kSciEn);  // already in ACPI mode
  // Another sleep type does nothing.
  Out(kBase + 4, 2, (3u << 10) | AcpiPm::kSlpEn);
  EXPECT_EQ(power_offs, 0);
  // SLP_TYP without SLP_EN does nothing either.
  Out(kBase + 4, 2, 5u << 10);
  EXPECT_EQ(power_offs, 0);
  EXPECT_EQ(In(kBase + 4, 2), (5u << 10) | AcpiPm::kSciEn);  // SLP_EN reads 0
  // What Linux's acpi_hw_legacy_sleep does for S5: SLP_TYP, then SLP_EN.
  Out(kBase + 4, 2, (5u << 10) | AcpiPm::kSlpEn);
  EXPECT_EQ(power_offs, 1);
  // Byte access to the high byte works too.
  Out(kBase + 5, 1, uint8_t(((5u << 10) | AcpiPm::kSlpEn) >> 8));
  EXPECT_EQ(power_offs, 2);
}

TEST_F(AcpiPmTest, PmTimerRunsAt3579545HzAndWraps24Bits) {
  const uint32_t t0 = In(kBase + 8, 4);
  clock.Advance(1'000'000);  // 1 ms = 3579.5 ticks
  const uint32_t t1 = In(kBase + 8, 4);
  EXPECT_NEAR(double((t1 - t0) & 0xFFFFFF), 3579.5, 1.0);
  clock.Advance(5'000'000'000);  // 5 s: 17.9 M ticks, past 2^24
  EXPECT_LT(In(kBase + 8, 4), 1u << 24);
}

TEST_F(AcpiPmTest, PowerButtonRaisesSciUntilCleared) {
  pm->PressPowerButton();
  EXPECT_FALSE(sink.levels[9]);           // not enabled
  Out(kBase + 2, 2, AcpiPm::kPwrbtnSts);  // PWRBTN_EN
  EXPECT_TRUE(sink.levels[9]);
  EXPECT_EQ(In(kBase, 2) & AcpiPm::kPwrbtnSts, AcpiPm::kPwrbtnSts);
  Out(kBase, 2, AcpiPm::kPwrbtnSts);  // write 1 to clear
  EXPECT_EQ(In(kBase, 2) & AcpiPm::kPwrbtnSts, 0);
  EXPECT_FALSE(sink.levels[9]);
  // GPE0.
  pm->SetGpe(3);
  Out(kBase + 0xE, 2, 1u << 3);
  EXPECT_TRUE(sink.levels[9]);
  Out(kBase + 0xC, 1, 1u << 3);
  EXPECT_FALSE(sink.levels[9]);
}

TEST_F(AcpiPmTest, TimerStatusWhenBit23Toggles) {
  Out(kBase, 2, 0xFFFF);
  EXPECT_EQ(In(kBase, 2) & AcpiPm::kTmrSts, 0);
  clock.Advance(TicksToNs(1u << 23, AcpiPm::kTimerHz));
  EXPECT_EQ(In(kBase, 2) & AcpiPm::kTmrSts, AcpiPm::kTmrSts);
}

}  // namespace
}  // namespace rove
