// Internal: the state and helpers shared by the system emulator's source files.
//
// Guest faults raised while emulating are thrown as `GuestFault` and caught at the two entry
// points (EmulateInstruction and event delivery), which deliver them. Nothing a guest does can
// make these escape the emulator.
#pragma once

#include <Zydis/Zydis.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "rove/engine/segmentation.h"
#include "rove/engine/system_emulator.h"

namespace rove {

class PlatformHooks;

// A guest exception raised by an emulated operation.
struct GuestFault {
  GuestException e;
};

// An architectural feature rove does not implement (task switches...): the VM stops with a
// message rather than diverge silently.
struct UnsupportedFeature {
  std::string what;
};

// One event to deliver.
struct Event {
  uint8_t vector = 0;
  InterruptKind kind = InterruptKind::kExternal;
  bool is_exception = false;  // a CPU exception (EXT = 1), as opposed to an interrupt
  bool has_error = false;
  uint32_t error = 0;
  uint64_t cr2 = 0;
  // EXT bit for error codes raised while delivering this event.
  uint32_t ext() const {
    return (kind == InterruptKind::kSoftware || kind == InterruptKind::kSoftwareException) ? 0 : 1;
  }
};

enum class MemAccess : uint8_t { kRead, kWrite, kReadWrite };

class SystemEmulator::Impl {
 public:
  Impl(CpuState& state, GuestMemory& memory, LinearMemory& linear, IoPorts& io,
       TranslationControl& control, const CpuModel& model, GuestClock& clock);

  EmulationResult Emulate();
  EmulationResult Deliver(Event ev);
  std::string DumpState() const;

  // Execute translations of recent code pages (linear page -> host page of RAM) for the paging
  // registers and CPL they were walked with, so an emulated instruction's fetch needs no page
  // walk. Emptied whenever the emulator invalidates TLB entries (as a hardware TLB is) and when
  // another accelerator ran the guest.
  struct FetchCacheEntry {
    uint64_t page = ~0ull;
    PagingRegs regs;
    bool user = false;
    const uint8_t* host = nullptr;
  };
  static constexpr size_t kFetchCacheSize = 16;
  FetchCacheEntry fetch_cache[kFetchCacheSize];
  void ClearFetchCache() {
    for (auto& e : fetch_cache) e.page = ~0ull;
  }
  // Forwards the translator's invalidations and empties the fetch cache with them.
  class InvalidatingControl final : public TranslationControl {
   public:
    InvalidatingControl(TranslationControl& inner, Impl& owner) : inner_(inner), owner_(owner) {}
    void FlushTlb(bool include_global) override {
      owner_.ClearFetchCache();
      inner_.FlushTlb(include_global);
    }
    void FlushTlbPage(uint64_t linear) override {
      owner_.ClearFetchCache();
      inner_.FlushTlbPage(linear);
    }
    void FlushTranslations() override {
      owner_.ClearFetchCache();
      inner_.FlushTranslations();
    }

   private:
    TranslationControl& inner_;
    Impl& owner_;
  };

  CpuState& s;
  GuestMemory& mem;
  LinearMemory& lin;
  IoPorts& io;
  InvalidatingControl invalidating_control;
  TranslationControl& tc;
  const CpuModel& model;
  GuestClock& clock;
  PlatformHooks* platform = nullptr;  // local APIC MSRs and CR8, when a machine is attached
  EmulatorStats stats;
  uint64_t mnemonic_counts[ZYDIS_MNEMONIC_MAX_VALUE + 1] = {};
  uint64_t chunk_bytes = 64 * 1024;

  // NMIs are blocked from NMI delivery until the next IRET.
  bool nmi_blocked = false;
  // MONITOR state.
  bool monitor_armed = false;
  uint64_t monitor_address = 0;

  // ---- decoded-instruction cache (see Fetch) ----
  static constexpr size_t kDecodeCacheSize = 64;
  struct DecodeCacheEntry {
    uint64_t linear = 0;
    uint8_t mode = 0;
    uint8_t length = 0;  // 0 = empty
    uint8_t bytes[15] = {};
    ZydisDecodedInstruction in{};
    ZydisDecodedOperand op[ZYDIS_MAX_OPERAND_COUNT]{};
  };
  std::unique_ptr<DecodeCacheEntry[]> decode_cache{new DecodeCacheEntry[kDecodeCacheSize]};

  // ---- the instruction being emulated ----
  ZydisDecoder decoders[6];
  ZydisDecodedInstruction in{};
  ZydisDecodedOperand op[ZYDIS_MAX_OPERAND_COUNT]{};
  uint8_t bytes[16] = {};
  uint64_t next_rip = 0;  // RIP after the instruction (masked to the code size)
  // Set by an instruction that must raise a single-step trap or not.
  bool suppress_single_step = false;
  bool set_shadow = false;  // STI, MOV SS, POP SS
  bool halted = false;
  // A string instruction is running: on a fault its count/pointer registers keep their
  // progress instead of being restored.
  bool string_partial = false;
  uint64_t insn_rip = 0;  // RIP of the instruction being emulated
  // Decoding / dispatch.
  void Fetch();
  EmulationOutcome Execute();
  EmulationOutcome ExecuteSystem();  // privileged and system instructions

