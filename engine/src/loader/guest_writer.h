// Internal: writes into guest RAM after checking that the whole destination range is RAM, and
// records what was written for LoadResult.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "rove/engine/loader/load_result.h"

namespace rove {
class GuestMemory;
}

namespace rove::loader::detail {

class GuestWriter {
 public:
  explicit GuestWriter(GuestMemory& memory) : memory_(memory) {}

  // Throws LoadError "<what> [a, b) does not fit in guest RAM ..." unless every byte of
  // [gpa, gpa + size) is RAM.
  void CheckRam(uint64_t gpa, uint64_t size, const std::string& what) const;
  // CheckRam, then copy `data` and zero-fill up to `total` bytes (total >= data.size()).
  void Write(const std::string& what, uint64_t gpa, std::span<const uint8_t> data, uint64_t total);
  void Write(const std::string& what, uint64_t gpa, std::span<const uint8_t> data) {
    Write(what, gpa, data, data.size());
  }

  GuestMemory& memory() { return memory_; }
  std::vector<LoadedRange>& ranges() { return ranges_; }

 private:
  GuestMemory& memory_;
  std::vector<LoadedRange> ranges_;
};

}  // namespace rove::loader::detail
