// The i8042 keyboard controller: data port 0x60 and status/command port 0x64, with a PS/2
// keyboard (IRQ1) and a PS/2 mouse (IRQ12) that answer commands but never produce input.
//
// Enough for Linux's i8042/atkbd probes to finish without timeouts: controller self-test
// (0xAA -> 0x55), interface tests, command byte read/write (0x20/0x60 and the rest of the
// internal RAM), port enable/disable, output port (0xD0/0xD1), writing to the keyboard/aux
// output buffers (0xD2/0xD3), aux loopback and aux device commands (0xD4), and the device
// commands (reset -> 0xFA 0xAA, get ID, set LEDs/rate/scancode set, enable/disable, echo).
//
// The reset line: command 0xFE (or any 0xF0-0xFF pulse with bit 0 clear), or writing the output
// port with bit 0 clear, calls the reset callback (after the controller's lock is released).
// That is how a guest reboots a PC (Linux's reboot=kbd).
//
// Windows: kDataWindow (1 port at 0x60), kCommandWindow (1 port at 0x64).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>

#include "rove/devices/bus.h"
#include "rove/devices/device_state.h"
#include "rove/devices/irq.h"

namespace rove {

class I8042 final : public MultiWindowDevice {
 public:
  enum Window : unsigned { kDataWindow = 0, kCommandWindow = 1 };
  // Status register bits.
  static constexpr uint8_t kStatusOutputFull = 0x01;
  static constexpr uint8_t kStatusInputFull = 0x02;
  static constexpr uint8_t kStatusSystem = 0x04;
  static constexpr uint8_t kStatusCommand = 0x08;
  static constexpr uint8_t kStatusUnlocked = 0x10;
  static constexpr uint8_t kStatusAuxData = 0x20;
  // Command byte (CTR) bits.
  static constexpr uint8_t kCtrKbdInt = 0x01;
  static constexpr uint8_t kCtrAuxInt = 0x02;
  static constexpr uint8_t kCtrSystem = 0x04;
  static constexpr uint8_t kCtrKbdDisable = 0x10;
  static constexpr uint8_t kCtrAuxDisable = 0x20;
  static constexpr uint8_t kCtrTranslate = 0x40;

  I8042(IrqLine kbd_irq, IrqLine aux_irq, std::function<void()> reset);

  void Read(unsigned window, uint64_t offset, std::span<uint8_t> data) override;
  void Write(unsigned window, uint64_t offset, std::span<const uint8_t> data) override;

  uint8_t command_byte() const;

  // Snapshot (record body, see device_state.h). LoadState drives IRQ1/IRQ12 to match.
  void SaveState(StateWriter& out) const;
  void LoadState(StateReader& in);
  // LoadState in two steps: reads and checks everything (throwing StateError, changing
  // nothing), then returns what applies it.
  StateApply ParseState(StateReader& in);

 private:
  struct Byte {
    uint8_t value;
    bool aux;
  };
  void PushLocked(uint8_t value, bool aux);
  void UpdateIrqLocked();
  uint8_t StatusLocked() const;
  // Returns true if the reset line was pulsed.
  bool ControllerCommandLocked(uint8_t command);
  bool DataLocked(uint8_t value);
  void KeyboardCommandLocked(uint8_t value);
  void MouseCommandLocked(uint8_t value);

  IrqLine kbd_irq_;
  IrqLine aux_irq_;
  std::function<void()> reset_;
  mutable std::mutex mu_;
  std::deque<Byte> out_;
  uint8_t ram_[32] = {};        // ram_[0] is the command byte
  uint8_t output_port_ = 0x03;  // bit 0: reset line high (not in reset), bit 1: A20 enabled
  uint8_t pending_ = 0;         // controller command awaiting its data byte
  uint8_t kbd_pending_ = 0;     // keyboard command awaiting its parameter
  uint8_t aux_pending_ = 0;     // mouse command awaiting its parameter
  bool last_was_command_ = false;
  uint8_t last_read_ = 0;
};

}  // namespace rove
