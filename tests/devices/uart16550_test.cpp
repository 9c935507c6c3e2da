#include "rove/devices/uart16550.h"

#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

namespace rove {
namespace {

class LevelSink : public IrqSink {
 public:
  void SetIrq(unsigned line, bool level) override {
    if (level && !levels[line]) ++rising[line];
    levels[line] = level;
  }
  std::array<int, 24> rising{};
  std::array<bool, 24> levels{};
};

constexpr uint16_t kCom1 = 0x3F8;

class UartTest : public ::testing::Test {
 protected:
  UartTest() {
    uart =
        std::make_shared<Uart16550>(router.Line(4), [this](uint8_t b) { out.push_back(char(b)); });
    pio.Insert(uart, kCom1, 8);
  }
  void Out(unsigned reg, uint8_t v) { pio.Write(kCom1 + reg, std::array<uint8_t, 1>{v}); }
  uint8_t In(unsigned reg) {
    std::array<uint8_t, 1> b{};
    pio.Read(kCom1 + reg, b);
    return b[0];
  }
  bool Irq4() const { return sink.levels[4]; }
  size_t Feed(const std::string& s) {
    return uart->Receive(std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  }

  LevelSink sink;
  IrqRouter router{&sink, nullptr};
  std::shared_ptr<Uart16550> uart;
  Bus pio{"pio"};
  std::string out;
};

TEST_F(UartTest, DivisorAndTransmit) {
  Out(Uart16550::kLcr, 0x80);     // DLAB
  Out(Uart16550::kRbrThr, 0x01);  // 115200 baud
  Out(Uart16550::kIer, 0x00);
  EXPECT_EQ(In(Uart16550::kRbrThr), 0x01);
  EXPECT_EQ(In(Uart16550::kIer), 0x00);
  Out(Uart16550::kLcr, 0x03);  // 8N1, DLAB off
  EXPECT_EQ(uart->divisor(), 1);
  EXPECT_EQ(In(Uart16550::kLcr), 0x03);
  for (char c : std::string("hi\n")) Out(Uart16550::kRbrThr, uint8_t(c));
  EXPECT_EQ(out, "hi\n");
  EXPECT_EQ(In(Uart16550::kLsr), Uart16550::kLsrThrEmpty | Uart16550::kLsrTransmitterEmpty);
  EXPECT_EQ(In(Uart16550::kIirFcr), 0x01);  // no interrupt, FIFO off
}

TEST_F(UartTest, ReceiveInterruptRaisesIrq4AndReadingRbrClearsIt) {
  Out(Uart16550::kIer, Uart16550::kIerRxData);
  EXPECT_FALSE(Irq4());
  EXPECT_EQ(Feed("x"), 1u);
  EXPECT_TRUE(Irq4());
  EXPECT_EQ(In(Uart16550::kLsr) & Uart16550::kLsrDataReady, Uart16550::kLsrDataReady);
  EXPECT_EQ(In(Uart16550::kIirFcr), Uart16550::kIirRxData);
  EXPECT_EQ(In(Uart16550::kRbrThr), 'x');
  EXPECT_FALSE(Irq4());
  EXPECT_EQ(In(Uart16550::kLsr) & Uart16550::kLsrDataReady, 0);
  EXPECT_EQ(In(Uart16550::kIirFcr), 0x01);
  // Without the FIFO, one byte at a time is accepted.
  EXPECT_EQ(Feed("ab"), 1u);
}

TEST_F(UartTest, FifoTriggerLevelAndCharacterTimeout) {
  Out(Uart16550::kIirFcr, 0xC7);  // enable + clear, trigger 14
  Out(Uart16550::kIer, Uart16550::kIerRxData);
  EXPECT_EQ(In(Uart16550::kIirFcr), 0xC1);  // FIFO bits, no interrupt
  EXPECT_EQ(Feed("abc"), 3u);
  EXPECT_EQ(In(Uart16550::kIirFcr), 0xC0 | Uart16550::kIirTimeout);
  EXPECT_EQ(Feed("defghijklmnopqrstuvwxyz"), 13u);  // 16 in the FIFO
  EXPECT_EQ(uart->rx_space(), 0u);
  EXPECT_EQ(In(Uart16550::kIirFcr), 0xC0 | Uart16550::kIirRxData);
  std::string got;
  while (In(Uart16550::kLsr) & Uart16550::kLsrDataReady) got += char(In(Uart16550::kRbrThr));
  EXPECT_EQ(got, "abcdefghijklmnop");
  EXPECT_FALSE(Irq4());
  // FCR bit 1 clears the receive FIFO.
  Feed("zz");
  Out(Uart16550::kIirFcr, 0x03);
  EXPECT_EQ(In(Uart16550::kLsr) & Uart16550::kLsrDataReady, 0);
}

TEST_F(UartTest, RxSpaceListenerWhenTheGuestDrainsTheFifo) {
  int notified = 0;
  uart->SetRxSpaceListener([&] { ++notified; });
  Out(Uart16550::kIirFcr, 0x01);
  Feed("12");
  In(Uart16550::kRbrThr);
  EXPECT_EQ(notified, 0);
  In(Uart16550::kRbrThr);
  EXPECT_EQ(notified, 1);
}

TEST_F(UartTest, ThrEmptyInterruptAsLinuxProbesIt) {
  // Enabling THRI with THR empty raises the interrupt; reading IIR acknowledges it; disabling
  // and re-enabling raises it again (otherwise Linux flags UART_BUG_THRE).
  Out(Uart16550::kIer, Uart16550::kIerThrEmpty);
  EXPECT_TRUE(Irq4());
  EXPECT_EQ(In(Uart16550::kIirFcr), Uart16550::kIirThrEmpty);
  EXPECT_FALSE(Irq4());
  EXPECT_EQ(In(Uart16550::kIirFcr), Uart16550::kIirNone);
  Out(Uart16550::kIer, 0);
  Out(Uart16550::kIer, Uart16550::kIerThrEmpty);
  EXPECT_EQ(In(Uart16550::kIirFcr), Uart16550::kIirThrEmpty);
  // Each transmitted byte produces a fresh THR-empty edge.
  const int before = sink.rising[4];
  Out(Uart16550::kRbrThr, 'a');
  Out(Uart16550::kRbrThr, 'b');
  EXPECT_EQ(sink.rising[4] - before, 2);
  EXPECT_EQ(out, "ab");
}

TEST_F(UartTest, ScratchAndIerMaskingAsInAutoconfig) {
  Out(Uart16550::kScr, 0x5A);
  EXPECT_EQ(In(Uart16550::kScr), 0x5A);
  Out(Uart16550::kIer, 0xFF);
  EXPECT_EQ(In(Uart16550::kIer), 0x0F);  // no XScale UUE bit, no upper bits
  Out(Uart16550::kIer, 0);
  // 16550A: FIFO enabled shows as IIR bits 7:6 = 11, and IIR bit 5 stays 0 (not a 16750).
  Out(Uart16550::kIirFcr, 0x21);
  EXPECT_EQ(In(Uart16550::kIirFcr) >> 5, 6);
}

TEST_F(UartTest, LoopbackReturnsBytesAndDrivesModemStatus) {
  Out(Uart16550::kMcr, 0x10 | 0x0A);  // loopback, RTS, OUT2: what Linux's autoconfig checks
  EXPECT_EQ(In(Uart16550::kMsr) & 0xF0, 0x90);  // CTS | DCD
  Out(Uart16550::kIirFcr, 0x07);
  Out(Uart16550::kRbrThr, 'L');
  EXPECT_TRUE(out.empty());  // not sent to the host
  EXPECT_EQ(In(Uart16550::kLsr) & Uart16550::kLsrDataReady, Uart16550::kLsrDataReady);
  EXPECT_EQ(In(Uart16550::kRbrThr), 'L');
  EXPECT_EQ(Feed("host"), 0u);  // input disconnected in loopback
  // Overrun when the guest sends more than the FIFO holds.
  for (int i = 0; i < 17; ++i) Out(Uart16550::kRbrThr, uint8_t('0' + i));
  EXPECT_EQ(In(Uart16550::kLsr) & Uart16550::kLsrOverrun, Uart16550::kLsrOverrun);
  EXPECT_EQ(In(Uart16550::kLsr) & Uart16550::kLsrOverrun, 0);  // cleared by reading
  // Modem-status interrupt on a change of the looped-back lines.
  In(Uart16550::kMsr);
  Out(Uart16550::kIer, Uart16550::kIerModemStatus);
  EXPECT_FALSE(Irq4());
  Out(Uart16550::kMcr, 0x10 | 0x0B);  // + DTR -> DSR changes
  EXPECT_TRUE(Irq4());
  EXPECT_EQ(In(Uart16550::kIirFcr) & 0x0F, Uart16550::kIirModemStatus);
  EXPECT_EQ(In(Uart16550::kMsr), 0xB0 | 0x02);  // DSR|CTS|DCD, delta DSR
  EXPECT_FALSE(Irq4());
  Out(Uart16550::kMcr, 0x0B);  // leave loopback
  Out(Uart16550::kRbrThr, '!');
  EXPECT_EQ(out, "!");
}

TEST_F(UartTest, LineStatusInterruptOnOverrun) {
  Out(Uart16550::kMcr, 0x10);
  Out(Uart16550::kIer, Uart16550::kIerLineStatus);
  Out(Uart16550::kRbrThr, 'a');
  Out(Uart16550::kRbrThr, 'b');  // FIFO off: one byte holds, this overruns
  EXPECT_TRUE(Irq4());
  EXPECT_EQ(In(Uart16550::kIirFcr), Uart16550::kIirLineStatus);
  In(Uart16550::kLsr);
  EXPECT_FALSE(Irq4());
}

}  // namespace
}  // namespace rove
