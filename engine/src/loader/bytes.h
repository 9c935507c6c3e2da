// Internal: bounds-checked little-endian access to file images and scratch buffers, and checked
// arithmetic on guest ranges. Every read of untrusted bytes in the loaders goes through here.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "rove/engine/loader/load_error.h"

namespace rove::loader::detail {

// Reads little-endian values from an untrusted image; any access outside it throws LoadError
// "<what> is truncated ...".
class ByteReader {
 public:
  ByteReader(std::span<const uint8_t> bytes, std::string what)
      : bytes_(bytes), what_(std::move(what)) {}

  size_t size() const { return bytes_.size(); }
  bool Has(uint64_t offset, uint64_t length) const {
    return offset <= bytes_.size() && length <= bytes_.size() - offset;
  }
  void Require(uint64_t offset, uint64_t length, const char* field) const {
    if (!Has(offset, length)) {
      throw LoadError(
          fmt::format("{} is truncated: {} needs bytes [{:#x}, {:#x}) of a {}-byte file", what_,
                      field, offset, offset + length, bytes_.size()));
    }
  }
  std::span<const uint8_t> Slice(uint64_t offset, uint64_t length, const char* field) const {
    Require(offset, length, field);
    return bytes_.subspan(offset, length);
  }
  template <typename T>
  T Get(uint64_t offset, const char* field = "a header field") const {
    Require(offset, sizeof(T), field);
    T v;
    std::memcpy(&v, bytes_.data() + offset, sizeof(T));
    return v;  // x86-64 hosts only: little-endian
  }
  uint8_t U8(uint64_t o, const char* f = "a header field") const { return Get<uint8_t>(o, f); }
  uint16_t U16(uint64_t o, const char* f = "a header field") const { return Get<uint16_t>(o, f); }
  uint32_t U32(uint64_t o, const char* f = "a header field") const { return Get<uint32_t>(o, f); }
  uint64_t U64(uint64_t o, const char* f = "a header field") const { return Get<uint64_t>(o, f); }

 private:
  std::span<const uint8_t> bytes_;
  std::string what_;
};

// A little-endian scratch buffer (zero page, multiboot info, ACPI tables) built on the host and
// copied into the guest in one piece. Writes grow the buffer as needed.
class ByteBuffer {
 public:
  ByteBuffer() = default;
  explicit ByteBuffer(size_t size) : bytes_(size, 0) {}

  template <typename T>
  void Put(size_t offset, T value) {
    Grow(offset + sizeof(T));
    std::memcpy(bytes_.data() + offset, &value, sizeof(T));
  }
  void Put8(size_t o, uint8_t v) { Put(o, v); }
  void Put16(size_t o, uint16_t v) { Put(o, v); }
  void Put32(size_t o, uint32_t v) { Put(o, v); }
  void Put64(size_t o, uint64_t v) { Put(o, v); }
  void PutBytes(size_t offset, std::span<const uint8_t> data) {
    Grow(offset + data.size());
    if (!data.empty()) std::memcpy(bytes_.data() + offset, data.data(), data.size());
  }
  void PutString(size_t offset, std::string_view s) {
    PutBytes(offset, {reinterpret_cast<const uint8_t*>(s.data()), s.size()});
  }
  template <typename T>
  T Get(size_t offset) const {
    T v{};
    if (offset + sizeof(T) <= bytes_.size()) std::memcpy(&v, bytes_.data() + offset, sizeof(T));
    return v;
  }
  void Grow(size_t size) {
    if (bytes_.size() < size) bytes_.resize(size, 0);
  }
  size_t size() const { return bytes_.size(); }
  uint8_t* data() { return bytes_.data(); }
  const uint8_t* data() const { return bytes_.data(); }
  std::span<const uint8_t> span() const { return bytes_; }
  std::vector<uint8_t>& vector() { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

inline uint64_t AlignUp(uint64_t v, uint64_t align) {
  return (v + align - 1) & ~(align - 1);
}
inline uint64_t AlignDown(uint64_t v, uint64_t align) {
  return v & ~(align - 1);
}

// base + size, or LoadError if it wraps around.
inline uint64_t CheckedEnd(uint64_t base, uint64_t size, const std::string& what) {
  uint64_t end;
  if (__builtin_add_overflow(base, size, &end)) {
    throw LoadError(fmt::format("{} at {:#x} with size {:#x} wraps around the address space", what,
                                base, size));
  }
  return end;
}

inline bool Overlaps(uint64_t a_base, uint64_t a_end, uint64_t b_base, uint64_t b_end) {
  return a_base < b_end && b_base < a_end;
}

}  // namespace rove::loader::detail
