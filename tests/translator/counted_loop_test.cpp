// Counted loops: the translator's fast version (memory ranges checked once per page, host base
// registers) must give exactly the state of the ordinary, per-access checked translation, keep
// faults precise, see self-modified code and stop on an exit request.
#include <asmjit/x86.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <vector>

#include "long_mode_guest.h"

namespace rove {
namespace {

using namespace asmjit;

// 4 KiB pages at kWindow.., backed by guest physical pages in reverse order, so consecutive
// virtual pages are never adjacent in host memory. Entries start with A and D clear.
constexpr uint64_t kWindow = 0x40000000;
constexpr uint64_t kWindowPages = 6;
constexpr uint64_t kWindowPhys = 0x1000000;  // last page first

uint64_t WindowPhys(uint64_t page) {
  return kWindowPhys + (kWindowPages - 1 - page) * 4096;
}

uint64_t WindowPte(const LongModeGuest& g, uint64_t page) {
  return g.mem->ReadU64(0x5000 + 8 * page);
}

void MapWindow(LongModeGuest& g, uint64_t mapped_pages) {
  const uint64_t pdpt = 0x2000, pd = 0x4000, pt = 0x5000;
  g.mem->WriteU64(pdpt + 8, pd | 0x7);
  g.mem->WriteU64(pd, pt | 0x7);
  for (uint64_t i = 0; i < mapped_pages; ++i) g.mem->WriteU64(pt + 8 * i, WindowPhys(i) | 0x3);
}

void FillWindow(LongModeGuest& g) {
  uint32_t x = 0x1234567;
  for (uint64_t p = 0; p < kWindowPages; ++p)
    for (uint64_t i = 0; i < 4096; ++i) {
      x = x * 1103515245u + 12345u;
      const uint8_t b = static_cast<uint8_t>(x >> 24);
      g.mem->Write(WindowPhys(p) + i, &b, 1);
    }
}

// `mark`, when given, receives the guest address of the label the emitter binds to *mark_label.
std::vector<uint8_t> Assemble(const std::function<void(x86::Assembler&)>& emit,
                              Label* mark_label = nullptr, uint64_t* mark = nullptr) {
  CodeHolder code;
  code.init(Environment(Arch::kX64), LongModeGuest::kCode);
  x86::Assembler a(&code);
  if (mark_label) *mark_label = a.newLabel();
  emit(a);
  code.flatten();
  if (mark) *mark = LongModeGuest::kCode + code.labelOffset(*mark_label);
  const CodeBuffer& buf = code.textSection()->buffer();
  return std::vector<uint8_t>(buf.data(), buf.data() + buf.size());
}

// The benchmark's shape and more: a byte stream over five scattered pages feeding a histogram
// (bounded index), a store stream with scale 8 and a pointer walking with JNE.
std::vector<uint8_t> StreamProgram() {
  return Assemble([](x86::Assembler& a) {
    using namespace x86;
    a.mov(rdi, kWindow);
    a.mov(rdx, LongModeGuest::kData);
    a.xor_(ecx, ecx);
    a.mov(esi, 5 * 4096 - 3);
    a.mov(r9, 0x9E3779B97F4A7C15ull);
    Label l1 = a.newLabel(), l2 = a.newLabel(), l3 = a.newLabel();
    a.bind(l1);
    a.movzx(eax, byte_ptr(rdi, rcx));
    a.inc(qword_ptr(rdx, rax, 3));
    a.xor_(r9, rax);
    a.imul(r9, r9, 0x1F3);
    a.inc(rcx);
    a.cmp(rcx, rsi);
    a.jb(l1);
    // Store stream over the data area: [rdx + 0x1000 + rcx*8], 1500 qwords (3 pages).
    a.xor_(ecx, ecx);
    a.mov(rax, r9);
    a.bind(l2);
    a.mov(qword_ptr(rdx, rcx, 3, 0x1000), rax);
    a.rol(rax, 7);
    a.add(rax, rcx);
    a.inc(rcx);
    a.cmp(rcx, 1500);
    a.jb(l2);
    // Pointer walk with JNE over the window, summing qwords.
    a.lea(rbx, ptr(rdi, 5 * 4096));
    a.xor_(r10d, r10d);
    a.bind(l3);
    a.add(r10, qword_ptr(rdi));
    a.add(rdi, 8);
    a.cmp(rdi, rbx);
    a.jne(l3);
    a.hlt();
  });
}

void RunToHlt(LongModeGuest& g) {
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kEmulate);
}

// The same program on a guest with counted-loop versioning and on one without, over the
// scattered window (filled); `prepare` adjusts each guest before it runs.
struct FastAndChecked {
  FastAndChecked() : checked(CheckedOnly()) {}
  static BtOptions CheckedOnly() {
    BtOptions options;
    options.counted_loops = false;
    return options;
  }
  void Run(const std::vector<uint8_t>& program,
           const std::function<void(LongModeGuest&)>& prepare = {}) {
    for (LongModeGuest* g : {&fast, &checked}) {
      MapWindow(*g, kWindowPages);
      FillWindow(*g);
      if (prepare) prepare(*g);
      g->Load(program);
      RunToHlt(*g);
    }
  }
  void ExpectSameRegisters() {
    for (int r = 0; r < 16; ++r) EXPECT_EQ(fast.state.gpr[r], checked.state.gpr[r]) << "gpr " << r;
    EXPECT_EQ(fast.state.rflags, checked.state.rflags);
    EXPECT_EQ(fast.state.rip, checked.state.rip);
  }
  LongModeGuest fast;
  LongModeGuest checked;
};

TEST(CountedLoops, FastVersionAgreesWithCheckedTranslation) {
  FastAndChecked pair;
  pair.Run(StreamProgram());
  pair.ExpectSameRegisters();
  LongModeGuest& fast = pair.fast;
  LongModeGuest& checked = pair.checked;
  for (uint64_t off = 0; off < 0x4000; off += 8)
    ASSERT_EQ(fast.mem->ReadU64(LongModeGuest::kData + off),
              checked.mem->ReadU64(LongModeGuest::kData + off))
        << "data +" << off;
  // Hardware sets A on every page read and D on none of them (reads only).
  for (uint64_t p = 0; p < 5; ++p) {
    EXPECT_EQ(WindowPte(fast, p) & 0x60, 0x20u) << "page " << p;
    EXPECT_EQ(WindowPte(fast, p), WindowPte(checked, p));
  }
  // The fast version ran, at least once per page of each stream; the checked one never.
  EXPECT_EQ(fast.cpu->stats().counted_loops, 3u);
  EXPECT_GE(fast.cpu->stats().loop_fast_entries, 5u + 3u + 5u);
  EXPECT_EQ(checked.cpu->stats().counted_loops, 0u);
  EXPECT_EQ(checked.cpu->stats().loop_fast_entries, 0u);
}

// Count latches (any Jcc back to the start): DEC/JNZ over a stream, and a data-dependent
// TEST/JNZ scan, against the checked translation.
TEST(CountedLoops, CountLatchAgreesWithCheckedTranslation) {
  FastAndChecked pair;
  pair.Run(Assemble([](x86::Assembler& a) {
             using namespace x86;
             a.mov(rsi, kWindow + 5);
             a.mov(ecx, 3 * 4096);
             a.xor_(ebx, ebx);
             a.mov(r8, LongModeGuest::kData);
             Label l1 = a.newLabel(), l2 = a.newLabel();
             a.bind(l1);
             a.movzx(eax, byte_ptr(rsi));
             a.add(rbx, rax);
             a.add(qword_ptr(r8), rax);
             a.inc(rsi);
             a.dec(rcx);
             a.jnz(l1);
             a.mov(rdi, kWindow);
             a.bind(l2);  // find the first zero byte (there may be earlier ones in the data)
             a.mov(dl, byte_ptr(rdi));
             a.add(byte_ptr(r8, 8), dl);
             a.inc(rdi);
             a.test(dl, dl);
             a.jnz(l2);
             a.hlt();
           }),
           [](LongModeGuest& g) { g.mem->Write(WindowPhys(4) + 0x123, "", 1); });  // a zero byte
  pair.ExpectSameRegisters();
  LongModeGuest& fast = pair.fast;
  LongModeGuest& checked = pair.checked;
  EXPECT_EQ(fast.mem->ReadU64(LongModeGuest::kData), checked.mem->ReadU64(LongModeGuest::kData));
  EXPECT_EQ(fast.mem->ReadU64(LongModeGuest::kData + 8),
            checked.mem->ReadU64(LongModeGuest::kData + 8));
  EXPECT_EQ(fast.cpu->stats().counted_loops, 2u);
  EXPECT_GE(fast.cpu->stats().loop_fast_entries, 3u);
  EXPECT_EQ(checked.cpu->stats().loop_fast_entries, 0u);
}

TEST(CountedLoops, WritesSetDirtyBitsBeforeFastStores) {
  LongModeGuest g;
  MapWindow(g, kWindowPages);
  // Store stream over three window pages whose PTEs have D clear.
  g.Load(Assemble([](x86::Assembler& a) {
    using namespace x86;
    a.mov(rdi, kWindow);
    a.xor_(ecx, ecx);
    Label l = a.newLabel();
    a.bind(l);
    a.mov(dword_ptr(rdi, rcx, 2), ecx);
    a.inc(rcx);
    a.cmp(rcx, 3 * 1024);
    a.jb(l);
    a.hlt();
  }));
  RunToHlt(g);
  for (uint64_t p = 0; p < 3; ++p) {
    EXPECT_EQ(WindowPte(g, p) & 0x60, 0x60u) << "page " << p;
    for (uint64_t i = 0; i < 1024; i += 255)
      EXPECT_EQ(g.mem->ReadU32(WindowPhys(p) + 4 * i), p * 1024 + i);
  }
  EXPECT_EQ(WindowPte(g, 3) & 0x60, 0u);
  EXPECT_GE(g.cpu->stats().loop_fast_entries, 3u);
}

TEST(CountedLoops, PageFaultInStreamIsPreciseAtTheIteration) {
  LongModeGuest g;
  MapWindow(g, 3);  // page 3 not present
  FillWindow(g);
  Label l;
  uint64_t movzx_rip = 0;
  g.Load(Assemble(
      [&l](x86::Assembler& a) {
        using namespace x86;
        a.mov(rdi, kWindow);
        a.mov(ecx, 100);
        a.mov(esi, 5 * 4096);
        a.xor_(r8d, r8d);
        a.bind(l);
        a.movzx(eax, byte_ptr(rdi, rcx));
        a.add(r8, rax);
        a.inc(rcx);
        a.cmp(rcx, rsi);
        a.jb(l);
        a.hlt();
      },
      &l, &movzx_rip));
  Exit e = g.RunToEmulate();
  ASSERT_EQ(e.reason, ExitReason::kException);
  EXPECT_EQ(e.exception.vector, kPf);
  EXPECT_EQ(e.exception.cr2, kWindow + 3 * 4096);
  EXPECT_EQ(e.exception.error_code, 0u);  // not present, read, supervisor
  EXPECT_EQ(g.state.gpr[kRcx], 3 * 4096u);
  uint64_t sum = 0;
  for (uint64_t i = 100; i < 3 * 4096; ++i) {
    uint8_t b = 0;
    g.mem->Read(WindowPhys(i / 4096) + i % 4096, &b, 1);
    sum += b;
  }
  EXPECT_EQ(g.state.gpr[kR8], sum);
  EXPECT_EQ(g.state.rip, movzx_rip);
  EXPECT_GE(g.cpu->stats().loop_fast_entries, 3u);
}

TEST(CountedLoops, StoresIntoTranslatedCodeAreSeen) {
  LongModeGuest g;
  // F (at kCode + 0x800): mov eax, 1; ret. The program calls F, then a counted loop copies
  // `mov eax, 2` over it from the data area, then calls F again.
  const uint64_t f = LongModeGuest::kCode + 0x800;
  const uint8_t f_old[] = {0xB8, 1, 0, 0, 0, 0xC3};
  const uint8_t f_new[] = {0xB8, 2, 0, 0, 0, 0xC3};
  g.mem->Write(f, f_old, sizeof f_old);
  g.mem->Write(LongModeGuest::kData, f_new, sizeof f_new);
  g.Load(Assemble([f](x86::Assembler& a) {
    using namespace x86;
    a.mov(r12, f);
    a.call(r12);
    a.mov(ebx, eax);
    a.mov(rsi, LongModeGuest::kData);
    a.xor_(ecx, ecx);
    Label l = a.newLabel();
    a.bind(l);
    a.movzx(edx, byte_ptr(rsi, rcx));
    a.mov(byte_ptr(r12, rcx), dl);
    a.inc(rcx);
    a.cmp(rcx, 6);
    a.jb(l);
    a.call(r12);
    a.hlt();
  }));
  RunToHlt(g);
  EXPECT_EQ(g.state.gpr[kRbx], 1u);
  EXPECT_EQ(g.state.gpr[kRax], 2u);
}

// A loop that would run for years (its accesses hoisted) stops on RequestExit between two
// iterations, with the compare latch (a bound it never reaches) and with the count latch (TEST
// RSP, RSP is never zero here).
void ExpectRequestExitStopsLoop(bool compare_latch) {
  LongModeGuest g;
  g.Load(Assemble([compare_latch](x86::Assembler& a) {
    using namespace x86;
    a.mov(rdi, LongModeGuest::kData);
    a.xor_(ecx, ecx);
    a.mov(rsi, 1ull << 62);
    Label l = a.newLabel();
    a.bind(l);
    a.add(qword_ptr(rdi), rcx);
    a.mov(rax, qword_ptr(rdi, 8));
    a.inc(rcx);
    if (compare_latch) {
      a.cmp(rcx, rsi);
      a.jb(l);
    } else {
      a.test(rsp, rsp);
      a.jnz(l);
    }
    a.hlt();
  }));
  EXPECT_EQ(RunThenRequestExit(g, std::chrono::milliseconds(100)).reason, ExitReason::kRequest);
  const uint64_t n = g.state.gpr[kRcx];
  EXPECT_GT(n, 1000u);
  EXPECT_EQ(g.mem->ReadU64(LongModeGuest::kData), n * (n - 1) / 2);
  EXPECT_GE(g.cpu->stats().loop_fast_entries, 1u);
}

TEST(CountedLoops, RequestExitStopsTheFastVersion) {
  ExpectRequestExitStopsLoop(true);
}

TEST(CountedLoops, RequestExitStopsACountLatchLoop) {
  ExpectRequestExitStopsLoop(false);
}

// The update `lea rcx, [ecx + 8]` (address-size override) wraps the induction variable at
// 2^32: after 0xFFFFFFF8 comes 0, not 0x100000000. The fast version must not keep using the
// base it checked for the page before the wrap (that would address host memory 4 GiB below
// the guest page); the access after the wrap is to an unmapped page and must fault there.
TEST(CountedLoops, InductionVariableWrappingAt32BitsIsNotTrusted) {
  BtOptions checked_only;
  checked_only.counted_loops = false;
  LongModeGuest fast, checked(checked_only);
  Label l;
  uint64_t add_rip = 0;
  const auto program = Assemble(
      [&l](x86::Assembler& a) {
        using namespace x86;
        // rdi + 0xFFFFFF00 = kData (mod 2^64); rdi + 0 is in the unmapped top of the space.
        a.mov(rdi, LongModeGuest::kData - 0xFFFFFF00ull);
        a.mov(ecx, 0xFFFFFF00u);
        a.mov(esi, 0x100);
        a.xor_(eax, eax);
        a.bind(l);
        a.add(rax, qword_ptr(rdi, rcx));
        a.lea(rcx, ptr(ecx, 8));
        a.cmp(rcx, rsi);
        a.jne(l);
        a.hlt();
      },
      &l, &add_rip);
  Exit exits[2];
  int i = 0;
  for (LongModeGuest* g : {&fast, &checked}) {
    g->Load(program);
    exits[i++] = g->RunToEmulate();
  }
  ASSERT_EQ(exits[1].reason, ExitReason::kException);
  EXPECT_EQ(exits[1].exception.vector, kPf);
  EXPECT_EQ(exits[1].exception.cr2, LongModeGuest::kData - 0xFFFFFF00ull);
  EXPECT_EQ(checked.state.gpr[kRcx], 0u);
  ASSERT_EQ(exits[0].reason, ExitReason::kException);
  EXPECT_EQ(exits[0].exception.vector, kPf);
  EXPECT_EQ(exits[0].exception.cr2, exits[1].exception.cr2);
  for (int r = 0; r < 16; ++r) EXPECT_EQ(fast.state.gpr[r], checked.state.gpr[r]) << "gpr " << r;
  EXPECT_EQ(fast.state.rip, add_rip);
}

}  // namespace
}  // namespace rove
