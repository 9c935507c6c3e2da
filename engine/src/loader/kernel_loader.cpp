// LoadKernel: reads the files, recognises the format and dispatches to its loader.
#include "rove/engine/loader/kernel_loader.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "rove/engine/loader/boot_layout.h"
#include "rove/engine/loader/load_error.h"
#include "rove/engine/loader/multiboot_loader.h"
#include "rove/mmu/guest_memory.h"

namespace rove::loader {
namespace {

// Closes a file descriptor on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

const char* ToString(KernelFormat format) {
  switch (format) {
    case KernelFormat::kLinuxBzImage:
      return "Linux bzImage";
    case KernelFormat::kMultibootElf:
      return "multiboot ELF";
    case KernelFormat::kMultibootAout:
      return "multiboot a.out kludge";
    case KernelFormat::kRawBinary:
      return "raw binary";
  }
  return "unknown";
}

std::vector<uint8_t> ReadFileBytes(const std::string& path, uint64_t max_size) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw LoadError(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  struct stat st;
  if (fstat(fd.get(), &st) != 0) {
    throw LoadError(fmt::format("cannot stat {}: {}", path, std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) throw LoadError(fmt::format("{} is not a regular file", path));
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > max_size) {
    throw LoadError(fmt::format("{} is {} MiB, larger than the {} MiB it may take", path,
                                size >> 20, max_size >> 20));
  }
  std::vector<uint8_t> bytes(size);
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = read(fd.get(), bytes.data() + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw LoadError(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
    if (n == 0) throw LoadError(fmt::format("{} shrank while being read", path));
    done += static_cast<uint64_t>(n);
  }
  return bytes;
}

LoadResult LoadKernel(GuestMemory& memory, CpuState& cpu, const LoadOptions& options) {
  if (options.kernel_path.empty()) throw LoadError("no kernel file given");
  const uint64_t ram = memory.ram_size();
  std::vector<uint8_t> kernel = ReadFileBytes(options.kernel_path, ram);
  std::vector<uint8_t> initrd;
  if (!options.initrd_path.empty()) initrd = ReadFileBytes(options.initrd_path, ram);

  const bool is_linux = IsBzImage(kernel);
  std::optional<MultibootHeader> multiboot;
  if (!is_linux) multiboot = FindMultibootHeader(kernel);
  if (!is_linux && !multiboot) {
    throw LoadError(fmt::format("{}: not a bzImage or multiboot kernel", options.kernel_path));
  }
  if (is_linux && !options.modules.empty()) {
    throw LoadError("modules are for multiboot kernels; a Linux kernel takes an initrd");
  }

  std::vector<std::vector<uint8_t>> module_files;
  module_files.reserve(options.modules.size());
  for (const ModuleFile& m : options.modules) module_files.push_back(ReadFileBytes(m.path, ram));

  MemoryMap map = BuildPcMemoryMap(ram, options.reserved);
  uint64_t rsdp = 0;
  if (options.acpi) rsdp = InstallAcpiTables(memory, *options.acpi);

  LoadResult result;
  try {
    if (is_linux) {
      LinuxBootOptions o;
      o.cmdline = options.cmdline;
      o.entry = options.linux_entry;
      o.acpi_rsdp = rsdp;
      o.memory_map = map;
      result = LoadLinux(memory, cpu, kernel, initrd, o);
    } else {
      MultibootOptions o;
      o.cmdline = options.cmdline;
      o.memory_map = map;
      if (!options.initrd_path.empty()) {
        o.modules.push_back({initrd, options.initrd_path});
      }
      for (size_t i = 0; i < options.modules.size(); ++i) {
        const ModuleFile& m = options.modules[i];
        o.modules.push_back({module_files[i], m.cmdline.empty() ? m.path : m.cmdline});
      }
      result = LoadMultiboot(memory, cpu, kernel, o);
      result.rsdp = rsdp;
    }
  } catch (const LoadError& e) {
    throw LoadError(fmt::format("{}: {}", options.kernel_path, e.what()));
  }
  if (options.acpi) {
    for (const LoadedRange& r : result.ranges) {
      if (r.gpa < kAcpiTablesEnd && kAcpiTablesAddr < r.gpa + r.size) {
        throw LoadError(fmt::format("{}: {} [{:#x}, {:#x}) overwrites the ACPI tables at {:#x}",
                                    options.kernel_path, r.name, r.gpa, r.gpa + r.size,
                                    kAcpiTablesAddr));
      }
    }
  }
  return result;
}

}  // namespace rove::loader
