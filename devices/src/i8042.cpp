#include "rove/devices/i8042.h"

namespace rove {

namespace {
constexpr size_t kMaxQueued = 32;
constexpr uint8_t kAck = 0xFA;
constexpr uint8_t kSelfTestPassed = 0xAA;
}  // namespace

I8042::I8042(IrqLine kbd_irq, IrqLine aux_irq, std::function<void()> reset)
    : kbd_irq_(kbd_irq), aux_irq_(aux_irq), reset_(std::move(reset)) {
  // What a BIOS leaves: both interrupts on, system flag, scancode translation.
  ram_[0] = kCtrKbdInt | kCtrAuxInt | kCtrSystem | kCtrTranslate;
}

uint8_t I8042::command_byte() const {
  std::lock_guard lock(mu_);
  return ram_[0];
}

uint8_t I8042::StatusLocked() const {
  uint8_t s = kStatusUnlocked;
  if (ram_[0] & kCtrSystem) s |= kStatusSystem;
  if (last_was_command_) s |= kStatusCommand;
  if (!out_.empty()) {
    s |= kStatusOutputFull;
    if (out_.front().aux) s |= kStatusAuxData;
  }
  return s;
}

void I8042::PushLocked(uint8_t value, bool aux) {
  if (out_.size() < kMaxQueued) out_.push_back(Byte{value, aux});
  UpdateIrqLocked();
}

void I8042::UpdateIrqLocked() {
  const bool has = !out_.empty();
  kbd_irq_.Set(has && !out_.front().aux && (ram_[0] & kCtrKbdInt));
  aux_irq_.Set(has && out_.front().aux && (ram_[0] & kCtrAuxInt));
}

bool I8042::ControllerCommandLocked(uint8_t command) {
  if (command >= 0x20 && command <= 0x3F) {  // read internal RAM (0x20: command byte)
    PushLocked(ram_[command & 0x1F], false);
    return false;
  }
  if ((command >= 0x60 && command <= 0x7F) || command == 0xD1 || command == 0xD2 ||
      command == 0xD3 || command == 0xD4) {
    pending_ = command;  // the parameter follows on port 0x60
    return false;
  }
  if (command >= 0xF0) return !(command & 0x01);  // pulse output lines; bit 0 is reset
  switch (command) {
    case 0xA7:
      ram_[0] |= kCtrAuxDisable;
      break;
    case 0xA8:
      ram_[0] &= ~kCtrAuxDisable;
      break;
    case 0xA9:  // aux interface test: no error
    case 0xAB:  // keyboard interface test: no error
      PushLocked(0x00, false);
      break;
    case 0xAA:  // controller self-test
      ram_[0] |= kCtrSystem;
      PushLocked(0x55, false);
      break;
    case 0xAD:
      ram_[0] |= kCtrKbdDisable;
      break;
    case 0xAE:
      ram_[0] &= ~kCtrKbdDisable;
      break;
    case 0xC0:  // read input port
      PushLocked(0x00, false);
      break;
    case 0xD0:  // read output port
      PushLocked(output_port_, false);
      break;
    case 0xE0:  // read test inputs
      PushLocked(0x00, false);
      break;
    default:  // 0xDD/0xDF (A20) and unknown commands: nothing to do
      break;
  }
  UpdateIrqLocked();
  return false;
}

void I8042::KeyboardCommandLocked(uint8_t value) {
  if (kbd_pending_) {
    const uint8_t command = kbd_pending_;
    kbd_pending_ = 0;
    PushLocked(kAck, false);
    if (command == 0xF0 && value == 0) PushLocked(0x02, false);  // current scancode set
    return;
  }
  switch (value) {
    case 0xED:  // set LEDs
    case 0xF3:  // set typematic rate
    case 0xF0:  // get/set scancode set
      kbd_pending_ = value;
      PushLocked(kAck, false);
      break;
    case 0xEE:  // echo
      PushLocked(0xEE, false);
      break;
    case 0xF2:  // identify: MF2 keyboard (0x83 reads as 0x41 through translation)
      PushLocked(kAck, false);
      PushLocked(0xAB, false);
      PushLocked((ram_[0] & kCtrTranslate) ? 0x41 : 0x83, false);
      break;
    case 0xFF:  // reset and self-test
      PushLocked(kAck, false);
      PushLocked(kSelfTestPassed, false);
      break;
    default:  // enable, disable, set defaults, and the rest: acknowledged
      PushLocked(kAck, false);
      break;
  }
}

void I8042::MouseCommandLocked(uint8_t value) {
  if (aux_pending_) {
    aux_pending_ = 0;
    PushLocked(kAck, true);
    return;
  }
  switch (value) {
    case 0xE8:  // set resolution
    case 0xF3:  // set sample rate
      aux_pending_ = value;
      PushLocked(kAck, true);
      break;
    case 0xE9:  // status request: stream mode, disabled, 4 counts/mm, 100 samples/s
      PushLocked(kAck, true);
      PushLocked(0x00, true);
      PushLocked(0x02, true);
      PushLocked(0x64, true);
      break;
    case 0xF2:  // identify: standard PS/2 mouse
      PushLocked(kAck, true);
      PushLocked(0x00, true);
      break;
    case 0xFF:  // reset
      PushLocked(kAck, true);
      PushLocked(kSelfTestPassed, true);
      PushLocked(0x00, true);
      break;
    default:
      PushLocked(kAck, true);
      break;
  }
}

bool I8042::DataLocked(uint8_t value) {
  const uint8_t command = pending_;
  pending_ = 0;
  if (command >= 0x60 && command <= 0x7F) {
    ram_[command & 0x1F] = value;
    UpdateIrqLocked();
    return false;
  }
  switch (command) {
    case 0xD1:  // write output port
      output_port_ = value;
      return !(value & 0x01);
    case 0xD2:  // as if from the keyboard
      PushLocked(value, false);
      return false;
    case 0xD3:  // as if from the aux device (Linux's AUX loopback test)
      PushLocked(value, true);
      return false;
    case 0xD4:
      MouseCommandLocked(value);
      return false;
    default:
      KeyboardCommandLocked(value);
      return false;
  }
}

void I8042::Read(unsigned window, uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    if (offset + i != 0) {
      data[i] = 0xFF;
    } else if (window == kCommandWindow) {
      data[i] = StatusLocked();
    } else {
      if (!out_.empty()) {
        last_read_ = out_.front().value;
        out_.pop_front();
        // Drop both lines so the next queued byte makes a fresh edge.
        kbd_irq_.Lower();
        aux_irq_.Lower();
        UpdateIrqLocked();
      }
      data[i] = last_read_;
    }
  }
}

