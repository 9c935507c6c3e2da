#include "rove/devices/pic8259.h"

#include <gtest/gtest.h>

#include <array>
#include <memory>

#include "rove/devices/irq.h"

namespace rove {
namespace {

class PicTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pio.Insert(std::make_shared<BusWindow>(pic, Pic8259::kMasterWindow), 0x20, 2);
    pio.Insert(std::make_shared<BusWindow>(pic, Pic8259::kSlaveWindow), 0xA0, 2);
    pio.Insert(std::make_shared<BusWindow>(pic, Pic8259::kElcrWindow), 0x4D0, 2);
    pic->SetOutputListener([this](bool intr) { intr_changes += intr ? 1 : 0; });
  }
  void Out(uint16_t port, uint8_t v) { pio.Write(port, std::array<uint8_t, 1>{v}); }
  uint8_t In(uint16_t port) {
    std::array<uint8_t, 1> b{};
    pio.Read(port, b);
    return b[0];
  }
  // init_8259A() of Linux: vectors 0x30/0x38, cascade on IRQ2, 8086 mode.
  void LinuxInit(bool auto_eoi = false) {
    Out(0x21, 0xFF);
    Out(0xA1, 0xFF);
    Out(0x20, 0x11);
    Out(0x21, 0x30);
    Out(0x21, 0x04);
    Out(0x21, auto_eoi ? 0x03 : 0x01);
    Out(0xA0, 0x11);
    Out(0xA1, 0x38);
    Out(0xA1, 0x02);
    Out(0xA1, 0x01);
    Out(0x21, 0x00);  // unmask everything
    Out(0xA1, 0x00);
  }

  std::shared_ptr<Pic8259> pic = std::make_shared<Pic8259>();
  Bus pio{"pio"};
  int intr_changes = 0;
};

TEST_F(PicTest, MaskRegisterReadsBackAsLinuxProbesIt) {
  Out(0x21, 0xFF);
  EXPECT_EQ(In(0x21), 0xFF);
  Out(0x21, 0xFB);
  EXPECT_EQ(In(0x21), 0xFB);
  Out(0xA1, 0x5A);
  EXPECT_EQ(In(0xA1), 0x5A);
}

TEST_F(PicTest, RaiseAcknowledgeEoi) {
  LinuxInit();
  EXPECT_FALSE(pic->InterruptOutput());
  pic->SetIrq(4, true);
  EXPECT_TRUE(pic->InterruptOutput());
  EXPECT_EQ(intr_changes, 1);
  EXPECT_EQ(pic->Acknowledge(), 0x34);
  EXPECT_FALSE(pic->InterruptOutput());
  EXPECT_EQ(pic->isr(false), 0x10);
  // Read ISR through OCW3 as Linux does for spurious checks, then back to IRR.
  Out(0x20, 0x0B);
  EXPECT_EQ(In(0x20), 0x10);
  Out(0x20, 0x0A);
  EXPECT_EQ(In(0x20), 0x00);  // edge: IRR cleared by the acknowledge
  Out(0x20, 0x64);            // specific EOI for IRQ4
  EXPECT_EQ(pic->isr(false), 0x00);
  pic->SetIrq(4, false);
  EXPECT_FALSE(pic->InterruptOutput());
}

TEST_F(PicTest, EdgeTriggeredNeedsANewRisingEdge) {
  LinuxInit();
  pic->SetIrq(3, true);
  EXPECT_EQ(pic->Acknowledge(), 0x33);
  Out(0x20, 0x20);                       // non-specific EOI
  EXPECT_FALSE(pic->InterruptOutput());  // line still high, but no new edge
  pic->SetIrq(3, false);
  pic->SetIrq(3, true);
  EXPECT_TRUE(pic->InterruptOutput());
}

TEST_F(PicTest, LevelTriggeredPerElcrStaysPendingWhileAsserted) {
  LinuxInit();
  Out(0x4D1, 0x02);  // IRQ9 level
  EXPECT_EQ(In(0x4D1), 0x02);
  Out(0x4D0, 0xFF);  // IRQ0-2 cannot be level
  EXPECT_EQ(In(0x4D0), 0xF8);
  Out(0x4D0, 0x00);
  pic->SetIrq(9, true);
  EXPECT_EQ(pic->Acknowledge(), 0x39);
  Out(0xA0, 0x20);
  Out(0x20, 0x20);
  EXPECT_TRUE(pic->InterruptOutput());  // still asserted
  EXPECT_EQ(pic->Acknowledge(), 0x39);
  Out(0xA0, 0x61);  // specific EOI IRQ9 (slave IRQ1)
  Out(0x20, 0x62);  // specific EOI cascade
  pic->SetIrq(9, false);
  EXPECT_FALSE(pic->InterruptOutput());
}

TEST_F(PicTest, MaskingHoldsRequestsUntilUnmasked) {
  LinuxInit();
  Out(0x21, 0x01);  // mask IRQ0
  pic->SetIrq(0, true);
  pic->SetIrq(0, false);
  EXPECT_FALSE(pic->InterruptOutput());
  EXPECT_EQ(pic->irr(false), 0x01);
  Out(0x21, 0x00);
  EXPECT_TRUE(pic->InterruptOutput());
  EXPECT_EQ(pic->Acknowledge(), 0x30);
}

