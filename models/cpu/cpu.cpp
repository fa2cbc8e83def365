#include "models/cpu/cpu.h"

#include "isa/system/events.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

namespace pgsim::models {

using sc_core::sc_time;

const char* to_string(Cpu::End end) {
  switch (end) {
    case Cpu::End::Running: return "running";
    case Cpu::End::GuestExit: return "guest exit";
    case Cpu::End::GuestHalted: return "guest halted";
    case Cpu::End::TripleFault: return "triple fault";
    case Cpu::End::InstructionLimit: return "instruction limit";
    case Cpu::End::StepLimit: return "step limit";
    case Cpu::End::NoProgress: return "no progress";
    case Cpu::End::Interrupted: return "interrupted";
    case Cpu::End::TimeLimit: return "simulated time limit";
    case Cpu::End::HostTimeLimit: return "host time limit";
  }
  return "?";
}

Cpu::Cpu(sc_core::sc_module_name name, const Params& params, const TimingParams& timing,
         const MmuParams& mmu, CacheHierarchy* caches)
    : sc_module(name),
      mem("mem"),
      io("io"),
      params_(params),
      timing_(timing),
      core_(*this, *this),
      system_config_{params.profile, nullptr, this, nullptr, params.cpu_model},
      system_binding_(core_, system_config_),
      caches_(caches),
      mmu_(mmu, *this, caches),
      account_(timing, core_.counters(), mmu_.counters()) {
  mmu_.attach(&core_);
  core_.set_no_progress_limit(params.no_progress_faults);
  core_.set_block_compilation(params.compiled_blocks);
  core_.set_translator(&mmu_);
  core_.set_time_source(this);
  if (params.cpu_model.has(isa::Feature::Pmu)) {
    pmu_ = std::make_unique<isa::Pmu>(core_);
    system_config_.pmu = pmu_.get();
  }
  if (caches_) core_.set_data_access_observer(&data_access_timer_.emplace(*caches_, account_.data_access_cycles));
  mem.register_invalidate_direct_mem_ptr(this, &Cpu::invalidate_direct_mem_ptr);
  tlm_utils::tlm_quantumkeeper::set_global_quantum(params.quantum);
  quantum_.reset();
  SC_THREAD(run);
}

void Cpu::attach_interrupt_controller(Lapic& lapic) {
  lapic_ = &lapic;
  core_.set_interrupt_source(this);
}

void Cpu::request_exit(int status) {
  if (end_ != End::Running) return;
  exit_status_ = status;
  std::ostringstream detail;
  detail << "the guest wrote " << ((status - 1) >> 1) << " to the exit device (status " << status << ")";
  finish(End::GuestExit, detail.str());
}

void Cpu::finish(End end, std::string detail) {
  if (end_ != End::Running) return;
  end_ = end;
  end_detail_ = std::move(detail);
  core_.request_stop();
}

sc_time Cpu::local_time() const {
  return time_of(account_.total());
}

// ---- memory and I/O --------------------------------------------------------------------------

uint8_t* Cpu::host_frame(uint64_t paddr) {
  const uint64_t frame = paddr & ~0xFFFull;
  for (const DmiRegion& r : dmi_)
    if (frame >= r.start && frame + 0xFFF <= r.end) return r.host + (frame - r.start);
  for (const auto& [start, end] : no_dmi_)
    if (frame >= start && frame <= end) return nullptr;
  tlm::tlm_generic_payload trans;
  tlm::tlm_dmi dmi;
  trans.set_address(frame);
  trans.set_command(tlm::TLM_READ_COMMAND);
  if (mem->get_direct_mem_ptr(trans, dmi) && dmi.is_read_write_allowed() &&
      dmi.get_start_address() <= frame && frame + 0xFFF <= dmi.get_end_address()) {
    dmi_.push_back({dmi.get_start_address(), dmi.get_end_address(), dmi.get_dmi_ptr()});
    return dmi.get_dmi_ptr() + (frame - dmi.get_start_address());
  }
  no_dmi_.push_back({frame, frame + 0xFFF});
  return nullptr;
}

void Cpu::invalidate_direct_mem_ptr(sc_dt::uint64 start, sc_dt::uint64 end) {
  dmi_.erase(std::remove_if(dmi_.begin(), dmi_.end(),
                            [&](const DmiRegion& r) { return r.start <= end && start <= r.end; }),
             dmi_.end());
  core_.flush_soft_tlb();
  mmu_.host_memory_changed();
}

bool Cpu::transport(tlm_utils::simple_initiator_socket<Cpu>& socket, tlm::tlm_command cmd,
                    uint64_t addr, unsigned size, uint64_t& data) {
  tlm::tlm_generic_payload trans;
  trans.set_command(cmd);
  trans.set_address(addr);
  trans.set_data_ptr(reinterpret_cast<unsigned char*>(&data));
  trans.set_data_length(size);
  trans.set_streaming_width(size);
  trans.set_response_status(tlm::TLM_INCOMPLETE_RESPONSE);
  const sc_time now = local_time();
  const sc_time stamp = sc_core::sc_time_stamp();
  sc_time delay = now > stamp ? now - stamp : sc_core::SC_ZERO_TIME;
  socket->b_transport(trans, delay);
  ++account_.io_accesses;
  return trans.is_response_ok();
}

// RAM is reached through its DMI pointer: only device memory costs a device access. (The core
// itself reads RAM through host_frame(); these paths serve the page walk, the VMM and device memory.)
uint64_t Cpu::read(uint64_t paddr, unsigned size) {
  uint64_t data = 0;
  if (uint8_t* frame = host_frame(paddr); frame && (paddr & 0xFFF) + size <= 0x1000)
    return isa::load_host(frame + (paddr & 0xFFF), size);
  if (!transport(mem, tlm::TLM_READ_COMMAND, paddr, size, data)) return ~0ull >> (64 - 8 * size);
  return data;
}

void Cpu::write(uint64_t paddr, unsigned size, uint64_t value) {
  if (uint8_t* frame = host_frame(paddr); frame && (paddr & 0xFFF) + size <= 0x1000) {
    isa::store_host(frame + (paddr & 0xFFF), size, value);
    core_.invalidate_decoded(paddr, size);  // a write the core did not make may hit decoded code
    return;
  }
  transport(mem, tlm::TLM_WRITE_COMMAND, paddr, size, value);
}

uint32_t Cpu::in(uint16_t port, unsigned size) {
  uint64_t data = 0;
  if (!transport(io, tlm::TLM_READ_COMMAND, port, size, data)) return static_cast<uint32_t>(~0ull >> (64 - 8 * size));
  return static_cast<uint32_t>(data);
}

void Cpu::out(uint16_t port, unsigned size, uint32_t value) {
  uint64_t data = value;
  transport(io, tlm::TLM_WRITE_COMMAND, port, size, data);
}

// ---- interrupts --------------------------------------------------------------------------------

// ---- MSRs of the local APIC -----------------------------------------------------------------------

bool Cpu::read_msr(uint32_t msr, uint64_t& value) {
  return lapic_ && lapic_->read_msr(msr, value, local_time());
}

bool Cpu::write_msr(uint32_t msr, uint64_t value) {
  if (!lapic_) return false;
  if (msr == isa::MSR_APIC_BASE) {  // the core asks before it accepts the write
    lapic_->set_apic_base(value);
    return true;
  }
  return lapic_->write_msr(msr, value, local_time());
}

uint32_t Cpu::cpuid_leaf1_ecx() const {
  constexpr uint32_t kX2apic = 1u << 21, kTscDeadline = 1u << 24;
  return lapic_ ? kX2apic | kTscDeadline : 0;
}

void Cpu::write_cr8(uint64_t value) {
  if (lapic_) lapic_->set_tpr(static_cast<uint8_t>((value & 0xF) << 4));
}

bool Cpu::read_cr8(uint64_t& value) {
  if (!lapic_) return false;
  value = lapic_->tpr() >> 4;
  return true;
}

bool Cpu::interrupt_pending() { return lapic_ && lapic_->has_pending(); }
uint8_t Cpu::acknowledge_interrupt() { return lapic_->acknowledge(); }
bool Cpu::nmi_pending() { return lapic_ && lapic_->nmi_pending(); }
void Cpu::acknowledge_nmi() { lapic_->acknowledge_nmi(); }

void Cpu::wait_for_interrupt() {
  // Bring SystemC time up to the CPU's, then sleep until the interrupt controller has something.
  quantum_.set(local_time() - sc_core::sc_time_stamp());
  quantum_.sync();
  const sc_time before = sc_core::sc_time_stamp();
  // While other processes (device timers) keep SystemC busy, the CPU wakes every so often to check
  // the host-time limit and stop requests; with nothing else pending it waits for the interrupt
  // alone, so that a machine with nothing left to happen ends at once.
  const sc_time check_interval(1, sc_core::SC_MS);
  while (!lapic_->has_pending() && !lapic_->nmi_pending() && end_ == End::Running) {
    sc_time horizon = check_interval;
    if (params_.max_seconds > 0) {
      const sc_time limit(params_.max_seconds, sc_core::SC_SEC);
      if (sc_core::sc_time_stamp() >= limit) break;
      horizon = std::min(horizon, limit - sc_core::sc_time_stamp());
    }
    if (sc_core::sc_pending_activity_at_future_time()) wait(horizon, lapic_->interrupt_event());
    else wait(lapic_->interrupt_event());
    if (host_limits_reached()) break;
  }
  // The halted time becomes whole cycles in the halt bucket.
  const double halted = (sc_core::sc_time_stamp() - before).to_seconds() * timing_.clock_hz;
  account_.halt_cycles += static_cast<uint64_t>(std::ceil(halted - 1e-6));
  quantum_.reset();
  core_.notify_interrupt();
}

bool Cpu::host_limits_reached() {
  if (stop_request_ && stop_request_->load(std::memory_order_relaxed)) {
    finish(End::Interrupted, "stopped at the host's request");
    return true;
  }
  if (params_.max_host_seconds > 0) {
    const double host = std::chrono::duration<double>(std::chrono::steady_clock::now() - host_start_).count();
    if (host >= params_.max_host_seconds) {
      finish(End::HostTimeLimit, "run.max_host_seconds (" + std::to_string(params_.max_host_seconds) + " s) reached");
      return true;
    }
  }
  return false;
}

// ---- the thread ----------------------------------------------------------------------------------

void Cpu::run() {
  host_start_ = std::chrono::steady_clock::now();
  const double cycles_per_quantum = params_.quantum.to_seconds() * timing_.clock_hz;
  const uint64_t chunk = std::max<uint64_t>(64, static_cast<uint64_t>(cycles_per_quantum));
  // Steps per chunk: a few times the instructions, so that an ordinary chunk (a few exceptions,
  // page-sized string instructions) rarely meets it, yet a fault loop, a long REP or a guest whose
  // every instruction traps into the VMM (some 20 us of host time each) returns to the limit
  // checks below within a fraction of a second.
  const uint64_t chunk_steps = 4 * chunk;
  if (lapic_ && (lapic_->has_pending() || lapic_->nmi_pending())) core_.notify_interrupt();
  while (end_ == End::Running) {
    uint64_t budget = chunk;
    const uint64_t retired = core_.counters().retired;
    if (params_.max_instructions) {
      if (retired >= params_.max_instructions) {
        finish(End::InstructionLimit, "run.max_instructions (" + std::to_string(params_.max_instructions) + ") reached");
        break;
      }
      budget = std::min(budget, params_.max_instructions - retired);
    }
    uint64_t step_budget = chunk_steps;
    if (params_.max_steps) {
      const uint64_t steps = core_.counters().steps();
      if (steps >= params_.max_steps) {
        finish(End::StepLimit, "run.max_steps (" + std::to_string(params_.max_steps) + ") reached");
        break;
      }
      step_budget = std::min(step_budget, params_.max_steps - steps);
    }
    core_.run(budget, step_budget);
    if (chunk_observer_) chunk_observer_();
    if (end_ != End::Running) break;
    if (const auto& stuck = core_.no_progress()) {
      std::ostringstream detail;
      detail << isa::event_name(stuck->vector) << " at RIP 0x" << std::hex << stuck->rip << std::dec << " " << stuck->repeats
             << (stuck->in_delivery ? " times in a row while delivering one event, each time delivered anew by the VMM"
                                    : " times in a row with no instruction retired (run.no_progress_faults)");
      finish(End::NoProgress, detail.str());
      break;
    }
    if (core_.is_shutdown()) {
      std::ostringstream detail;
      detail << core_.shutdown_reason() << " (RIP 0x" << std::hex << core_.state().rip << ")";
      finish(End::TripleFault, detail.str());
      break;
    }
    const sc_time now = local_time();
    if (params_.max_seconds > 0 && now.to_seconds() >= params_.max_seconds) {
      finish(End::TimeLimit, "run.max_seconds (" + std::to_string(params_.max_seconds) + " s simulated) reached");
      break;
    }
    if (host_limits_reached()) break;
    if (core_.state().halted) {
      if (!(core_.state().rflags & isa::IF)) {
        std::ostringstream detail;
        detail << "HLT with interrupts disabled at RIP 0x" << std::hex << core_.state().rip;
        finish(End::GuestHalted, detail.str());
        break;
      }
      if (!lapic_) {
        finish(End::GuestHalted, "HLT with no interrupt controller attached");
        break;
      }
      wait_for_interrupt();
      if (end_ != End::Running) break;
      if (!lapic_->has_pending() && !lapic_->nmi_pending()) {
        finish(End::TimeLimit, "run.max_seconds reached while halted");
        break;
      }
      continue;
    }
    quantum_.set(now - sc_core::sc_time_stamp());
    if (quantum_.need_sync()) quantum_.sync();
  }
  host_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - host_start_).count();
  quantum_.set(local_time() - sc_core::sc_time_stamp());
  quantum_.sync();
  account_.update_snapshot();
  if (chunk_observer_) chunk_observer_();
  sc_core::sc_stop();
}

}  // namespace pgsim::models
