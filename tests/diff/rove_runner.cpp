// rove half of the differential harness: the same sequence in the test machine of
// tests/support/test_machine.h, run by rove::Vcpu.
#include <fmt/format.h>

#include <cstring>

#include "../support/run_support.h"
#include "../support/worker_process.h"
#include "harness.h"

#if ROVE_TESTS_HAVE_VCPU
#include "rove/engine/vcpu.h"
#endif

namespace rove::difftest {

bool RoveAvailable() {
  return ROVE_TESTS_HAVE_VCPU != 0;
}

#if !ROVE_TESTS_HAVE_VCPU

Outcome RunRove(const DiffInput&, const RoveRunOptions&) {
  Outcome out;
  out.unavailable = true;
  return out;
}

#else

namespace {

const uint8_t kUd2Fill[2] = {0x0F, 0x0B};

Outcome RunRoveInProcess(const DiffInput& input, const RoveRunOptions& options) {
  Outcome out;
  if (input.code.size() > kMaxSequenceBytes || input.data.size() != kDataSize) {
    out.failure = "bad input: code too long or data region of the wrong size";
    return out;
  }
  std::unique_ptr<GuestMemory> mem = GuestMemory::Create(testing::kTestRamBytes);
  testing::TestMachineConfig config;
  config.compat32 = input.compat32;
  testing::BuildTestMachine(*mem, config);
  testing::WriteGuestVa(*mem, kDataVa, input.data.data(), kDataSize);
  std::vector<uint8_t> code(kCodeSize);
  for (uint64_t i = 0; i < kCodeSize; ++i) code[i] = kUd2Fill[i & 1];
  if (!input.code.empty()) std::memcpy(code.data(), input.code.data(), input.code.size());
  code[input.code.size()] = 0xF4;  // hlt (IF=0): the end of the sequence
  testing::WriteGuestVa(*mem, kCodeVa, code.data(), kCodeSize);

  testing::RecordingIo io;
  Vcpu vcpu(*mem, io);
  io.set_vcpu(&vcpu);
  CpuState& s = vcpu.state();
  testing::SetTestMachineState(s, config);
  std::memcpy(s.gpr, input.init.gpr, sizeof(s.gpr));
  s.rflags = (input.init.rflags & rflags::kHostLive) | rflags::kFixed1;
  s.seg[kGs].base = input.init.gs_base;
  std::memcpy(s.xsave, input.init.xsave, sizeof(input.init.xsave));

  const StopInfo stop = testing::RunWithWatchdog(vcpu, options.max_exits, options.timeout_ms);
  out.stop_message = stop.message;
  std::memcpy(out.state.gpr, s.gpr, sizeof(out.state.gpr));
  out.state.rip = s.rip;
  out.state.rflags = s.rflags;
  out.state.gs_base = s.seg[kGs].base;
  std::memcpy(out.state.xsave, s.xsave, sizeof(out.state.xsave));
  out.data.resize(kDataSize);
  testing::ReadGuestVa(*mem, kDataVa, out.data.data(), kDataSize);

  const testing::GuestException e = testing::ReadGuestException(*mem);
  if (stop.reason != StopReason::kHalted) {
    out.failure = fmt::format("engine stopped with {} ({}) at rip {:#x}",
                              testing::StopReasonName(stop.reason), stop.message, s.rip);
  } else if (e.taken) {
    out.exception = true;
    out.vector = e.vector;
    out.error_code = e.error_code;
    out.cr2 = s.cr2;
    out.state.rip = e.rip;
    out.state.rflags = e.rflags;
    out.state.gpr[kRsp] = e.rsp;
  } else if (s.rip != kCodeVa + input.code.size() + 1) {
    out.failure = fmt::format("halted at rip {:#x}, expected the HLT ending the sequence", s.rip);
  } else {
    out.state.rip = kCodeVa + input.code.size();
  }
  return out;
}

// Request and reply of the rove worker process.
struct RoveShared {
  MachineState init;
  uint64_t ignore_flags;
  bool compat32;
  uint32_t code_size;
  RoveRunOptions options;
  uint8_t code[kCodeSize];
  uint8_t data[kDataSize];
  // Reply.
  MachineState state;
  uint8_t out_data[kDataSize];
  uint8_t exception, vector;
  uint64_t error_code, cr2;
  char failure[2048];
  char stop_message[2048];
};

void RunCaseInWorker(void* buf) {
  auto* sh = static_cast<RoveShared*>(buf);
  DiffInput in;
  in.init = sh->init;
  in.ignore_flags = sh->ignore_flags;
  in.compat32 = sh->compat32;
  in.code.assign(sh->code, sh->code + sh->code_size);
  in.data.assign(sh->data, sh->data + kDataSize);
  Outcome o;
  try {
    o = RunRoveInProcess(in, sh->options);
  } catch (const std::exception& e) {
    o.failure = std::string("exception from the engine: ") + e.what();
  }
  sh->state = o.state;
  if (o.data.size() == kDataSize) std::memcpy(sh->out_data, o.data.data(), kDataSize);
  std::snprintf(sh->failure, sizeof(sh->failure), "%s", o.failure.c_str());
  std::snprintf(sh->stop_message, sizeof(sh->stop_message), "%s", o.stop_message.c_str());
  sh->exception = o.exception;
  sh->vector = o.vector;
  sh->error_code = o.error_code;
  sh->cr2 = o.cr2;
}

testing::WorkerProcess& RoveWorker() {
  static testing::WorkerProcess worker(sizeof(RoveShared), RunCaseInWorker);
  return worker;
}

}  // namespace

Outcome RunRove(const DiffInput& input, const RoveRunOptions& options) {
  if (!options.isolate) {
    try {
      return RunRoveInProcess(input, options);
    } catch (const std::exception& e) {
      Outcome out;
      out.failure = std::string("exception from the engine: ") + e.what();
      return out;
    }
  }
  // Isolated: in the worker process, so that an engine crash fails this case only.
  Outcome out;
  testing::WorkerProcess& worker = RoveWorker();
  auto* sh = static_cast<RoveShared*>(worker.shared());
  if (!sh || input.code.size() > kMaxSequenceBytes || input.data.size() != kDataSize) {
    out.failure = "bad input or no shared memory";
    return out;
  }
  sh->init = input.init;
  sh->ignore_flags = input.ignore_flags;
  sh->compat32 = input.compat32;
  sh->code_size = static_cast<uint32_t>(input.code.size());
  sh->options = options;
  if (!input.code.empty()) std::memcpy(sh->code, input.code.data(), input.code.size());
  std::memcpy(sh->data, input.data.data(), kDataSize);
  sh->failure[0] = sh->stop_message[0] = 0;
  const std::string err = worker.Call(options.timeout_ms + 10000);
  if (!err.empty()) {
    out.failure = "rove worker: " + err;
    return out;
  }
  out.state = sh->state;
  out.data.assign(sh->out_data, sh->out_data + kDataSize);
  out.failure = sh->failure;
  out.stop_message = sh->stop_message;
  out.exception = sh->exception;
  out.vector = sh->vector;
  out.error_code = sh->error_code;
  out.cr2 = sh->cr2;
  return out;
}

#endif

}  // namespace rove::difftest
