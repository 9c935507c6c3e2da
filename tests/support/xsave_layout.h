// The host's standard-format (non-compacted) XSAVE layout, as CPUID leaf 0DH reports it, and
// helpers to build and read XSAVE images. The differential harness and the guest tests use it to
// write vector state into CpuState::xsave and to compare images taken natively and under rove.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace rove::testing {

// State components the tests use: x87, SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM.
inline constexpr uint64_t kXcr0X87 = 1u << 0;
inline constexpr uint64_t kXcr0Sse = 1u << 1;
inline constexpr uint64_t kXcr0Avx = 1u << 2;
inline constexpr uint64_t kXcr0Opmask = 1u << 5;
inline constexpr uint64_t kXcr0ZmmHi256 = 1u << 6;
inline constexpr uint64_t kXcr0Hi16Zmm = 1u << 7;
inline constexpr uint64_t kXcr0Avx512 = kXcr0Opmask | kXcr0ZmmHi256 | kXcr0Hi16Zmm;
inline constexpr uint64_t kXcr0Tested = kXcr0X87 | kXcr0Sse | kXcr0Avx | kXcr0Avx512;

// Image size the tests use (matches rove::kXsaveAreaSize).
inline constexpr size_t kXsaveImageSize = 4096;

// Fixed offsets of the legacy region and the XSAVE header.
inline constexpr size_t kFcwOffset = 0;
inline constexpr size_t kFswOffset = 2;
inline constexpr size_t kFtwOffset = 4;  // abridged tag word (one bit per register)
inline constexpr size_t kMxcsrOffset = 24;
inline constexpr size_t kStOffset = 32;    // ST0..7, 16 bytes apart, 10 significant
inline constexpr size_t kXmmOffset = 160;  // XMM0..15, 16 bytes each
inline constexpr size_t kXstateBvOffset = 512;
inline constexpr size_t kXcompBvOffset = 520;

struct XsaveLayout {
  uint64_t host_xcr0 = 0;
  // XCR0 the tests give the guest: host XCR0 restricted to kXcr0Tested.
  uint64_t guest_xcr0 = 0;
  bool has_avx512 = false;
  // Offsets of the extended components (0 if the host lacks them).
  size_t ymm_hi128 = 0;  // 16 x 16 bytes: bits 255:128 of YMM0..15
  size_t opmask = 0;     // 8 x 8 bytes: k0..k7
  size_t zmm_hi256 = 0;  // 16 x 32 bytes: bits 511:256 of ZMM0..15
  size_t hi16_zmm = 0;   // 16 x 64 bytes: ZMM16..31
};

// Queried once from CPUID and XGETBV.
const XsaveLayout& HostXsaveLayout();

// Number of vector registers / their width in bytes on this host (32 x 64 with AVX-512).
int VectorRegCount();

// An image with every tested component marked in use (XSTATE_BV = guest XCR0), x87 and MXCSR
// at their init values and all vector and opmask registers zero.
void InitXsaveImage(uint8_t* image);

// Full ZMM register i (64 bytes, lower lanes for registers the host lacks), taking XSTATE_BV
// into account (a component not in use reads as its init value, zero).
void ReadZmm(const uint8_t* image, int i, uint8_t out[64]);
void WriteZmm(uint8_t* image, int i, const uint8_t in[64]);
uint64_t ReadOpmask(const uint8_t* image, int i);
void WriteOpmask(uint8_t* image, int i, uint64_t value);
uint32_t ReadMxcsr(const uint8_t* image);
void WriteMxcsr(uint8_t* image, uint32_t value);
// x87 control/status/abridged tag words, normalized for XSTATE_BV.
uint16_t ReadFcw(const uint8_t* image);
uint16_t ReadFsw(const uint8_t* image);
uint8_t ReadFtw(const uint8_t* image);
// ST(i) as stored (80 bits, first 10 bytes of the 16-byte slot), normalized for XSTATE_BV.
void ReadSt(const uint8_t* image, int i, uint8_t out[10]);

}  // namespace rove::testing
