// The snapshot container, the vCPU state encoding and file I/O (docs/SNAPSHOT.md).
#include "rove/engine/snapshot.h"

#include <fmt/core.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "rove/devices/device_state.h"

namespace rove {

namespace {

void PutLe(std::vector<uint8_t>& out, uint64_t v, unsigned n) {
  for (unsigned i = 0; i < n; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

uint64_t GetLe(std::span<const uint8_t> in, size_t pos, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; ++i) v |= uint64_t{in[pos + i]} << (8 * i);
  return v;
}

void WriteSegment(StateWriter& out, const SegmentCache& s) {
  out.U64(s.base);
  out.U32(s.limit);
  out.U32(s.attr);
  out.U16(s.selector);
}

void ReadSegment(StateReader& in, SegmentCache& s) {
  s.base = in.U64("segment base");
  s.limit = in.U32("segment limit");
  s.attr = in.U32("segment attributes");
  if (s.attr & ~0x1F0FFu) in.Fail("invalid segment attributes");
  s.selector = in.U16("segment selector");
}

// MsrState's fields in a fixed order.
template <typename F>
void ForEachMsr(MsrState& m, F&& f) {
  f(m.star);
  f(m.lstar);
  f(m.cstar);
  f(m.sfmask);
  f(m.kernel_gs_base);
  f(m.sysenter_cs);
  f(m.sysenter_esp);
  f(m.sysenter_eip);
  f(m.tsc_aux);
  f(m.apic_base);
  f(m.pat);
  f(m.misc_enable);
  f(m.spec_ctrl);
  f(m.mtrr_def_type);
  for (auto& v : m.mtrr_fixed) f(v);
  for (auto& v : m.mtrr_var) f(v);
  f(m.tsc_deadline);
  f(m.feature_control);
  f(m.xss);
}

}  // namespace

uint32_t Crc32(std::span<const uint8_t> bytes) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t crc = 0xFFFFFFFFu;
  for (uint8_t b : bytes) crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

std::vector<uint8_t> EncodeSnapshot(const std::vector<SnapshotSection>& sections) {
  std::vector<uint8_t> out(kSnapshotMagic, kSnapshotMagic + 8);
  PutLe(out, kSnapshotFormatVersion, 4);
  PutLe(out, sections.size(), 4);
  for (const SnapshotSection& s : sections) {
    PutLe(out, s.tag, 4);
    PutLe(out, s.version, 4);
    PutLe(out, s.payload.size(), 8);
    PutLe(out, Crc32(s.payload), 4);
    out.insert(out.end(), s.payload.begin(), s.payload.end());
  }
  return out;
}

std::vector<SnapshotSection> DecodeSnapshot(std::span<const uint8_t> bytes) {
  if (bytes.size() < 16 || std::memcmp(bytes.data(), kSnapshotMagic, 8) != 0)
    throw SnapshotError("not a rove snapshot (no ROVESNAP magic)");
  const auto version = static_cast<uint32_t>(GetLe(bytes, 8, 4));
  if (version != kSnapshotFormatVersion)
    throw SnapshotError(
        fmt::format("snapshot format version {} is not supported (this rove "
                    "reads version {})",
                    version, kSnapshotFormatVersion));
  const auto count = static_cast<uint32_t>(GetLe(bytes, 12, 4));
  std::vector<SnapshotSection> sections;
  size_t pos = 16;
  for (uint32_t i = 0; i < count; ++i) {
    if (bytes.size() - pos < 20)
      throw SnapshotError(
          fmt::format("snapshot truncated in the header of section {} of {}", i + 1, count));
    SnapshotSection s;
    s.tag = static_cast<uint32_t>(GetLe(bytes, pos, 4));
    s.version = static_cast<uint32_t>(GetLe(bytes, pos + 4, 4));
    const uint64_t length = GetLe(bytes, pos + 8, 8);
    const auto crc = static_cast<uint32_t>(GetLe(bytes, pos + 16, 4));
    pos += 20;
    if (length > bytes.size() - pos)
      throw SnapshotError(
          fmt::format("snapshot truncated in section '{}' ({} bytes announced, "
                      "{} present)",
                      StateTagName(s.tag), length, bytes.size() - pos));
    s.payload.assign(bytes.begin() + static_cast<ptrdiff_t>(pos),
                     bytes.begin() + static_cast<ptrdiff_t>(pos + length));
    pos += length;
    if (Crc32(s.payload) != crc)
      throw SnapshotError(
          fmt::format("snapshot section '{}' is corrupt (checksum mismatch)", StateTagName(s.tag)));
    sections.push_back(std::move(s));
  }
  if (pos != bytes.size())
    throw SnapshotError(
        fmt::format("{} unexpected bytes after the last snapshot section", bytes.size() - pos));
  return sections;
}

void WriteCpuState(StateWriter& out, const CpuState& st, uint64_t guest_tsc) {
  for (uint64_t g : st.gpr) out.U64(g);
  out.U64(st.rip);
  out.U64(st.rflags);
  for (const SegmentCache& s : st.seg) WriteSegment(out, s);
  WriteSegment(out, st.ldtr);
  WriteSegment(out, st.tr);
  out.U64(st.gdtr.base);
  out.U32(st.gdtr.limit);
  out.U64(st.idtr.base);
  out.U32(st.idtr.limit);
  out.U64(st.cr0);
  out.U64(st.cr2);
  out.U64(st.cr3);
  out.U64(st.cr4);
  out.U64(st.cr8);
  for (uint64_t d : st.dr) out.U64(d);
  out.U64(st.efer);
  out.U64(st.xcr0);
  MsrState msrs = st.msr;
  ForEachMsr(msrs, [&](uint64_t& v) { out.U64(v); });
  out.U64(guest_tsc);
  out.Bool(st.interrupt_shadow);
  out.Bool(st.halted);
  out.Bytes(st.xsave, kXsaveAreaSize);
}

void ReadCpuState(StateReader& in, CpuState& st, uint64_t& guest_tsc) {
  for (uint64_t& g : st.gpr) g = in.U64("GPR");
  st.rip = in.U64("RIP");
  st.rflags = in.U64("RFLAGS");
  if (st.rflags & ~rflags::kDefined) in.Fail("invalid RFLAGS");
  for (SegmentCache& s : st.seg) ReadSegment(in, s);
  ReadSegment(in, st.ldtr);
  ReadSegment(in, st.tr);
  st.gdtr.base = in.U64("GDTR base");
  st.gdtr.limit = in.U32Max(0xFFFF, "GDTR limit");
  st.idtr.base = in.U64("IDTR base");
  st.idtr.limit = in.U32Max(0xFFFF, "IDTR limit");
  st.cr0 = in.U64("CR0");
  st.cr2 = in.U64("CR2");
  st.cr3 = in.U64("CR3");
  st.cr4 = in.U64("CR4");
  st.cr8 = in.U64Max(15, "CR8");
  for (uint64_t& d : st.dr) d = in.U64("DR");
  st.efer = in.U64("EFER");
  st.xcr0 = in.U64("XCR0");
  ForEachMsr(st.msr, [&](uint64_t& v) { v = in.U64("MSR"); });
  guest_tsc = in.U64("guest TSC");
  st.interrupt_shadow = in.Bool("interrupt shadow");
  st.halted = in.Bool("halted");
  in.Bytes(st.xsave, kXsaveAreaSize, "XSAVE area");
}

void WriteSnapshotFile(const std::string& path, std::span<const uint8_t> bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw SnapshotError(fmt::format("cannot create {}: {}", path, std::strerror(errno)));
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw SnapshotError(fmt::format("cannot write {}: {}", path, std::strerror(errno)));
}

std::vector<uint8_t> ReadSnapshotFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw SnapshotError(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), {});
}

}  // namespace rove
