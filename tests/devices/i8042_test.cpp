#include "rove/devices/i8042.h"

#include <gtest/gtest.h>

#include <array>
#include <memory>
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

class I8042Test : public ::testing::Test {
 protected:
  I8042Test() {
    kbc = std::make_shared<I8042>(router.Line(1), router.Line(12), [this] { ++resets; });
    pio.Insert(std::make_shared<BusWindow>(kbc, I8042::kDataWindow), 0x60, 1);
    pio.Insert(std::make_shared<BusWindow>(kbc, I8042::kCommandWindow), 0x64, 1);
  }
  void Cmd(uint8_t v) { pio.Write(0x64, std::array<uint8_t, 1>{v}); }
  void Data(uint8_t v) { pio.Write(0x60, std::array<uint8_t, 1>{v}); }
  uint8_t Status() {
    std::array<uint8_t, 1> b{};
    pio.Read(0x64, b);
    return b[0];
  }
  // Reads everything in the output buffer, as i8042_flush does.
  std::vector<uint8_t> Drain() {
    std::vector<uint8_t> out;
    while (Status() & I8042::kStatusOutputFull) {
      std::array<uint8_t, 1> b{};
      pio.Read(0x60, b);
      out.push_back(b[0]);
    }
    return out;
  }

  LevelSink sink;
  IrqRouter router{&sink, nullptr};
  std::shared_ptr<I8042> kbc;
  Bus pio{"pio"};
  int resets = 0;
};

TEST_F(I8042Test, LinuxControllerProbe) {
  EXPECT_NE(Status(), 0xFF);  // i8042_controller_check: a controller is there
  EXPECT_TRUE(Drain().empty());
  Cmd(0xAA);  // self-test
  EXPECT_EQ(Drain(), std::vector<uint8_t>{0x55});
  Cmd(0x20);  // read CTR
  const std::vector<uint8_t> ctr = Drain();
  ASSERT_EQ(ctr.size(), 1u);
  Cmd(0x60);  // write CTR: interrupts off
  Data(uint8_t(ctr[0] & ~(I8042::kCtrKbdInt | I8042::kCtrAuxInt)));
  EXPECT_EQ(kbc->command_byte() & 0x03, 0);
  EXPECT_EQ(Status() & I8042::kStatusSystem, I8042::kStatusSystem);
  // AUX detection: loopback, then disable/enable reflected in CTR bit 5.
  Cmd(0xD3);
  Data(0x5A);
  EXPECT_EQ(Status() & (I8042::kStatusOutputFull | I8042::kStatusAuxData), 0x21);
  EXPECT_EQ(Drain(), std::vector<uint8_t>{0x5A});
  Cmd(0xA7);
  Cmd(0x20);
  EXPECT_EQ(Drain()[0] & I8042::kCtrAuxDisable, I8042::kCtrAuxDisable);
  Cmd(0xA8);
  Cmd(0x20);
  EXPECT_EQ(Drain()[0] & I8042::kCtrAuxDisable, 0);
  Cmd(0xA9);
  EXPECT_EQ(Drain(), std::vector<uint8_t>{0x00});
  Cmd(0xAB);
  EXPECT_EQ(Drain(), std::vector<uint8_t>{0x00});
}

TEST_F(I8042Test, KeyboardAnswersAtkbdCommands) {
  Data(0xF2);                                                    // get ID
  EXPECT_EQ(Drain(), (std::vector<uint8_t>{0xFA, 0xAB, 0x41}));  // translated MF2
  Data(0xED);                                                    // set LEDs
  EXPECT_EQ(Drain(), std::vector<uint8_t>{0xFA});
  Data(0x00);
  EXPECT_EQ(Drain(), std::vector<uint8_t>{0xFA});
  Data(0xFF);  // reset
  EXPECT_EQ(Drain(), (std::vector<uint8_t>{0xFA, 0xAA}));
  Data(0xEE);
  EXPECT_EQ(Drain(), std::vector<uint8_t>{0xEE});
  Data(0xF4);
  EXPECT_EQ(Drain(), std::vector<uint8_t>{0xFA});
}

TEST_F(I8042Test, KeyboardDataRaisesIrq1AndMouseDataIrq12) {
  const int k0 = sink.rising[1];
  Data(0xFF);  // two bytes queued: FA, AA
  EXPECT_TRUE(sink.levels[1]);
  EXPECT_EQ(sink.rising[1] - k0, 1);
  Drain();
  EXPECT_FALSE(sink.levels[1]);
  EXPECT_EQ(sink.rising[1] - k0, 2);  // the second byte made a new edge
  Cmd(0xD4);                          // to the mouse
  Data(0xF2);
  EXPECT_TRUE(sink.levels[12]);
  EXPECT_FALSE(sink.levels[1]);
  EXPECT_EQ(Status() & I8042::kStatusAuxData, I8042::kStatusAuxData);
  EXPECT_EQ(Drain(), (std::vector<uint8_t>{0xFA, 0x00}));
  EXPECT_FALSE(sink.levels[12]);
}

TEST_F(I8042Test, ResetLine) {
  Cmd(0xFE);
  EXPECT_EQ(resets, 1);
  Cmd(0xFF);  // pulse nothing
  EXPECT_EQ(resets, 1);
  Cmd(0xD1);  // write output port with the reset bit low
  Data(0x02);
  EXPECT_EQ(resets, 2);
  Cmd(0xD0);
  EXPECT_EQ(Drain(), std::vector<uint8_t>{0x02});
}

}  // namespace
}  // namespace rove
