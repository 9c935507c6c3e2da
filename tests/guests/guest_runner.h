// Loads a flat guest binary at its load address and runs it from real mode on a rove::Vcpu
// with the test I/O ports (debug exit 0xF4, console 0x3F8).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "run_support.h"

namespace rove::testing {

inline constexpr uint64_t kGuestLoadAddr = 0x8000;
inline constexpr uint64_t kGuestRamBytes = 16ull << 20;
inline constexpr uint32_t kGuestPass = 0x31;

struct GuestResult {
  std::string error;  // could not load/run (not a guest failure)
  bool exited = false;
  uint32_t exit_value = 0;
  std::string console;
  std::string stop;  // stop reason and message
};

struct GuestOptions {
  uint64_t max_exits = 0;
  unsigned timeout_ms = 60000;
  // Called after loading, before running (e.g. to patch bytes into the image).
  std::function<void(uint8_t* ram)> prepare;
};

// Path of an assembled guest: <build>/tests/guests/<name>.bin.
std::string GuestImagePath(const std::string& name);
std::vector<uint8_t> ReadFileBytes(const std::string& path);

GuestResult RunGuestImage(const std::vector<uint8_t>& image, const GuestOptions& options);

}  // namespace rove::testing
