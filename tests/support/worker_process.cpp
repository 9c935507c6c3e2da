#include "worker_process.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace rove::testing {
namespace {

// Parent-side pipe ends of every worker: a new child closes the other workers' ends, otherwise
// two children would keep each other's request pipes open and never see end-of-file.
std::vector<int>& OpenWorkerFds() {
  // Never destroyed: workers held in function-local statics stop during exit, possibly after
  // a static vector here would have been destroyed.
  static auto* fds = new std::vector<int>;
  return *fds;
}

void Forget(int fd) {
  auto& fds = OpenWorkerFds();
  for (size_t i = 0; i < fds.size(); ++i) {
    if (fds[i] == fd) {
      fds.erase(fds.begin() + static_cast<ptrdiff_t>(i));
      return;
    }
  }
}

}  // namespace

WorkerProcess::WorkerProcess(size_t shared_bytes, std::function<void(void*)> handler)
    : shared_bytes_(shared_bytes), handler_(std::move(handler)) {
  shared_ = mmap(nullptr, shared_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared_ == MAP_FAILED) shared_ = nullptr;
}

WorkerProcess::~WorkerProcess() {
  Stop();
  if (shared_) munmap(shared_, shared_bytes_);
}

void WorkerProcess::Stop() {
  if (cmd_fd_ >= 0) {
    Forget(cmd_fd_);
    close(cmd_fd_);
  }
  if (resp_fd_ >= 0) {
    Forget(resp_fd_);
    close(resp_fd_);
  }
  cmd_fd_ = resp_fd_ = -1;
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int status;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  pid_ = -1;
}

std::string WorkerProcess::Start() {
  int cmd[2], resp[2];
  if (pipe2(cmd, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
  if (pipe2(resp, O_CLOEXEC) != 0) {
    close(cmd[0]);
    close(cmd[1]);
    return std::string("pipe: ") + std::strerror(errno);
  }
  const pid_t pid = fork();
  if (pid < 0) return std::string("fork: ") + std::strerror(errno);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(cmd[1]);
    close(resp[0]);
    for (int fd : OpenWorkerFds()) close(fd);
    for (;;) {
      char b;
      const ssize_t n = read(cmd[0], &b, 1);
      if (n == 0) _exit(0);
      if (n < 0) {
        if (errno == EINTR) continue;
        _exit(1);
      }
      handler_(shared_);
      while (write(resp[1], &b, 1) < 0 && errno == EINTR) {
      }
    }
  }
  close(cmd[0]);
  close(resp[1]);
  pid_ = pid;
  cmd_fd_ = cmd[1];
  resp_fd_ = resp[0];
  OpenWorkerFds().push_back(cmd_fd_);
  OpenWorkerFds().push_back(resp_fd_);
  return "";
}

std::string WorkerProcess::Call(unsigned timeout_ms) {
  if (!shared_) return "no shared memory";
  if (pid_ < 0) {
    if (std::string err = Start(); !err.empty()) return err;
  }
  const char b = 1;
  if (write(cmd_fd_, &b, 1) != 1) {
    Stop();
    return "worker gone";
  }
  pollfd pfd{resp_fd_, POLLIN, 0};
  int r;
  do {
    r = poll(&pfd, 1, static_cast<int>(timeout_ms));
  } while (r < 0 && errno == EINTR);
  if (r > 0) {
    char c;
    if (read(resp_fd_, &c, 1) == 1) return "";
  }
  // Timed out, or the child closed the pipe (it died).
  std::string why = r == 0 ? fmt::format("timed out after {} ms", timeout_ms) : "";
  kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  if (why.empty()) {
    why = WIFSIGNALED(status) ? fmt::format("killed by signal {} ({})", WTERMSIG(status),
                                            strsignal(WTERMSIG(status)))
                              : fmt::format("exited with status {}", WEXITSTATUS(status));
  }
  pid_ = -1;
  Stop();
  return why;
}

}  // namespace rove::testing
