// A forked helper process that runs requests one after another: the test writes a request into
// a shared buffer, Call() lets the child run its handler on it, and the reply is read from the
// same buffer. Cheaper than a fork per request (forking an ASan process costs milliseconds)
// while keeping what it isolates: if the child crashes or hangs, Call() reports it and the next
// Call() starts a fresh child.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <string>

namespace rove::testing {

class WorkerProcess {
 public:
  // handler(shared) runs in the child for every Call(). The child starts at the first Call().
  WorkerProcess(size_t shared_bytes, std::function<void(void* shared)> handler);
  ~WorkerProcess();
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  void* shared() const { return shared_; }
  // "" when the handler ran and returned; otherwise how the child ended.
  std::string Call(unsigned timeout_ms);

 private:
  std::string Start();
  void Stop();

  size_t shared_bytes_;
  void* shared_ = nullptr;
  std::function<void(void*)> handler_;
  pid_t pid_ = -1;
  int cmd_fd_ = -1;   // parent writes requests
  int resp_fd_ = -1;  // parent reads replies
};

}  // namespace rove::testing