  // ---- modes ----
  bool Mode64() const { return s.code64(); }
  bool Real() const { return !s.protected_mode(); }
  bool V86() const { return s.protected_mode() && s.v86_mode(); }
  bool Prot() const { return s.protected_mode() && !s.v86_mode(); }
  int Cpl() const {
    if (!s.protected_mode()) return 0;
    if (s.v86_mode()) return 3;
    return s.seg[kCs].dpl();
  }
  int Iopl() const { return static_cast<int>((s.rflags >> rflags::kIoplShift) & 3); }
  PagingRegs Paging() const { return PagingRegs{s.cr0, s.cr3, s.cr4, s.efer}; }
  bool Canonical(uint64_t a) const { return IsCanonical(Paging(), a); }
  uint64_t CodeMask() const;  // for RIP arithmetic

  // ---- faults ----
  [[noreturn]] static void Raise(uint8_t vector, uint32_t error);
  [[noreturn]] static void RaiseNoError(uint8_t vector);
  [[noreturn]] static void GP(uint32_t error = 0) { Raise(kGp, error); }
  [[noreturn]] static void UD() { RaiseNoError(kUd); }
  [[noreturn]] static void SSF(uint32_t error = 0) { Raise(kSsFault, error); }
  [[noreturn]] static void NP(uint32_t error) { Raise(kNp, error); }
  [[noreturn]] static void TS(uint32_t error) { Raise(kTs, error); }
  [[noreturn]] static void Unsupported(std::string what);
  // #GP(0) unless CPL 0 (also in real mode... CPL is 0 there).
  void RequireCpl0() const {
    if (Cpl() != 0) GP(0);
  }

  // ---- linear memory (paging) ----
  // `sys`: implicit supervisor access (descriptor tables, IDT, TSS).
  void LinRead(uint64_t linear, void* dst, size_t len, bool sys = false);
  void LinWrite(uint64_t linear, const void* src, size_t len, bool sys = false);
  uint64_t LinReadU(uint64_t linear, unsigned size, bool sys = false);
  void LinWriteU(uint64_t linear, uint64_t value, unsigned size, bool sys = false);
  // Explicit accesses as if at `cpl` (event delivery onto a new stack).
  void LinWriteAs(uint64_t linear, const void* src, size_t len, int cpl);
  void LinReadAs(uint64_t linear, void* dst, size_t len, int cpl);
  // Writes an event/call frame of `count` slots of `width` bytes at `linear` (lowest slot
  // first in `frame`). A page fault is reported for the first slot the hardware would have
  // pushed (the highest one that faults), with the slots above it written.
  void WriteFrame(uint64_t linear, const void* frame, unsigned count, unsigned width, int cpl);
  // Address of the linear address for a data access (truncated to 32 bits outside 64-bit
  // mode).
  uint64_t TruncLinear(uint64_t a) const { return Mode64() ? a : (a & 0xFFFFFFFFull); }
  // Raises the #PF an explicit write to `linear` would take, before anything is written.
  void ProbeWrite(uint64_t linear);

  // ---- segmented memory ----
  // Checks a data access of `size` bytes at `offset` in `sr` and returns the linear address.
  uint64_t SegLinear(SegReg sr, uint64_t offset, uint64_t size, MemAccess acc);
  // Like SegLinear with an explicit segment cache (far transfers checking a not-yet-loaded
  // stack).
  uint64_t CheckedLinear(const SegmentCache& c, bool is_ss, uint64_t offset, uint64_t size,
                         MemAccess acc, bool mode64);
  void CheckAlignment(uint64_t linear, unsigned align);
  void Read(SegReg sr, uint64_t offset, void* dst, size_t len);
  void Write(SegReg sr, uint64_t offset, const void* src, size_t len);
  uint64_t ReadU(SegReg sr, uint64_t offset, unsigned size);
  void WriteU(SegReg sr, uint64_t offset, uint64_t value, unsigned size);

  // ---- stack ----
  uint64_t SpMask() const;  // by SS.B / 64-bit mode
  uint64_t Sp() const { return s.gpr[kRsp] & SpMask(); }
  void SetSp(uint64_t v) { s.gpr[kRsp] = (s.gpr[kRsp] & ~SpMask()) | (v & SpMask()); }
  void Push(uint64_t value, unsigned size);
  uint64_t Pop(unsigned size);
  // Reads the stack at RSP + `delta` without popping.
  uint64_t PeekStack(uint64_t delta, unsigned size);

