// Device state capture: the little-endian byte format devices save themselves into (for
// snapshots and for moving a running VM between accelerators) and read themselves back from.
//
// StateWriter appends fixed-width little-endian values; StateReader reads them back and throws
// StateError (never crashes, never reads out of bounds) on truncated input or an invalid value.
// Every read names what it reads, so the error says e.g.
//   "device state: truncated input reading 'reload' (need 4 bytes at offset 131, 1 left) in
//    record 'PIT '".
//
// Records: a tagged, versioned, length-prefixed block
//   u32 tag (four ASCII characters, first in the lowest byte), u32 version, u32 payload length,
//   payload.
// A reader opens a record expecting one tag and one version (ReadRecord) and gets a reader
// limited to the payload; after parsing it calls ExpectEnd(), so a record that is too long,
// too short, of another tag or of another version is rejected with a clear message.
//
// PcDevices::SaveState writes these records, in this order (devices that drive interrupt lines
// first, since loading them sets their lines; then the router and the interrupt controllers,
// which overwrite their input state with the saved one; the local APICs last). LoadState
// parses and checks all of them before applying any (ParseState), so bad input changes nothing:
//   "PCDV" v1  machine header: u32 vCPU count (must equal the loading machine's)
//   "PIT " v2  i8254: per channel mode/access/BCD/reload/gate/frozen state, time elapsed since
//              the count was loaded, write/read/latch state machines; channel 0's next IRQ0
//              edge as time remaining; port 0x61 bits; (v2) the phase of port 0x61's refresh
//              toggle
//   "RTC " v2  MC146818: 128 bytes of CMOS RAM/registers, index, NMI mask, time-of-day offset
//              from host wall time, register C, the time registers frozen by SET, (v2) the
//              periodic rate's phase relative to the clock, the lazily set PF flag, the last
//              second register C saw, periodic/update interrupts that were due
//   "UART" v1  COM1, then "UART" v1 COM2: receive FIFO contents, IER, LCR, MCR, LSR errors,
//              MSR, SCR, divisor, FIFO mode and trigger, pending THR-empty interrupt
//   "KBC " v1  i8042: output queue, internal RAM, output port, pending commands, last read
//   "ACPI" v1  PM1 status/enable/control, GPE0 status/enable, last PM timer MSB, time since
//              the PM timer read 0 (so it continues from where it was)
//   "PCI " v1  the CF8 latch, 0xCF9 reset control, then for every populated function its slot
//              and a nested "PCIF" v1 record (PciConfigSpace: the config space image)
//   "FWCF" v1  fw_cfg: selector, offset into the item, DMA address latch
//   "DBGX" v1  debug-exit: whether a status was written, and the status
//   "POST" v1  port 0x80: last value, write count
//   "IRQR" v1  IRQ router: per line (24), the bit mask of asserting sources
//   "PIC " v1  i8259 pair + ELCR: per chip irr, isr, imr, input levels, elcr, lowest-priority
//              IRQ, vector base, init step, mode flags; the INTR output
//   "IOAP" v1  I/O APIC: ID, IOREGSEL, 24 redirection entries (with remote IRR), input levels,
//              edges pending while masked
//   "APIC" v1  one per vCPU, in vCPU order: IA32_APIC_BASE, ID, TPR, LDR, DFR, SVR,
//              IRR/ISR/TMR, ESR (+ pending), ICR, 6 LVT entries, timer initial count and divide,
//              timer running, time since the count started, time to the next expiry, TSC
//              deadline (guest TSC value), pending NMI / ExtINT
//   "APBS" v1  APIC bus: the lowest-priority arbitration rotor
//
// Time: nothing absolute is saved. A running counter is saved as the time elapsed since it
// was loaded, a pending timer as the time remaining (0 if already due), both on the saving
// machine's Clock; loading re-bases them on the loading machine's Clock::NowNs(). A VM paused
// at save time and resumed after loading continues where it was: timers neither fire early
// nor get lost. Only the RTC's time of day follows host wall time, as a battery-backed clock
// does (its guest offset from wall time is what is saved).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace rove {

class StateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A record tag from four characters: StateTag("PIT ").
constexpr uint32_t StateTag(const char (&s)[5]) {
  return uint32_t(uint8_t(s[0])) | uint32_t(uint8_t(s[1])) << 8 | uint32_t(uint8_t(s[2])) << 16 |
         uint32_t(uint8_t(s[3])) << 24;
}
// "PIT " from the tag value (non-printable bytes as '?'), for messages.
std::string StateTagName(uint32_t tag);

class StateWriter {
 public:
  void U8(uint8_t v) { data_.push_back(v); }
  void U16(uint16_t v) { Le(v, 2); }
  void U32(uint32_t v) { Le(v, 4); }
  void U64(uint64_t v) { Le(v, 8); }
  void I64(int64_t v) { Le(uint64_t(v), 8); }
  void Bool(bool v) { data_.push_back(v ? 1 : 0); }
  void Bytes(const void* p, size_t n);
  // A length-prefixed byte string (u32 length, bytes).
  void Blob(std::span<const uint8_t> bytes);

  // Starts a record; returns the token for EndRecord, which fills in the length.
  // Records may nest.
  size_t BeginRecord(uint32_t tag, uint32_t version);
  void EndRecord(size_t token);

  const std::vector<uint8_t>& data() const { return data_; }
  std::vector<uint8_t> Take() { return std::move(data_); }
  size_t size() const { return data_.size(); }

 private:
  void Le(uint64_t v, unsigned n) {
    for (unsigned i = 0; i < n; ++i) data_.push_back(uint8_t(v >> (8 * i)));
  }
  std::vector<uint8_t> data_;
};

class StateReader {
 public:
  // `context` names what the bytes are (a record's tag), for error messages. The reader does
  // not copy the bytes: they must outlive it.
  explicit StateReader(std::span<const uint8_t> data, std::string context = "");

  uint8_t U8(const char* what = "u8");
  uint16_t U16(const char* what = "u16");
  uint32_t U32(const char* what = "u32");
  uint64_t U64(const char* what = "u64");
  int64_t I64(const char* what = "i64");
  // Only 0 and 1 are valid.
  bool Bool(const char* what = "bool");
  void Bytes(void* out, size_t n, const char* what = "bytes");
  // A Blob written by StateWriter::Blob, at most `max_size` bytes long.
  std::vector<uint8_t> Blob(size_t max_size, const char* what = "blob");

  // Validating readers: a value above `max` throws StateError.
  uint8_t U8Max(uint8_t max, const char* what);
  uint32_t U32Max(uint32_t max, const char* what);
  uint64_t U64Max(uint64_t max, const char* what);

  // Opens the next record: it must carry `tag` and `version` and fit in the remaining input.
  // Returns a reader over its payload and advances past the record.
  StateReader ReadRecord(uint32_t tag, uint32_t version);
  // The tag of the next record without consuming it (throws if fewer than 4 bytes remain).
  uint32_t PeekTag();

  bool AtEnd() const { return pos_ == data_.size(); }
  size_t remaining() const { return data_.size() - pos_; }
  size_t offset() const { return pos_; }
  // Throws StateError unless every byte has been read.
  void ExpectEnd() const;
  // Throws StateError naming `what` and this reader's context.
  [[noreturn]] void Fail(const std::string& message) const;

 private:
  const uint8_t* Take(size_t n, const char* what);
  uint64_t Le(unsigned n, const char* what);
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  size_t base_ = 0;  // offset of data_ in the outermost input, for messages
  std::string context_;
};

// What a device's ParseState returns: applies the parsed state to the device (cannot fail).
// PcDevices::LoadState parses every record before applying any, so bad input leaves the
// machine untouched.
using StateApply = std::function<void()>;

// Time helpers for devices: a deadline as time remaining (0 if due), and back.
inline uint64_t RemainingNs(uint64_t deadline_ns, uint64_t now_ns) {
  return deadline_ns > now_ns ? deadline_ns - now_ns : 0;
}

}  // namespace rove
