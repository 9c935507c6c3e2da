// The rove snapshot format (docs/SNAPSHOT.md): a file holding a stopped machine — every vCPU's
// complete state, every device's state and guest RAM — from which a machine built with the same
// configuration continues exactly where the saved one was. Accelerator switching uses the same
// vCPU state (CpuState), so a snapshot taken under one accelerator resumes under the other.
//
// Container: "ROVESNAP", u32 format version, u32 section count, then sections
//   { u32 tag, u32 section version, u64 payload length, u32 CRC-32 of the payload, payload }.
// Bad input (wrong magic or version, truncation, checksum mismatch, malformed payloads, a
// machine of another shape) throws SnapshotError with a one-line reason, never crashes.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "rove/translator/cpu_state.h"

namespace rove {

class StateWriter;
class StateReader;

class SnapshotError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr char kSnapshotMagic[8] = {'R', 'O', 'V', 'E', 'S', 'N', 'A', 'P'};
inline constexpr uint32_t kSnapshotFormatVersion = 1;

struct SnapshotSection {
  uint32_t tag = 0;  // four ASCII characters, first in the lowest byte (StateTag)
  uint32_t version = 0;
  std::vector<uint8_t> payload;
};

std::vector<uint8_t> EncodeSnapshot(const std::vector<SnapshotSection>& sections);
// Checks magic, format version, lengths and checksums.
std::vector<SnapshotSection> DecodeSnapshot(std::span<const uint8_t> bytes);

uint32_t Crc32(std::span<const uint8_t> bytes);

// CpuState, field by field (layout-independent). `guest_tsc` is the guest's TSC at save time:
// the loader re-bases its own clock on it, so the TSC continues rather than jumps.
void WriteCpuState(StateWriter& out, const CpuState& state, uint64_t guest_tsc);
// Throws StateError on malformed input.
void ReadCpuState(StateReader& in, CpuState& state, uint64_t& guest_tsc);

void WriteSnapshotFile(const std::string& path, std::span<const uint8_t> bytes);
std::vector<uint8_t> ReadSnapshotFile(const std::string& path);

}  // namespace rove