  // ---- registers / operands ----
  uint64_t GetReg(ZydisRegister r) const;
  void SetReg(ZydisRegister r, uint64_t v);
  uint64_t EffectiveAddress(const ZydisDecodedOperand& o) const;
  SegReg OperandSeg(const ZydisDecodedOperand& o) const;
  // Reads/writes an explicit register or memory operand of its own size.
  uint64_t ReadOp(int i);
  void WriteOp(int i, uint64_t v);
  unsigned OpBytes(int i) const { return op[i].size / 8; }
  bool OpIsMem(int i) const { return op[i].type == ZYDIS_OPERAND_TYPE_MEMORY; }
  static SegReg ZydisSeg(ZydisRegister r);
  static int GprIndex(ZydisRegister r);
  uint64_t AddrMask() const {
    return in.address_width == 64 ? ~0ull : in.address_width == 32 ? 0xFFFFFFFFull : 0xFFFFull;
  }
  // Memory operand's segment by prefix or default DS.
  SegReg DataSeg() const;

  // ---- descriptors ----
  // Reads the 8-byte descriptor for `sel` (16 bytes if `wide`, system descriptors in long
  // mode). Returns false if the selector is beyond its table's limit (or TI=1 without an LDT).
  bool ReadDescriptor(uint16_t sel, uint64_t* low, uint64_t* high = nullptr, bool wide = false);
  // Sets the accessed bit in the descriptor of `sel` in memory.
  void SetAccessed(uint16_t sel, uint64_t* low);
  // MOV/POP Sreg, LDS...: loads a data segment or SS with every protected-mode check.
  void LoadSegment(SegReg sr, uint16_t sel);
  // CS load for far JMP/CALL/RET (caller has done the checks): sets cache with RPL = cpl.
  void SetCs(const SegmentCache& c, uint16_t sel, int cpl);
  // Clears DS/ES/FS/GS that the new (outer) CPL may not use (RET/IRET to outer privilege).
  void InvalidateSegmentsForCpl(int cpl);
  // Reads a stack pointer for `dpl` from the current TSS (legacy 16/32-bit TSS).
  void TssStack(int dpl, uint32_t ext, uint16_t* ss, uint64_t* sp);
  uint64_t Tss64Read(uint32_t offset, uint32_t ext);

  // ---- events ----
  void DeliverOnce(const Event& ev);
  void DeliverReal(const Event& ev);
  void DeliverProtected(const Event& ev);
  void DeliverLong(const Event& ev);
  EmulationResult Shutdown(const std::string& why);

  // ---- instruction groups ----
  EmulationOutcome DoString();
  EmulationOutcome DoInOut();
  void CheckIoPermission(uint16_t port, unsigned width);
  void DoPushf();
  void DoPopf();
  void WriteFlags(uint64_t value, unsigned size, bool from_iret, int cpl_for_check);
  void DoIret();
  void DoIretProtected(unsigned size);
  void DoInt(uint8_t vector, InterruptKind kind);
  void DoFarJmpCall(bool is_call);
  void DoFarRet();
  void DoCallGate(const GateDescriptor& g, uint16_t gate_sel, bool is_call, uint64_t ret_cs,
                  uint64_t ret_ip);
  void DoSyscall();
  void DoSysret();
  void DoSysenter();
  void DoSysexit();
  void DoMovCr();
  void WriteCr0(uint64_t v);
  void WriteCr3(uint64_t v);
  void WriteCr4(uint64_t v);
  void WriteCr8(uint64_t v);
  void DoMovDr();
  void DoCpuid();
  void DoRdmsr();
  void DoWrmsr();
  bool ReadMsr(uint32_t index, uint64_t* value);
  bool WriteMsr(uint32_t index, uint64_t value);
  void WriteEfer(uint64_t v);
  void DoDescriptorTable();  // LGDT/LIDT/SGDT/SIDT/LLDT/SLDT/LTR/STR/SMSW/LMSW
  void DoLarLslVerrVerw();
  void DoXsaveFamily();
  void DoInvpcid();
  void DoBcd();
  void DoEnterLeave();
  void DoPushaPopa();
  void DoCliSti(bool set);
  void DoMovSreg();
  void DoPushPopSreg(bool push);
  void DoLoadFarPointer();
  void DoNearTransfer();
  void DoGatherScatter();  // VSIB: AVX2 gathers, AVX-512 gathers and scatters
  void DoMaskMovdqu();     // MASKMOVDQU / VMASKMOVDQU: byte-masked store to [RDI]
  bool UmipBlocks() const { return (s.cr4 & cr4::kUmip) && Cpl() > 0 && !Real(); }
  // FS/GS base instructions; XGETBV/XSETBV.
  void DoFsGsBase();
  void DoXsetbv();
  void DoXgetbv();
  void SingleStepTrapIfNeeded(uint64_t rflags_before);
};

// Flag helpers.
bool Parity(uint8_t v);

}  // namespace rove
