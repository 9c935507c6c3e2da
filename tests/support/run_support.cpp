#include "run_support.h"

#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

namespace rove::testing {

uint32_t RecordingIo::In(uint16_t port, unsigned width) {
  if (port == kConsolePort + 5) return 0x60;  // LSR: THR empty, transmitter idle
  ++other_accesses_;
  return width == 1 ? 0xFF : (width == 2 ? 0xFFFF : 0xFFFFFFFF);
}

void RecordingIo::Out(uint16_t port, unsigned width, uint32_t value) {
  if (port == kDebugExitPort) {
    exited_ = true;
    exit_status_ = (value << 1) | 1;
#if ROVE_TESTS_HAVE_VCPU
    if (vcpu_) vcpu_->RequestStop();
#endif
    return;
  }
  if (port == kConsolePort) {
    if (console_.size() < (1u << 20)) console_.push_back(static_cast<char>(value & 0xFF));
    return;
  }
  ++other_accesses_;
}

#if ROVE_TESTS_HAVE_VCPU
const char* StopReasonName(StopReason reason) {
  switch (reason) {
    case StopReason::kHalted:
      return "halted";
    case StopReason::kShutdown:
      return "shutdown";
    case StopReason::kStopRequested:
      return "stop requested";
    case StopReason::kInstructionLimit:
      return "instruction limit";
    case StopReason::kDebugExit:
      return "debug exit";
  }
  return "unknown";
}

StopInfo RunWithWatchdog(Vcpu& vcpu, uint64_t max_exits, unsigned timeout_ms) {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool fired = false;
  std::thread watchdog([&] {
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return done; })) {
      fired = true;
      vcpu.RequestStop();
    }
  });
  StopInfo info = vcpu.Run(max_exits);
  {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
  }
  cv.notify_all();
  watchdog.join();
  if (fired && info.reason == StopReason::kStopRequested) {
    info.message = fmt::format("watchdog: no stop after {} ms. {}", timeout_ms, info.message);
  }
  return info;
}
#endif

std::string RunInChild(size_t shared_bytes, const std::function<void(void*)>& child_fn,
                       const std::function<void(const void*)>& parent_fn, unsigned timeout_ms) {
  void* shared =
      mmap(nullptr, shared_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) return std::string("mmap failed: ") + std::strerror(errno);
  const pid_t pid = fork();
  if (pid < 0) {
    munmap(shared, shared_bytes);
    return std::string("fork failed: ") + std::strerror(errno);
  }
  if (pid == 0) {
    child_fn(shared);
    _exit(0);
  }
  int status = 0;
  std::string error;
  // Wait with a timeout: a pidfd becomes readable when the child exits.
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd pfd{pidfd, POLLIN, 0};
    int r;
    do {
      r = poll(&pfd, 1, static_cast<int>(timeout_ms));
    } while (r < 0 && errno == EINTR);
    close(pidfd);
    if (r == 0) {
      kill(pid, SIGKILL);
      error = fmt::format("timed out after {} ms", timeout_ms);
    }
  }
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      error = std::string("waitpid failed: ") + std::strerror(errno);
      break;
    }
  }
  if (error.empty()) {
    if (WIFSIGNALED(status)) {
      error =
          fmt::format("killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      error = fmt::format("exited with status {}", WEXITSTATUS(status));
    } else {
      parent_fn(shared);
    }
  }
  munmap(shared, shared_bytes);
  return error;
}

}  // namespace rove::testing
