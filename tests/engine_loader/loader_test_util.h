// Helpers shared by the loader tests: guest memory, little-endian accessors, synthetic images,
// temporary directories and external tools.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "rove/engine/loader/linux_loader.h"
#include "rove/mmu/guest_memory.h"
#include "rove/translator/cpu_state.h"

namespace rove::loader::testing {

inline constexpr uint64_t kMiB = 1ull << 20;

using Bytes = std::vector<uint8_t>;

template <typename T>
void Put(Bytes& b, size_t offset, T value) {
  if (b.size() < offset + sizeof(T)) b.resize(offset + sizeof(T), 0);
  std::memcpy(b.data() + offset, &value, sizeof(T));
}
template <typename T>
T Get(const Bytes& b, size_t offset) {
  T v{};
  if (offset + sizeof(T) <= b.size()) std::memcpy(&v, b.data() + offset, sizeof(T));
  return v;
}
inline void PutStr(Bytes& b, size_t offset, const std::string& s) {
  if (b.size() < offset + s.size()) b.resize(offset + s.size(), 0);
  std::memcpy(b.data() + offset, s.data(), s.size());
}

inline Bytes ReadGuest(GuestMemory& mem, uint64_t gpa, size_t len) {
  Bytes b(len);
  mem.Read(gpa, b.data(), len);
  return b;
}
template <typename T>
T GuestGet(GuestMemory& mem, uint64_t gpa) {
  T v{};
  mem.Read(gpa, &v, sizeof(T));
  return v;
}
inline std::string GuestString(GuestMemory& mem, uint64_t gpa, size_t max = 4096) {
  std::string s;
  for (size_t i = 0; i < max; ++i) {
    char c = GuestGet<char>(mem, gpa + i);
    if (c == 0) break;
    s.push_back(c);
  }
  return s;
}

// A synthetic bzImage: protocol 2.15, 64-bit capable, relocatable, pref_address 16 MiB.
struct BzImageSpec {
  uint8_t setup_sects = 4;
  uint16_t version = 0x020F;
  uint32_t pm_size = 64 * 1024;
  uint32_t init_size = 4 * kMiB;
  uint64_t pref_address = 16 * kMiB;
  uint32_t initrd_addr_max = 0x7FFFFFFF;
  uint16_t xloadflags = 0x7F;
  uint8_t loadflags = 0x01;
  uint8_t relocatable = 1;
  uint32_t cmdline_size = 2047;
};

inline Bytes MakeBzImage(const BzImageSpec& s = {}) {
  const size_t setup = (size_t{s.setup_sects} + 1) * 512;
  Bytes b(setup + s.pm_size, 0);
  namespace bp = boot_params;
  Put<uint8_t>(b, bp::kSetupSects, s.setup_sects);
  Put<uint32_t>(b, 0x1F4, s.pm_size / 16);  // syssize
  Put<uint16_t>(b, bp::kBootFlag, 0xAA55);
  Put<uint8_t>(b, bp::kJump, 0xEB);
  Put<uint8_t>(b, bp::kJump + 1, 0x6A);  // header ends at 0x26C
  PutStr(b, bp::kHeader, "HdrS");
  Put<uint16_t>(b, bp::kVersion, s.version);
  Put<uint16_t>(b, bp::kKernelVersion, 0x300);  // string at 0x500 in the file
  PutStr(b, 0x500, "9.9.9-synthetic (test@rove) #1");
  Put<uint8_t>(b, bp::kLoadFlags, s.loadflags);
  Put<uint32_t>(b, bp::kCode32Start, 0x100000);
  Put<uint32_t>(b, bp::kInitrdAddrMax, s.initrd_addr_max);
  Put<uint32_t>(b, bp::kKernelAlignment, 0x200000);
  Put<uint8_t>(b, bp::kRelocatableKernel, s.relocatable);
  Put<uint16_t>(b, bp::kXloadflags, s.xloadflags);
  Put<uint32_t>(b, bp::kCmdlineSize, s.cmdline_size);
  Put<uint64_t>(b, bp::kPrefAddress, s.pref_address);
  Put<uint32_t>(b, bp::kInitSize, s.init_size);
  // Recognisable protected-mode bytes: offset i holds i * 7.
  for (size_t i = 0; i < s.pm_size; ++i) b[setup + i] = static_cast<uint8_t>(i * 7);
  return b;
}

// A temporary directory removed at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "rove-loader-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::string File(const std::string& name) const { return (path_ / name).string(); }
  std::string Write(const std::string& name, const Bytes& data) const {
    std::ofstream f(File(name), std::ios::binary);
    f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
    return File(name);
  }
  std::string WriteText(const std::string& name, const std::string& text) const {
    std::ofstream f(File(name));
    f << text;
    return File(name);
  }

 private:
  std::filesystem::path path_;
};

inline Bytes ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

inline bool HaveTool(const std::string& tool) {
  return std::system(("command -v " + tool + " >/dev/null 2>&1").c_str()) == 0;
}

// Runs a shell command; returns its exit status and appends its output to *output.
inline int RunCommand(const std::string& command, std::string* output = nullptr) {
  std::string cmd = command + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
    if (output) output->append(buf, n);
  }
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A fresh vCPU state: the tests check that the loaders set every field they own.
inline std::unique_ptr<CpuState> GarbageCpu() {
  auto cpu = std::make_unique<CpuState>();
  for (uint64_t& r : cpu->gpr) r = 0xDEADBEEFDEADBEEFull;
  cpu->rflags = 0x202;
  cpu->rip = 0x1234;
  return cpu;
}

// Path of the fetched Debian kernel, or empty if scripts/fetch-guest.sh has not been run.
inline std::string DebianKernelPath() {
  if (const char* env = std::getenv("ROVE_VMLINUZ")) {
    return std::filesystem::exists(env) ? env : "";
  }
  std::string p = std::string(ROVE_SOURCE_DIR) + "/build/guest/vmlinuz";
  return std::filesystem::exists(p) ? p : "";
}

// Walks the guest's 4-level page tables from `cr3` for `va`; returns the physical address or
// ~0 if not mapped.
inline uint64_t Translate(GuestMemory& mem, uint64_t cr3, uint64_t va) {
  uint64_t table = cr3 & ~0xFFFull;
  const int shifts[] = {39, 30, 21, 12};
  for (int level = 0; level < 4; ++level) {
    uint64_t e = GuestGet<uint64_t>(mem, table + ((va >> shifts[level]) & 511) * 8);
    if (!(e & 1)) return ~0ull;
    uint64_t addr = e & 0x000FFFFFFFFFF000ull;
    if (level > 0 && level < 3 && (e & 0x80)) {
      uint64_t page = 1ull << shifts[level];
      return (addr & ~(page - 1)) | (va & (page - 1));
    }
    table = addr;
  }
  return table | (va & 0xFFF);
}

}  // namespace rove::loader::testing
