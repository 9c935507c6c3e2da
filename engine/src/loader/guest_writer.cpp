#include "guest_writer.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "bytes.h"
#include "rove/engine/loader/load_error.h"
#include "rove/mmu/guest_memory.h"

namespace rove::loader::detail {

void GuestWriter::CheckRam(uint64_t gpa, uint64_t size, const std::string& what) const {
  uint64_t end = CheckedEnd(gpa, size, what);
  if (size == 0) return;
  for (uint64_t page = AlignDown(gpa, kPageSize); page < end; page += kPageSize) {
    if (!memory_.IsRam(page)) {
      throw LoadError(fmt::format(
          "{} [{:#x}, {:#x}) does not fit in guest RAM ({:#x} is not RAM; {} MiB of RAM)", what,
          gpa, end, std::max(page, gpa), memory_.ram_size() >> 20));
    }
    if (page > end - kPageSize) break;  // avoid wrapping at the top of the address space
  }
}

void GuestWriter::Write(const std::string& what, uint64_t gpa, std::span<const uint8_t> data,
                        uint64_t total) {
  total = std::max<uint64_t>(total, data.size());
  CheckRam(gpa, total, what);
  if (!data.empty()) memory_.Write(gpa, data.data(), data.size());
  static constexpr size_t kChunk = 4096;
  std::array<uint8_t, kChunk> zeros{};
  for (uint64_t done = data.size(); done < total;) {
    uint64_t n = std::min<uint64_t>(kChunk, total - done);
    memory_.Write(gpa + done, zeros.data(), n);
    done += n;
  }
  ranges_.push_back({what, gpa, total});
}

}  // namespace rove::loader::detail
