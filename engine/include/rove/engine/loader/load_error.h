// The one error type every loader throws: a truncated, corrupt or oversized file, a file that
// does not fit in guest RAM, or a request the loader cannot honour. what() is one line that names
// the problem, suitable for `rove: <what>` on the command line.
#pragma once

#include <stdexcept>
#include <string>

namespace rove::loader {

class LoadError : public std::runtime_error {
 public:
  explicit LoadError(const std::string& reason) : std::runtime_error(reason) {}
};

}  // namespace rove::loader