void I8042::Write(unsigned window, uint64_t offset, std::span<const uint8_t> data) {
  bool reset = false;
  {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < data.size(); ++i) {
      if (offset + i != 0) continue;
      if (window == kCommandWindow) {
        last_was_command_ = true;
        reset |= ControllerCommandLocked(data[i]);
      } else {
        last_was_command_ = false;
        reset |= DataLocked(data[i]);
      }
    }
  }
  if (reset && reset_) reset_();
}

// --- Snapshot. ---

void I8042::SaveState(StateWriter& out) const {
  std::lock_guard lock(mu_);
  out.U32(uint32_t(out_.size()));
  for (const Byte& b : out_) {
    out.U8(b.value);
    out.Bool(b.aux);
  }
  out.Bytes(ram_, sizeof(ram_));
  out.U8(output_port_);
  out.U8(pending_);
  out.U8(kbd_pending_);
  out.U8(aux_pending_);
  out.Bool(last_was_command_);
  out.U8(last_read_);
}

StateApply I8042::ParseState(StateReader& in) {
  const uint32_t queued = in.U32Max(uint32_t(kMaxQueued), "output queue length");
  std::deque<Byte> queue;
  for (uint32_t i = 0; i < queued; ++i) {
    const uint8_t value = in.U8("queued byte");
    queue.push_back(Byte{value, in.Bool("queued byte is aux")});
  }
  uint8_t ram[sizeof(ram_)];
  in.Bytes(ram, sizeof(ram), "controller ram");
  const uint8_t output_port = in.U8("output port");
  const uint8_t pending = in.U8("pending controller command");
  const uint8_t kbd_pending = in.U8("pending keyboard command");
  const uint8_t aux_pending = in.U8("pending mouse command");
  const bool last_was_command = in.Bool("last write was a command");
  const uint8_t last_read = in.U8("last byte read");
  return [=, this]() mutable {
    std::lock_guard lock(mu_);
    out_ = std::move(queue);
    std::copy(std::begin(ram), std::end(ram), ram_);
    output_port_ = output_port;
    pending_ = pending;
    kbd_pending_ = kbd_pending;
    aux_pending_ = aux_pending;
    last_was_command_ = last_was_command;
    last_read_ = last_read;
    UpdateIrqLocked();
  };
}

void I8042::LoadState(StateReader& in) {
  ParseState(in)();
}

}  // namespace rove