TEST_F(PicTest, FixedPriorityAndNesting) {
  LinuxInit();
  pic->SetIrq(5, true);
  pic->SetIrq(1, true);
  EXPECT_EQ(pic->Acknowledge(), 0x31);  // IRQ1 beats IRQ5
  // IRQ5 has lower priority than the in-service IRQ1: not signalled.
  EXPECT_FALSE(pic->InterruptOutput());
  // IRQ0 has higher priority: it nests.
  pic->SetIrq(0, true);
  EXPECT_TRUE(pic->InterruptOutput());
  EXPECT_EQ(pic->Acknowledge(), 0x30);
  Out(0x20, 0x20);  // EOI IRQ0 (highest in service)
  EXPECT_EQ(pic->isr(false), 0x02);
  Out(0x20, 0x20);  // EOI IRQ1
  EXPECT_EQ(pic->Acknowledge(), 0x35);
}

TEST_F(PicTest, SlaveCascadeThroughIrq2) {
  LinuxInit();
  pic->SetIrq(14, true);
  EXPECT_TRUE(pic->InterruptOutput());
  EXPECT_EQ(pic->Acknowledge(), 0x3E);
  EXPECT_EQ(pic->isr(true), 0x40);
  EXPECT_EQ(pic->isr(false), 0x04);
  // A slave IRQ with higher priority than IRQ14 is blocked by the master's ISR2 (not SFNM).
  pic->SetIrq(8, true);
  EXPECT_FALSE(pic->InterruptOutput());
  Out(0xA0, 0x66);  // specific EOI IRQ14 on the slave
  Out(0x20, 0x62);  // and the cascade on the master
  EXPECT_TRUE(pic->InterruptOutput());
  EXPECT_EQ(pic->Acknowledge(), 0x38);
  // Masking the cascade on the master hides the slave.
  Out(0xA0, 0x20);
  Out(0x20, 0x20);
  Out(0x21, 0x04);
  pic->SetIrq(12, true);
  EXPECT_FALSE(pic->InterruptOutput());
  Out(0x21, 0x00);
  EXPECT_EQ(pic->Acknowledge(), 0x3C);
}

TEST_F(PicTest, SpuriousVectorWhenNothingPending) {
  LinuxInit();
  EXPECT_EQ(pic->Acknowledge(), 0x37);
  EXPECT_EQ(pic->isr(false), 0x00);
}

TEST_F(PicTest, AutoEoiLeavesIsrClear) {
  LinuxInit(/*auto_eoi=*/true);
  pic->SetIrq(0, true);
  EXPECT_EQ(pic->Acknowledge(), 0x30);
  EXPECT_EQ(pic->isr(false), 0x00);
  pic->SetIrq(0, false);
  pic->SetIrq(0, true);
  EXPECT_EQ(pic->Acknowledge(), 0x30);
}

TEST_F(PicTest, SpecialMaskModeLetsLowerPrioritiesThrough) {
  LinuxInit();
  pic->SetIrq(1, true);
  EXPECT_EQ(pic->Acknowledge(), 0x31);
  pic->SetIrq(6, true);
  EXPECT_FALSE(pic->InterruptOutput());
  Out(0x21, 0x02);  // mask IRQ1 (in service)
  Out(0x20, 0x68);  // OCW3: set special mask mode
  EXPECT_TRUE(pic->InterruptOutput());
  EXPECT_EQ(pic->Acknowledge(), 0x36);
  Out(0x20, 0x48);  // reset special mask mode
}

TEST_F(PicTest, RotationAndSetPriority) {
  LinuxInit();
  Out(0x20, 0xC3);  // IRQ3 lowest -> IRQ4 highest
  pic->SetIrq(2 + 0, false);
  pic->SetIrq(1, true);
  pic->SetIrq(5, true);
  EXPECT_EQ(pic->Acknowledge(), 0x35);
  Out(0x20, 0xA0);  // rotate on non-specific EOI: IRQ5 becomes lowest
  EXPECT_EQ(pic->Acknowledge(), 0x31);
}

TEST_F(PicTest, PollMode) {
  LinuxInit();
  pic->SetIrq(6, true);
  Out(0x20, 0x0C);  // OCW3 poll
  EXPECT_EQ(In(0x20), 0x86);
  EXPECT_EQ(pic->isr(false), 0x40);
  Out(0x20, 0x0C);
  EXPECT_EQ(In(0x20), 0x00);
}

TEST_F(PicTest, ReachedThroughAnIrqRouter) {
  LinuxInit();
  IrqRouter router(pic.get(), nullptr);
  IrqLine a = router.Line(10);
  IrqLine b = router.Line(10);  // shared line
  a.Raise();
  b.Raise();
  a.Lower();
  EXPECT_TRUE(router.level(10));
  EXPECT_EQ(pic->Acknowledge(), 0x3A);
  b.Lower();
  EXPECT_FALSE(router.level(10));
}

}  // namespace
}  // namespace rove
