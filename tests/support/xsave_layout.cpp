#include "xsave_layout.h"

#include <cpuid.h>

#include <cstring>

namespace rove::testing {
namespace {

uint64_t Xgetbv0() {
  uint32_t lo = 0, hi = 0;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

size_t ComponentOffset(unsigned component) {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  __cpuid_count(0xD, component, eax, ebx, ecx, edx);
  return eax != 0 ? ebx : 0;
}

XsaveLayout Query() {
  XsaveLayout l;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  __cpuid(1, eax, ebx, ecx, edx);
  const bool osxsave = (ecx & (1u << 27)) != 0;
  if (!osxsave) return l;
  l.host_xcr0 = Xgetbv0();
  l.guest_xcr0 = l.host_xcr0 & kXcr0Tested;
  if (l.guest_xcr0 & kXcr0Avx) l.ymm_hi128 = ComponentOffset(2);
  if ((l.guest_xcr0 & kXcr0Avx512) == kXcr0Avx512) {
    l.opmask = ComponentOffset(5);
    l.zmm_hi256 = ComponentOffset(6);
    l.hi16_zmm = ComponentOffset(7);
    l.has_avx512 = l.opmask && l.zmm_hi256 && l.hi16_zmm && l.hi16_zmm + 1024 <= kXsaveImageSize;
  } else {
    l.guest_xcr0 &= ~kXcr0Avx512;
  }
  return l;
}

uint64_t XstateBv(const uint8_t* image) {
  uint64_t v;
  std::memcpy(&v, image + kXstateBvOffset, 8);
  return v;
}

void SetXstateBv(uint8_t* image, uint64_t v) {
  std::memcpy(image + kXstateBvOffset, &v, 8);
}

}  // namespace

const XsaveLayout& HostXsaveLayout() {
  static const XsaveLayout layout = Query();
  return layout;
}

int VectorRegCount() {
  return HostXsaveLayout().has_avx512 ? 32 : 16;
}

void InitXsaveImage(uint8_t* image) {
  std::memset(image, 0, kXsaveImageSize);
  const uint16_t fcw = 0x037F;
  std::memcpy(image + kFcwOffset, &fcw, 2);
  WriteMxcsr(image, 0x1F80);
  SetXstateBv(image, HostXsaveLayout().guest_xcr0);
}

void ReadZmm(const uint8_t* image, int i, uint8_t out[64]) {
  const XsaveLayout& l = HostXsaveLayout();
  const uint64_t bv = XstateBv(image);
  std::memset(out, 0, 64);
  if (i < 16) {
    if (bv & kXcr0Sse) std::memcpy(out, image + kXmmOffset + 16 * i, 16);
    if (l.ymm_hi128 && (bv & kXcr0Avx)) std::memcpy(out + 16, image + l.ymm_hi128 + 16 * i, 16);
    if (l.has_avx512 && (bv & kXcr0ZmmHi256)) {
      std::memcpy(out + 32, image + l.zmm_hi256 + 32 * i, 32);
    }
  } else if (l.has_avx512 && (bv & kXcr0Hi16Zmm)) {
    std::memcpy(out, image + l.hi16_zmm + 64 * (i - 16), 64);
  }
}

void WriteZmm(uint8_t* image, int i, const uint8_t in[64]) {
  const XsaveLayout& l = HostXsaveLayout();
  if (i < 16) {
    std::memcpy(image + kXmmOffset + 16 * i, in, 16);
    if (l.ymm_hi128) std::memcpy(image + l.ymm_hi128 + 16 * i, in + 16, 16);
    if (l.has_avx512) std::memcpy(image + l.zmm_hi256 + 32 * i, in + 32, 32);
  } else if (l.has_avx512) {
    std::memcpy(image + l.hi16_zmm + 64 * (i - 16), in, 64);
  }
}

uint64_t ReadOpmask(const uint8_t* image, int i) {
  const XsaveLayout& l = HostXsaveLayout();
  if (!l.has_avx512 || !(XstateBv(image) & kXcr0Opmask)) return 0;
  uint64_t v;
  std::memcpy(&v, image + l.opmask + 8 * i, 8);
  return v;
}

void WriteOpmask(uint8_t* image, int i, uint64_t value) {
  const XsaveLayout& l = HostXsaveLayout();
  if (l.has_avx512) std::memcpy(image + l.opmask + 8 * i, &value, 8);
}

uint32_t ReadMxcsr(const uint8_t* image) {
  uint32_t v;
  std::memcpy(&v, image + kMxcsrOffset, 4);
  return v;
}

void WriteMxcsr(uint8_t* image, uint32_t value) {
  std::memcpy(image + kMxcsrOffset, &value, 4);
}

uint16_t ReadFcw(const uint8_t* image) {
  if (!(XstateBv(image) & kXcr0X87)) return 0x037F;
  uint16_t v;
  std::memcpy(&v, image + kFcwOffset, 2);
  return v;
}

uint16_t ReadFsw(const uint8_t* image) {
  if (!(XstateBv(image) & kXcr0X87)) return 0;
  uint16_t v;
  std::memcpy(&v, image + kFswOffset, 2);
  return v;
}

uint8_t ReadFtw(const uint8_t* image) {
  if (!(XstateBv(image) & kXcr0X87)) return 0;
  return image[kFtwOffset];
}

void ReadSt(const uint8_t* image, int i, uint8_t out[10]) {
  if (!(XstateBv(image) & kXcr0X87)) {
    std::memset(out, 0, 10);
    return;
  }
  std::memcpy(out, image + kStOffset + 16 * i, 10);
}

}  // namespace rove::testing
