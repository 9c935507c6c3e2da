// A 16550A UART (8 ports: COM1 at 0x3F8/IRQ4, COM2 at 0x2F8/IRQ3).
//
// Registers: RBR/THR, IER, IIR/FCR, LCR (DLAB), MCR (loopback), LSR, MSR, SCR and the divisor
// latch. 16-byte receive FIFO with trigger levels, receive-data, character-timeout, THR-empty,
// line-status and modem-status interrupts, loopback mode (transmitted bytes come back as
// received bytes and MCR drives MSR).
//
// Host side:
//  - Output: every byte the guest transmits (outside loopback) is passed to the OutputFn,
//    synchronously, with the UART's lock held: keep it quick (buffer it) and do not call back
//    into the UART from it. Transmission is instantaneous: THR and the shift register are
//    always empty, so the guest is never throttled by a baud rate.
//  - Input: Receive() pushes bytes into the receive FIFO and returns how many fit (none in
//    loopback). A feeder that got a short count waits for the RxSpaceFn, called (without the
//    lock held, possibly from a vCPU thread) when the guest has emptied the FIFO. E.g. a stdin
//    thread: read(), Receive() the bytes, and if not all fit, wait on a condition variable that
//    the RxSpaceFn notifies.
//
// Deviations from the chip, chosen for an emulated console: the character-timeout interrupt
// (IIR 0xC) is reported as soon as data sits below the trigger level instead of after four
// character times, so typed input reaches the guest at once; OUT2 does not gate the IRQ line
// (as in QEMU).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>

#include "rove/devices/bus.h"
#include "rove/devices/device_state.h"
#include "rove/devices/irq.h"

namespace rove {

class Uart16550 final : public BusDevice {
 public:
  using OutputFn = std::function<void(uint8_t byte)>;
  using RxSpaceFn = std::function<void()>;
  static constexpr size_t kFifoSize = 16;

  // Register offsets.
  enum Reg : unsigned {
    kRbrThr = 0,  // DLL with DLAB
    kIer = 1,     // DLM with DLAB
    kIirFcr = 2,
    kLcr = 3,
    kMcr = 4,
    kLsr = 5,
    kMsr = 6,
    kScr = 7,
  };
  // LSR bits.
  static constexpr uint8_t kLsrDataReady = 0x01;
  static constexpr uint8_t kLsrOverrun = 0x02;
  static constexpr uint8_t kLsrThrEmpty = 0x20;
  static constexpr uint8_t kLsrTransmitterEmpty = 0x40;
  // IER bits.
  static constexpr uint8_t kIerRxData = 0x01;
  static constexpr uint8_t kIerThrEmpty = 0x02;
  static constexpr uint8_t kIerLineStatus = 0x04;
  static constexpr uint8_t kIerModemStatus = 0x08;
  // IIR interrupt identification (low 4 bits).
  static constexpr uint8_t kIirNone = 0x01;
  static constexpr uint8_t kIirModemStatus = 0x00;
  static constexpr uint8_t kIirThrEmpty = 0x02;
  static constexpr uint8_t kIirRxData = 0x04;
  static constexpr uint8_t kIirLineStatus = 0x06;
  static constexpr uint8_t kIirTimeout = 0x0C;

  explicit Uart16550(IrqLine irq, OutputFn output = nullptr);

  void SetOutput(OutputFn output);
  void SetRxSpaceListener(RxSpaceFn listener);
  size_t Receive(std::span<const uint8_t> bytes);
  // Free space in the receive FIFO.
  size_t rx_space() const;

  // BusDevice (8-port window); wider accesses are split into bytes.
  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

  uint16_t divisor() const;

  // Snapshot (record body, see device_state.h). LoadState drives the IRQ line to match.
  void SaveState(StateWriter& out) const;
  void LoadState(StateReader& in);
  // LoadState in two steps: reads and checks everything (throwing StateError, changing
  // nothing), then returns what applies it.
  StateApply ParseState(StateReader& in);

 private:
  size_t CapacityLocked() const { return fifo_enabled_ ? kFifoSize : 1; }
  uint8_t IirLocked() const;
  void UpdateIrqLocked();
  // Returns true when the receive FIFO became empty (notify the feeder).
  uint8_t ReadLocked(unsigned reg, bool& drained);
  void WriteLocked(unsigned reg, uint8_t value);
  void TransmitLocked(uint8_t byte);
  void SetModemStatusLocked(uint8_t status);

  IrqLine irq_;
  mutable std::mutex mu_;
  OutputFn output_;
  RxSpaceFn rx_space_listener_;
  std::deque<uint8_t> rx_;
  uint8_t ier_ = 0;
  uint8_t lcr_ = 0;
  uint8_t mcr_ = 0;
  uint8_t lsr_errors_ = 0;  // overrun (and the unused parity/framing/break bits)
  uint8_t msr_ = 0;         // status (high nibble) and deltas (low nibble)
  uint8_t scr_ = 0;
  uint8_t dll_ = 0x0C;  // 9600 baud
  uint8_t dlm_ = 0;
  bool fifo_enabled_ = false;
  size_t rx_trigger_ = 1;
  bool thr_interrupt_ = false;  // THR-empty interrupt pending (cleared by IIR read / THR write)
};

}  // namespace rove
