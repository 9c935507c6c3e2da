#include "rove/devices/uart16550.h"

#include <algorithm>

namespace rove {

namespace {
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kMcrLoopback = 0x10;
constexpr uint8_t kFcrEnable = 0x01;
constexpr uint8_t kFcrClearRx = 0x02;
constexpr uint8_t kIirFifoEnabled = 0xC0;
// Modem status lines (MSR high nibble) and their delta bits.
constexpr uint8_t kMsrCts = 0x10;
constexpr uint8_t kMsrDsr = 0x20;
constexpr uint8_t kMsrRi = 0x40;
constexpr uint8_t kMsrDcd = 0x80;
constexpr uint8_t kMsrDeltaCts = 0x01;
constexpr uint8_t kMsrDeltaDsr = 0x02;
constexpr uint8_t kMsrTrailingRi = 0x04;
constexpr uint8_t kMsrDeltaDcd = 0x08;
// With nothing attached but a console, the modem lines say "connected, clear to send".
constexpr uint8_t kMsrIdle = kMsrDcd | kMsrDsr | kMsrCts;
constexpr size_t kTriggerLevels[4] = {1, 4, 8, 14};
}  // namespace

Uart16550::Uart16550(IrqLine irq, OutputFn output) : irq_(irq), output_(std::move(output)) {
  msr_ = kMsrIdle;
}

void Uart16550::SetOutput(OutputFn output) {
  std::lock_guard lock(mu_);
  output_ = std::move(output);
}

void Uart16550::SetRxSpaceListener(RxSpaceFn listener) {
  std::lock_guard lock(mu_);
  rx_space_listener_ = std::move(listener);
}

uint16_t Uart16550::divisor() const {
  std::lock_guard lock(mu_);
  return uint16_t(dll_ | (dlm_ << 8));
}

size_t Uart16550::rx_space() const {
  std::lock_guard lock(mu_);
  if (mcr_ & kMcrLoopback) return 0;
  return CapacityLocked() - std::min(CapacityLocked(), rx_.size());
}

size_t Uart16550::Receive(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mu_);
  if (mcr_ & kMcrLoopback) return 0;  // the serial input is disconnected in loopback
  size_t n = 0;
  while (n < bytes.size() && rx_.size() < CapacityLocked()) rx_.push_back(bytes[n++]);
  if (n) UpdateIrqLocked();
  return n;
}

uint8_t Uart16550::IirLocked() const {
  if ((lsr_errors_ & 0x1E) && (ier_ & kIerLineStatus)) return kIirLineStatus;
  if (!rx_.empty() && (ier_ & kIerRxData)) {
    if (!fifo_enabled_ || rx_.size() >= rx_trigger_) return kIirRxData;
    return kIirTimeout;
  }
  if (thr_interrupt_ && (ier_ & kIerThrEmpty)) return kIirThrEmpty;
  if ((msr_ & 0x0F) && (ier_ & kIerModemStatus)) return kIirModemStatus;
  return kIirNone;
}

void Uart16550::UpdateIrqLocked() {
  irq_.Set(IirLocked() != kIirNone);
}

void Uart16550::SetModemStatusLocked(uint8_t status) {
  const uint8_t old = msr_ & 0xF0;
  uint8_t delta = 0;
  if ((old ^ status) & kMsrCts) delta |= kMsrDeltaCts;
  if ((old ^ status) & kMsrDsr) delta |= kMsrDeltaDsr;
  if ((old & kMsrRi) && !(status & kMsrRi)) delta |= kMsrTrailingRi;
  if ((old ^ status) & kMsrDcd) delta |= kMsrDeltaDcd;
  msr_ = uint8_t(status | (msr_ & 0x0F) | delta);
}

void Uart16550::TransmitLocked(uint8_t byte) {
  if (mcr_ & kMcrLoopback) {
    if (rx_.size() < CapacityLocked()) {
      rx_.push_back(byte);
    } else {
      lsr_errors_ |= kLsrOverrun;
    }
  } else if (output_) {
    output_(byte);
  }
}

