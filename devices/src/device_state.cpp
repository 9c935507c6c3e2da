#include "rove/devices/device_state.h"

#include <fmt/format.h>

#include <cstring>

namespace rove {

std::string StateTagName(uint32_t tag) {
  std::string name;
  for (unsigned i = 0; i < 4; ++i) {
    const char c = char(tag >> (8 * i));
    name += (c >= 0x20 && c < 0x7F) ? c : '?';
  }
  return name;
}

void StateWriter::Bytes(const void* p, size_t n) {
  const auto* bytes = static_cast<const uint8_t*>(p);
  if (n) data_.insert(data_.end(), bytes, bytes + n);
}

void StateWriter::Blob(std::span<const uint8_t> bytes) {
  U32(uint32_t(bytes.size()));
  Bytes(bytes.data(), bytes.size());
}

size_t StateWriter::BeginRecord(uint32_t tag, uint32_t version) {
  U32(tag);
  U32(version);
  const size_t token = data_.size();
  U32(0);  // length, patched by EndRecord
  return token;
}

void StateWriter::EndRecord(size_t token) {
  const uint64_t length = data_.size() - token - 4;
  if (token + 4 > data_.size() || length > UINT32_MAX) {
    throw StateError("device state: EndRecord without a matching BeginRecord or record too long");
  }
  for (unsigned i = 0; i < 4; ++i) data_[token + i] = uint8_t(length >> (8 * i));
}

StateReader::StateReader(std::span<const uint8_t> data, std::string context)
    : data_(data), context_(std::move(context)) {}

void StateReader::Fail(const std::string& message) const {
  if (context_.empty()) throw StateError(fmt::format("device state: {}", message));
  throw StateError(fmt::format("device state: {} in record {}", message, context_));
}

const uint8_t* StateReader::Take(size_t n, const char* what) {
  if (n > data_.size() - pos_) {
    Fail(fmt::format("truncated input reading '{}' (need {} bytes at offset {}, {} left)", what, n,
                     base_ + pos_, data_.size() - pos_));
  }
  const uint8_t* p = data_.data() + pos_;
  pos_ += n;
  return p;
}

uint64_t StateReader::Le(unsigned n, const char* what) {
  const uint8_t* p = Take(n, what);
  uint64_t v = 0;
  for (unsigned i = 0; i < n; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

uint8_t StateReader::U8(const char* what) {
  return uint8_t(Le(1, what));
}
uint16_t StateReader::U16(const char* what) {
  return uint16_t(Le(2, what));
}
uint32_t StateReader::U32(const char* what) {
  return uint32_t(Le(4, what));
}
uint64_t StateReader::U64(const char* what) {
  return Le(8, what);
}
int64_t StateReader::I64(const char* what) {
  return int64_t(Le(8, what));
}

bool StateReader::Bool(const char* what) {
  const uint8_t v = U8(what);
  if (v > 1) Fail(fmt::format("invalid boolean {} for '{}'", v, what));
  return v == 1;
}

void StateReader::Bytes(void* out, size_t n, const char* what) {
  const uint8_t* p = Take(n, what);
  if (n) std::memcpy(out, p, n);
}

std::vector<uint8_t> StateReader::Blob(size_t max_size, const char* what) {
  const uint32_t n = U32(what);
  if (n > max_size)
    Fail(fmt::format("'{}' is {} bytes long, at most {} allowed", what, n, max_size));
  const uint8_t* p = Take(n, what);
  return std::vector<uint8_t>(p, p + n);
}

uint8_t StateReader::U8Max(uint8_t max, const char* what) {
  const uint8_t v = U8(what);
  if (v > max) Fail(fmt::format("invalid value {} for '{}' (at most {})", v, what, max));
  return v;
}

uint32_t StateReader::U32Max(uint32_t max, const char* what) {
  const uint32_t v = U32(what);
  if (v > max) Fail(fmt::format("invalid value {} for '{}' (at most {})", v, what, max));
  return v;
}

uint64_t StateReader::U64Max(uint64_t max, const char* what) {
  const uint64_t v = U64(what);
  if (v > max) Fail(fmt::format("invalid value {} for '{}' (at most {})", v, what, max));
  return v;
}

uint32_t StateReader::PeekTag() {
  const size_t at = pos_;
  const uint32_t tag = U32("record tag");
  pos_ = at;
  return tag;
}

StateReader StateReader::ReadRecord(uint32_t tag, uint32_t version) {
  const std::string name = StateTagName(tag);
  const size_t start = pos_;
  const uint32_t got_tag = U32("record tag");
  if (got_tag != tag) {
    pos_ = start;
    Fail(fmt::format("expected record '{}' at offset {}, found '{}'", name, base_ + start,
                     StateTagName(got_tag)));
  }
  const uint32_t got_version = U32("record version");
  if (got_version != version) {
    Fail(fmt::format("record '{}' has version {}, this build reads version {}", name, got_version,
                     version));
  }
  const uint32_t length = U32("record length");
  if (length > data_.size() - pos_) {
    Fail(fmt::format("record '{}' claims {} bytes but only {} remain", name, length,
                     data_.size() - pos_));
  }
  StateReader payload(data_.subspan(pos_, length),
                      context_.empty() ? "'" + name + "'" : context_ + "/'" + name + "'");
  payload.base_ = base_ + pos_;
  pos_ += length;
  return payload;
}

void StateReader::ExpectEnd() const {
  if (!AtEnd()) {
    Fail(fmt::format("{} unexpected bytes left at offset {}", data_.size() - pos_, base_ + pos_));
  }
}

}  // namespace rove
