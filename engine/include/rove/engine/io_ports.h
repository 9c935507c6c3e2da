// How a vCPU reaches port I/O. The machine implements it over the PIO bus; tests implement it
// directly (e.g. a debug-exit port and a console port).
#pragma once

#include <cstdint>

namespace rove {

class IoPorts {
 public:
  virtual ~IoPorts() = default;
  // width is 1, 2 or 4 bytes.
  virtual uint32_t In(uint16_t port, unsigned width) = 0;
  virtual void Out(uint16_t port, unsigned width, uint32_t value) = 0;
};

}  // namespace rove
