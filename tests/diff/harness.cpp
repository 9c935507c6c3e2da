// Default inputs, comparison of outcomes, and the run-both-sides entry point.
#include "harness.h"

#include <fmt/format.h>

#include <cstring>

namespace rove::difftest {
namespace {

uint64_t SplitMix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr const char* kGprNames[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                       "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};

const char* VectorName(uint8_t v) {
  static const char* const kNames[32] = {"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
                                         "#DF", "#9",  "#TS", "#NP", "#SS", "#GP", "#PF", "#15",
                                         "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "#22", "#23",
                                         "#24", "#25", "#26", "#27", "#HV", "#VC", "#SX", "#31"};
  return v < 32 ? kNames[v] : "int";
}

std::string Hex(const uint8_t* p, size_t n) {
  std::string s;
  for (size_t i = n; i-- > 0;) s += fmt::format("{:02x}", p[i]);
  return s;
}

std::string FlagNames(uint64_t f) {
  std::string s;
  const struct {
    uint64_t bit;
    const char* name;
  } kFlags[] = {{rflags::kCf, "CF"}, {rflags::kPf, "PF"}, {rflags::kAf, "AF"}, {rflags::kZf, "ZF"},
                {rflags::kSf, "SF"}, {rflags::kDf, "DF"}, {rflags::kOf, "OF"}};
  for (const auto& fl : kFlags) {
    if (f & fl.bit) s += std::string(s.empty() ? "" : " ") + fl.name;
  }
  return s.empty() ? "-" : s;
}

}  // namespace

DiffInput MakeDefaultInput(std::string name, std::vector<uint8_t> code, uint64_t seed) {
  DiffInput in;
  in.name = std::move(name);
  in.code = std::move(code);
  uint64_t s = seed * 0x2545F4914F6CDD1Dull + 1;
  for (int i = 0; i < 16; ++i) in.init.gpr[i] = SplitMix(s);
  in.init.gpr[kRsp] = kStackTop;
  in.init.rflags = rflags::kFixed1;
  testing::InitXsaveImage(in.init.xsave);
  for (int i = 0; i < testing::VectorRegCount(); ++i) {
    uint8_t z[64];
    for (int j = 0; j < 64; j += 8) {
      const uint64_t v = SplitMix(s);
      std::memcpy(z + j, &v, 8);
    }
    testing::WriteZmm(in.init.xsave, i, z);
  }
  if (testing::HostXsaveLayout().has_avx512) {
    testing::WriteOpmask(in.init.xsave, 0, 0);
    for (int i = 1; i < 8; ++i) testing::WriteOpmask(in.init.xsave, i, SplitMix(s));
  }
  in.data.resize(kDataSize);
  for (size_t i = 0; i < kDataSize; i += 8) {
    const uint64_t v = SplitMix(s);
    std::memcpy(in.data.data() + i, &v, 8);
  }
  return in;
}

std::string DescribeOutcome(const SequenceInfo& info, const Outcome& o) {
  if (!o.failure.empty()) return "harness failure: " + o.failure;
  if (o.unavailable) return "unavailable";
  if (!o.exception) return "completed";
  const int k = o.state.rip >= kCodeVa ? InstructionIndexAt(info, o.state.rip - kCodeVa) : -1;
  std::string s = fmt::format("{} (vector {}) at instruction {} (rip {:#x})", VectorName(o.vector),
                              o.vector, k, o.state.rip);
  if (testing::VectorHasErrorCode(o.vector)) s += fmt::format(", error code {:#x}", o.error_code);
  if (o.vector == kVecPf) s += fmt::format(", cr2 {:#x}", o.cr2);
  return s;
}

std::string CompareOutcomes(const DiffInput& input, const SequenceInfo& info, const Outcome& native,
                            const Outcome& rove) {
  std::string d;
  if (!native.failure.empty()) d += "native harness failure: " + native.failure + "\n";
  if (!rove.failure.empty()) d += "rove harness failure: " + rove.failure + "\n";
  if (!d.empty()) return d;

  if (native.exception != rove.exception ||
      (native.exception && (native.vector != rove.vector || native.state.rip != rove.state.rip))) {
    d += fmt::format("outcome: native {} / rove {}\n", DescribeOutcome(info, native),
                     DescribeOutcome(info, rove));
    // Still compare the state: it shows how far rove got.
  } else if (native.exception && testing::VectorHasErrorCode(native.vector)) {
    // Natively the code runs at CPL3, under rove at CPL0: the #PF U/S bit differs.
    const uint64_t mask = native.vector == kVecPf ? ~uint64_t{4} : ~uint64_t{0};
    if ((native.error_code & mask) != (rove.error_code & mask)) {
      d += fmt::format("error code: native {:#x} rove {:#x}\n", native.error_code, rove.error_code);
    }
    if (native.vector == kVecPf && native.cr2 != rove.cr2) {
      d += fmt::format("cr2: native {:#x} rove {:#x}\n", native.cr2, rove.cr2);
    }
  }

  for (int i = 0; i < 16; ++i) {
    const uint64_t mask = input.compat32 && i < 8 ? 0xFFFFFFFFull : ~0ull;
    if ((native.state.gpr[i] & mask) != (rove.state.gpr[i] & mask)) {
      d += fmt::format("{:>5}: native {:#018x} rove {:#018x}\n", kGprNames[i], native.state.gpr[i],
                       rove.state.gpr[i]);
    }
  }

  if (native.state.gs_base != rove.state.gs_base) {
    d +=
        fmt::format("gs base: native {:#x} rove {:#x}\n", native.state.gs_base, rove.state.gs_base);
  }

  uint64_t undefined = info.undefined_flags;
  if (native.exception && native.state.rip >= kCodeVa) {
    const int k = InstructionIndexAt(info, native.state.rip - kCodeVa);
    if (k >= 0) undefined = info.undefined_before[static_cast<size_t>(k)];
  }
  const uint64_t flag_mask = rflags::kHostLive & ~undefined & ~input.ignore_flags;
  if ((native.state.rflags & flag_mask) != (rove.state.rflags & flag_mask)) {
    d += fmt::format("rflags: native {:#x} rove {:#x} (compared: {}; differing: {})\n",
                     native.state.rflags, rove.state.rflags, FlagNames(flag_mask),
                     FlagNames((native.state.rflags ^ rove.state.rflags) & flag_mask));
  }

  const uint8_t* nx = native.state.xsave;
  const uint8_t* rx = rove.state.xsave;
  for (int i = 0; i < testing::VectorRegCount(); ++i) {
    uint8_t a[64], b[64];
    testing::ReadZmm(nx, i, a);
    testing::ReadZmm(rx, i, b);
    if (std::memcmp(a, b, 64) != 0) {
      d += fmt::format("zmm{}: native {}\n{:>{}}rove   {}\n", i, Hex(a, 64), "", i < 10 ? 6 : 7,
                       Hex(b, 64));
    }
  }
  if (testing::HostXsaveLayout().has_avx512) {
    for (int i = 0; i < 8; ++i) {
      const uint64_t a = testing::ReadOpmask(nx, i), b = testing::ReadOpmask(rx, i);
      if (a != b) d += fmt::format("k{}: native {:#x} rove {:#x}\n", i, a, b);
    }
  }
  if (testing::ReadMxcsr(nx) != testing::ReadMxcsr(rx)) {
    d += fmt::format("mxcsr: native {:#x} rove {:#x}\n", testing::ReadMxcsr(nx),
                     testing::ReadMxcsr(rx));
  }
  if (testing::ReadFcw(nx) != testing::ReadFcw(rx) ||
      testing::ReadFsw(nx) != testing::ReadFsw(rx) ||
      testing::ReadFtw(nx) != testing::ReadFtw(rx)) {
    d += fmt::format("x87 fcw/fsw/ftw: native {:#x}/{:#x}/{:#x} rove {:#x}/{:#x}/{:#x}\n",
                     testing::ReadFcw(nx), testing::ReadFsw(nx), testing::ReadFtw(nx),
                     testing::ReadFcw(rx), testing::ReadFsw(rx), testing::ReadFtw(rx));
  }
  const uint8_t ftw = testing::ReadFtw(nx);
  for (int i = 0; i < 8; ++i) {
    // Physical register i; compare only the ones in use.
    if (!(ftw & (1u << i))) continue;
    uint8_t a[10], b[10];
    testing::ReadSt(nx, i, a);
    testing::ReadSt(rx, i, b);
    if (std::memcmp(a, b, 10) != 0) {
      d += fmt::format("st{}: native {} rove {}\n", i, Hex(a, 10), Hex(b, 10));
    }
  }

  if (native.data.size() == rove.data.size()) {
    int reported = 0;
    for (size_t i = 0; i < native.data.size(); i += 8) {
      if (std::memcmp(native.data.data() + i, rove.data.data() + i, 8) == 0) continue;
      if (++reported > 16) {
        d += "  (more memory differences)\n";
        break;
      }
      d += fmt::format("mem[{:#x}]: native {} rove {}\n", kDataVa + i,
                       Hex(native.data.data() + i, 8), Hex(rove.data.data() + i, 8));
    }
  } else {
    d += "data region sizes differ\n";
  }
  return d;
}

std::string RunDifferential(const DiffInput& input, const RoveRunOptions& options,
                            Outcome* native_out, Outcome* rove_out) {
  const SequenceInfo info = AnalyzeSequence(input.code, input.compat32);
  Outcome native = RunNative(input);
  Outcome rove = RunRove(input, options);
  std::string report;
  if (!rove.unavailable) report = CompareOutcomes(input, info, native, rove);
  if (!report.empty()) {
    report = fmt::format("case {}: native {}; rove {}\n{}code:\n{}", input.name,
                         DescribeOutcome(info, native), DescribeOutcome(info, rove), report,
                         Disassemble(input.code, input.compat32));
    if (!rove.stop_message.empty()) report += "engine: " + rove.stop_message + "\n";
  }
  if (native_out) *native_out = std::move(native);
  if (rove_out) *rove_out = std::move(rove);
  return report;
}

}  // namespace rove::difftest