uint8_t Uart16550::ReadLocked(unsigned reg, bool& drained) {
  const bool dlab = lcr_ & kLcrDlab;
  switch (reg) {
    case kRbrThr: {
      if (dlab) return dll_;
      if (rx_.empty()) return 0;
      const uint8_t byte = rx_.front();
      rx_.pop_front();
      if (rx_.empty()) drained = true;
      UpdateIrqLocked();
      return byte;
    }
    case kIer:
      return dlab ? dlm_ : ier_;
    case kIirFcr: {
      const uint8_t id = IirLocked();
      if (id == kIirThrEmpty) {
        thr_interrupt_ = false;  // reading IIR acknowledges a THR-empty interrupt
        UpdateIrqLocked();
      }
      return uint8_t(id | (fifo_enabled_ ? kIirFifoEnabled : 0));
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr: {
      const uint8_t v = uint8_t((rx_.empty() ? 0 : kLsrDataReady) | lsr_errors_ | kLsrThrEmpty |
                                kLsrTransmitterEmpty);
      lsr_errors_ = 0;
      UpdateIrqLocked();
      return v;
    }
    case kMsr: {
      const uint8_t v = msr_;
      msr_ &= 0xF0;
      UpdateIrqLocked();
      return v;
    }
    default:
      return scr_;
  }
}

void Uart16550::WriteLocked(unsigned reg, uint8_t value) {
  const bool dlab = lcr_ & kLcrDlab;
  switch (reg) {
    case kRbrThr:
      if (dlab) {
        dll_ = value;
        return;
      }
      // The write empties nothing we keep (transmission is instant) but acknowledges a pending
      // THR-empty interrupt; it is raised again once the byte "left", producing a fresh edge.
      thr_interrupt_ = false;
      UpdateIrqLocked();
      TransmitLocked(value);
      thr_interrupt_ = true;
      UpdateIrqLocked();
      return;
    case kIer: {
      if (dlab) {
        dlm_ = value;
        return;
      }
      const uint8_t old = ier_;
      ier_ = value & 0x0F;
      // Enabling the THR-empty interrupt while THR is empty raises it (Linux tests this).
      if ((ier_ & kIerThrEmpty) && !(old & kIerThrEmpty)) thr_interrupt_ = true;
      UpdateIrqLocked();
      return;
    }
    case kIirFcr: {
      const bool enable = value & kFcrEnable;
      if (enable != fifo_enabled_) rx_.clear();  // switching FIFO mode clears the FIFOs
      fifo_enabled_ = enable;
      if (value & kFcrClearRx) rx_.clear();
      rx_trigger_ = enable ? kTriggerLevels[value >> 6] : 1;
      UpdateIrqLocked();
      return;
    }
    case kLcr:
      lcr_ = value;
      return;
    case kMcr: {
      mcr_ = value & 0x1F;
      if (mcr_ & kMcrLoopback) {
        // DTR -> DSR, RTS -> CTS, OUT1 -> RI, OUT2 -> DCD.
        uint8_t status = 0;
        if (mcr_ & 0x01) status |= kMsrDsr;
        if (mcr_ & 0x02) status |= kMsrCts;
        if (mcr_ & 0x04) status |= kMsrRi;
        if (mcr_ & 0x08) status |= kMsrDcd;
        SetModemStatusLocked(status);
      } else {
        SetModemStatusLocked(kMsrIdle);
      }
      UpdateIrqLocked();
      return;
    }
    case kScr:
      scr_ = value;
      return;
    default:  // LSR and MSR are read-only
      return;
  }
}

void Uart16550::Read(uint64_t offset, std::span<uint8_t> data) {
  bool drained = false;
  RxSpaceFn listener;
  {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < data.size(); ++i) {
      data[i] = offset + i < 8 ? ReadLocked(unsigned(offset + i), drained) : 0xFF;
    }
    if (drained) listener = rx_space_listener_;
  }
  if (listener) listener();
}

void Uart16550::Write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    if (offset + i < 8) WriteLocked(unsigned(offset + i), data[i]);
  }
}

// --- Snapshot. ---

void Uart16550::SaveState(StateWriter& out) const {
  std::lock_guard lock(mu_);
  std::vector<uint8_t> rx(rx_.begin(), rx_.end());
  out.Blob(rx);
  out.U8(ier_);
  out.U8(lcr_);
  out.U8(mcr_);
  out.U8(lsr_errors_);
  out.U8(msr_);
  out.U8(scr_);
  out.U8(dll_);
  out.U8(dlm_);
  out.Bool(fifo_enabled_);
  out.U8(uint8_t(rx_trigger_));
  out.Bool(thr_interrupt_);
}

StateApply Uart16550::ParseState(StateReader& in) {
  const std::vector<uint8_t> rx = in.Blob(kFifoSize, "receive fifo");
  const uint8_t ier = in.U8Max(0x0F, "ier");
  const uint8_t lcr = in.U8("lcr");
  const uint8_t mcr = in.U8Max(0x1F, "mcr");
  const uint8_t lsr_errors = in.U8("lsr errors");
  if (lsr_errors & ~0x1E) in.Fail("invalid LSR error bits");
  const uint8_t msr = in.U8("msr");
  const uint8_t scr = in.U8("scr");
  const uint8_t dll = in.U8("dll");
  const uint8_t dlm = in.U8("dlm");
  const bool fifo_enabled = in.Bool("fifo enabled");
  const uint8_t trigger = in.U8("rx trigger");
  if (fifo_enabled ? !std::count(std::begin(kTriggerLevels), std::end(kTriggerLevels), trigger)
                   : trigger != 1) {
    in.Fail("invalid receive trigger level");
  }
  if (rx.size() > (fifo_enabled ? kFifoSize : 1)) in.Fail("receive FIFO holds more than it can");
  const bool thr_interrupt = in.Bool("thr interrupt");
  return [=, this]() mutable {
    std::lock_guard lock(mu_);
    rx_.assign(rx.begin(), rx.end());
    ier_ = ier;
    lcr_ = lcr;
    mcr_ = mcr;
    lsr_errors_ = lsr_errors;
    msr_ = msr;
    scr_ = scr;
    dll_ = dll;
    dlm_ = dlm;
    fifo_enabled_ = fifo_enabled;
    rx_trigger_ = trigger;
    thr_interrupt_ = thr_interrupt;
    UpdateIrqLocked();
  };
}

void Uart16550::LoadState(StateReader& in) {
  ParseState(in)();
}

}  // namespace rove
