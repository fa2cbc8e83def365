// The local APIC of the one CPU (SDM vol. 3, ch. 11): xAPIC registers in MMIO at 0xFEE00000 and the
// same registers as x2APIC MSRs 0x800-0x8FF; the timer in one-shot, periodic and TSC-deadline modes;
// TPR (CR8 is TPR[7:4]), PPR, EOI, IRR/ISR/TMR; self IPIs through the ICR; LINT0 in ExtINT mode
// passes the 8259's INT through (the virtual-wire mode firmware leaves a PC in).
#pragma once
#include <array>
#include <cstdint>
#include <functional>

#include <systemc>

#include "models/devices/register_port.h"

namespace pgsim::models {

class Lapic : public sc_core::sc_module {
 public:
  // Register offsets in the 4 KiB MMIO page; the x2APIC MSR is 0x800 + offset / 16.
  enum Reg : unsigned {
    ID = 0x020, VERSION = 0x030, TPR = 0x080, APR = 0x090, PPR = 0x0A0, EOI = 0x0B0,
    RRD = 0x0C0, LDR = 0x0D0, DFR = 0x0E0, SVR = 0x0F0,
    ISR0 = 0x100, TMR0 = 0x180, IRR0 = 0x200,  // 8 registers each, 16 bytes apart
    ESR = 0x280, LVT_CMCI = 0x2F0, ICR_LOW = 0x300, ICR_HIGH = 0x310,
    LVT_TIMER = 0x320, LVT_THERMAL = 0x330, LVT_PERF = 0x340, LVT_LINT0 = 0x350,
    LVT_LINT1 = 0x360, LVT_ERROR = 0x370, TIMER_INITIAL = 0x380, TIMER_CURRENT = 0x390,
    TIMER_DIVIDE = 0x3E0, SELF_IPI = 0x3F0,  // SELF_IPI exists only as an x2APIC MSR
  };
  enum LvtBits : uint32_t {
    LVT_VECTOR = 0xFF,
    LVT_DELIVERY_MODE = 7u << 8,   // fixed 000, SMI 010, NMI 100, INIT 101, ExtINT 111
    LVT_MASKED = 1u << 16,
    LVT_TIMER_MODE = 3u << 17,     // timer: one-shot 00, periodic 01, TSC-deadline 10
  };
  enum DeliveryMode : uint32_t { DM_FIXED = 0u << 8, DM_NMI = 4u << 8, DM_EXTINT = 7u << 8 };
  enum TimerMode : uint32_t { TIMER_ONESHOT = 0, TIMER_PERIODIC = 1u << 17, TIMER_TSC_DEADLINE = 2u << 17 };
  enum SvrBits : uint32_t { SVR_ENABLE = 1u << 8 };  // APIC software enable
  enum IcrBits : uint32_t {
    ICR_SHORTHAND = 3u << 18,  // none 00, self 01, all including self 10, all excluding self 11
    ICR_SELF = 1u << 18,
    ICR_ALL_INCLUDING_SELF = 2u << 18,
  };
  enum ApicBaseBits : uint64_t { APIC_BASE_EXTD = 1u << 10, APIC_BASE_ENABLE = 1u << 11 };
  static constexpr uint32_t kX2apicMsrFirst = 0x800, kX2apicMsrLast = 0x8FF;
  static constexpr uint32_t kVersion = 0x00050014;  // version 0x14, 6 LVT entries (as QEMU's)
  static constexpr int kNone = -1;

  struct Params {
    double timer_hz = 1e9;  // the timer's input clock before the divider (QEMU counts in ns)
    double tsc_hz = 2e9;    // TSC ticks per second, for TSC-deadline mode (= CPU clock)
  };

  RegisterPort in;  // the 4 KiB xAPIC page

  // The 8259's INT output and its acknowledge, for LINT0 in ExtINT mode.
  std::function<bool()> pic_pending;
  std::function<uint8_t()> pic_acknowledge;
  // EOI of a level-triggered vector is broadcast to the I/O APIC.
  std::function<void(uint8_t vector)> on_level_eoi;
  // Told whenever an interrupt may have become deliverable (the CPU polls at its next boundary).
  std::function<void()> on_interrupt;

  SC_HAS_PROCESS(Lapic);
  Lapic(sc_core::sc_module_name name, const Params& params)
      : sc_module(name),
        in("in", [this](uint64_t off, unsigned, const sc_core::sc_time& now) -> uint64_t {
             return read_register(static_cast<unsigned>(off & 0xFF0), now);
           },
           [this](uint64_t off, unsigned, uint64_t v, const sc_core::sc_time& now) {
             if (!x2apic()) write_register(static_cast<unsigned>(off & 0xFF0), static_cast<uint32_t>(v), now);
           }),
        params_(params) {
    lvt_.fill(LVT_MASKED);
    lvt(LVT_LINT0) = DM_EXTINT;  // virtual-wire mode, as the PC firmware leaves it
    lvt(LVT_LINT1) = DM_NMI;
    SC_METHOD(on_timer);
    sensitive << timer_event_;
    dont_initialize();
  }

  // Notified whenever an interrupt may have become deliverable (a HLTed CPU waits on it).
  const sc_core::sc_event& interrupt_event() const { return interrupt_event_; }
  void notify_interrupt() {
    interrupt_event_.notify(sc_core::SC_ZERO_TIME);
    if (on_interrupt) on_interrupt();
  }

  // --- the CPU side ---------------------------------------------------------------------------
  // True when an interrupt would be taken at the next instruction boundary with RFLAGS.IF=1.
  bool has_pending() const {
    if (highest_deliverable() != kNone) return true;
    return extint_enabled() && pic_pending && pic_pending();
  }
  // INTA: the vector of the interrupt now taken; it moves from IRR to ISR.
  uint8_t acknowledge() {
    int v = highest_deliverable();
    if (v == kNone) {
      if (extint_enabled() && pic_pending && pic_pending()) return pic_acknowledge();
      return static_cast<uint8_t>(svr_ & 0xFF);  // spurious vector
    }
    clear(irr_, v);
    set(isr_, v);
    return static_cast<uint8_t>(v);
  }
  // The NMI pin of the CPU: an IPI with delivery mode NMI, or LINT1 (the PC's NMI line) in NMI
  // mode. Edge-triggered: one NMI is latched until the CPU accepts it.
  bool nmi_pending() const { return nmi_pending_; }
  void acknowledge_nmi() { nmi_pending_ = false; }
  // The NMI line on LINT1 was asserted: an NMI when LINT1 is unmasked in NMI mode (SDM 11.5.1).
  void assert_lint1() {
    const uint32_t lint1 = lvt_[lvt_index(LVT_LINT1)];
    if (!(lint1 & LVT_MASKED) && (lint1 & LVT_DELIVERY_MODE) == DM_NMI) raise_nmi();
  }
  uint8_t tpr() const { return static_cast<uint8_t>(tpr_); }
  void set_tpr(uint8_t tpr) { tpr_ = tpr; notify_interrupt(); }

  // A fixed interrupt arriving from the I/O APIC, an IPI or a local source.
  void deliver(uint8_t vector, bool level_triggered) {
    if (vector < 16) { esr_ |= 1u << 6; return; }  // illegal vector: "receive illegal vector"
    set(irr_, vector);
    if (level_triggered) set(tmr_, vector); else clear(tmr_, vector);
    notify_interrupt();
  }

  // IA32_APIC_BASE as the CPU holds it: global enable and x2APIC mode.
  void set_apic_base(uint64_t value) { apic_base_ = value; }
  bool x2apic() const { return (apic_base_ & APIC_BASE_EXTD) && (apic_base_ & APIC_BASE_ENABLE); }

  // x2APIC MSRs and IA32_TSC_DEADLINE. Returns false for an MSR this device does not hold (or
  // an x2APIC MSR while x2APIC is off), which the CPU turns into #GP.
  bool read_msr(uint32_t msr, uint64_t& value, const sc_core::sc_time& now) {
    if (msr == 0x6E0) { value = tsc_deadline_; return true; }
    if (msr < kX2apicMsrFirst || msr > kX2apicMsrLast || !x2apic()) return false;
    const unsigned reg = (msr - kX2apicMsrFirst) << 4;
    if (reg == ICR_LOW) { value = (uint64_t{icr_high_} << 32) | icr_low_; return true; }
    if (reg == ID) { value = apic_id_; return true; }
    value = read_register(reg, now);
    return true;
  }
  bool write_msr(uint32_t msr, uint64_t value, const sc_core::sc_time& now) {
    if (msr == 0x6E0) { set_tsc_deadline(value, now); return true; }
    if (msr < kX2apicMsrFirst || msr > kX2apicMsrLast || !x2apic()) return false;
    const unsigned reg = (msr - kX2apicMsrFirst) << 4;
    if (reg == SELF_IPI) { deliver(static_cast<uint8_t>(value), false); return true; }
    if (reg == ICR_LOW) icr_high_ = static_cast<uint32_t>(value >> 32);
    write_register(reg, static_cast<uint32_t>(value), now);
    return true;
  }

  uint32_t read_register(unsigned reg, const sc_core::sc_time& now) const {
    if (reg >= ISR0 && reg < ISR0 + 0x80) return isr_[(reg - ISR0) >> 4];
    if (reg >= TMR0 && reg < TMR0 + 0x80) return tmr_[(reg - TMR0) >> 4];
    if (reg >= IRR0 && reg < IRR0 + 0x80) return irr_[(reg - IRR0) >> 4];
    switch (reg) {
      case ID: return apic_id_ << 24;
      case VERSION: return kVersion;
      case TPR: return tpr_;
      case PPR: return ppr();
      case LDR: return ldr_;
      case DFR: return dfr_;
      case SVR: return svr_;
      case ESR: return esr_;
      case ICR_LOW: return icr_low_;
      case ICR_HIGH: return icr_high_;
      case LVT_TIMER: case LVT_THERMAL: case LVT_PERF: case LVT_LINT0: case LVT_LINT1:
      case LVT_ERROR: case LVT_CMCI:
        return lvt_[lvt_index(reg)];
      case TIMER_INITIAL: return timer_initial_;
      case TIMER_CURRENT: return timer_current(now);
      case TIMER_DIVIDE: return timer_divide_;
      default: return 0;
    }
  }

  void write_register(unsigned reg, uint32_t value, const sc_core::sc_time& now) {
    switch (reg) {
      case TPR: set_tpr(static_cast<uint8_t>(value)); break;
      case EOI: end_of_interrupt(); break;
      case LDR: ldr_ = value; break;
      case DFR: dfr_ = value | 0x0FFFFFFF; break;
      case SVR:
        svr_ = value & 0x13FF;
        if (!(svr_ & SVR_ENABLE)) for (auto& l : lvt_) l |= LVT_MASKED;
        notify_interrupt();
        break;
      case ESR: esr_ = 0; break;
      case ICR_HIGH: icr_high_ = value; break;
      case ICR_LOW: icr_low_ = value & ~(1u << 12); send_ipi(); break;
      case LVT_TIMER: case LVT_THERMAL: case LVT_PERF: case LVT_LINT0: case LVT_LINT1:
      case LVT_ERROR: case LVT_CMCI: {
        uint32_t& entry = lvt_[lvt_index(reg)];
        const uint32_t old_mode = entry & LVT_TIMER_MODE;
        entry = (svr_ & SVR_ENABLE) ? value : (value | LVT_MASKED);
        if (reg == LVT_TIMER && (entry & LVT_TIMER_MODE) != old_mode) {  // a mode change disarms
          timer_initial_ = 0;
          tsc_deadline_ = 0;
          timer_event_.cancel();
        }
        notify_interrupt();
        break;
      }
      case TIMER_INITIAL:
        if (timer_mode() == TIMER_TSC_DEADLINE) break;
        timer_initial_ = value;
        timer_load_ = now;
        arm_count_timer(now);
        break;
      case TIMER_DIVIDE: timer_divide_ = value & 0xB; break;
      default: break;
    }
  }

  int highest_in_service() const { return highest(isr_); }
  int highest_requested() const { return highest(irr_); }

 private:
  using Bits = std::array<uint32_t, 8>;
  static void set(Bits& b, int v) { b[v >> 5] |= 1u << (v & 31); }
  static void clear(Bits& b, int v) { b[v >> 5] &= ~(1u << (v & 31)); }
  static bool test(const Bits& b, int v) { return b[v >> 5] & (1u << (v & 31)); }
  static int highest(const Bits& b) {
    for (int i = 7; i >= 0; --i)
      if (b[i]) return i * 32 + 31 - __builtin_clz(b[i]);
    return kNone;
  }
  static unsigned lvt_index(unsigned reg) { return reg == LVT_CMCI ? 6 : (reg - LVT_TIMER) >> 4; }
  uint32_t& lvt(unsigned reg) { return lvt_[lvt_index(reg)]; }

  bool software_enabled() const { return (apic_base_ & APIC_BASE_ENABLE) && (svr_ & SVR_ENABLE); }
  // The 8259 reaches the CPU when LINT0 is an unmasked ExtINT or the APIC is globally disabled.
  bool extint_enabled() const {
    if (!(apic_base_ & APIC_BASE_ENABLE)) return true;
    const uint32_t lint0 = lvt_[lvt_index(LVT_LINT0)];
    return !(lint0 & LVT_MASKED) && (lint0 & LVT_DELIVERY_MODE) == DM_EXTINT;
  }
  uint32_t ppr() const {
    const int isrv = highest(isr_);
    const uint32_t isr_class = isrv == kNone ? 0 : (static_cast<uint32_t>(isrv) & 0xF0);
    return (tpr_ & 0xF0) >= isr_class ? tpr_ : isr_class;
  }
  int highest_deliverable() const {
    if (!(apic_base_ & APIC_BASE_ENABLE)) return kNone;
    const int v = highest(irr_);
    if (v == kNone || (static_cast<uint32_t>(v) & 0xF0) <= (ppr() & 0xF0)) return kNone;
    return v;
  }
  void end_of_interrupt() {
    const int v = highest(isr_);
    if (v == kNone) return;
    clear(isr_, v);
    if (test(tmr_, v) && on_level_eoi) on_level_eoi(static_cast<uint8_t>(v));
    notify_interrupt();
  }
  void send_ipi() {
    const uint32_t shorthand = icr_low_ & ICR_SHORTHAND;
    const uint32_t dest = x2apic() ? icr_high_ : icr_high_ >> 24;
    const bool to_me = shorthand == ICR_SELF || shorthand == ICR_ALL_INCLUDING_SELF ||
                       (shorthand == 0 && (dest == apic_id_ || dest == (x2apic() ? 0xFFFFFFFFu : 0xFFu)));
    if (!to_me) return;
    if ((icr_low_ & LVT_DELIVERY_MODE) == DM_FIXED) deliver(static_cast<uint8_t>(icr_low_ & 0xFF), false);
    else if ((icr_low_ & LVT_DELIVERY_MODE) == DM_NMI) raise_nmi();  // the vector field is ignored
  }
  void raise_nmi() {
    nmi_pending_ = true;
    notify_interrupt();
  }

  // --- timer ----------------------------------------------------------------------------------
  uint32_t timer_mode() const { return lvt_[0] & LVT_TIMER_MODE; }
  unsigned divide_shift() const {
    const unsigned v = (timer_divide_ & 3) | ((timer_divide_ >> 1) & 4);
    return (v + 1) & 7;  // 0b111 divides by 1
  }
  double tick_seconds() const { return static_cast<double>(1u << divide_shift()) / params_.timer_hz; }
  uint64_t ticks_since_load(const sc_core::sc_time& now) const {
    return static_cast<uint64_t>((now - timer_load_).to_seconds() / tick_seconds());
  }
  uint32_t timer_current(const sc_core::sc_time& now) const {
    if (timer_initial_ == 0 || timer_mode() == TIMER_TSC_DEADLINE) return 0;
    const uint64_t d = ticks_since_load(now);
    if (timer_mode() == TIMER_PERIODIC) return static_cast<uint32_t>(timer_initial_ - d % timer_initial_);
    return d >= timer_initial_ ? 0 : static_cast<uint32_t>(timer_initial_ - d);
  }
  void notify_at(const sc_core::sc_time& at) {
    const sc_core::sc_time stamp = sc_core::sc_time_stamp();
    timer_event_.cancel();
    timer_event_.notify(at > stamp ? at - stamp : sc_core::SC_ZERO_TIME);
  }
  void arm_count_timer(const sc_core::sc_time& now) {
    timer_event_.cancel();
    if (timer_initial_ == 0) return;
    uint64_t d = ticks_since_load(now);
    uint64_t expiry = timer_initial_;
    if (timer_mode() == TIMER_PERIODIC) expiry = (d / timer_initial_ + 1) * timer_initial_;
    else if (d >= expiry) return;
    notify_at(timer_load_ + sc_core::sc_time(static_cast<double>(expiry) * tick_seconds(), sc_core::SC_SEC));
  }
  void set_tsc_deadline(uint64_t deadline, const sc_core::sc_time& now) {
    if (timer_mode() != TIMER_TSC_DEADLINE) return;  // ignored outside TSC-deadline mode
    tsc_deadline_ = deadline;
    timer_event_.cancel();
    if (deadline == 0) return;
    notify_at(sc_core::sc_time(static_cast<double>(deadline) / params_.tsc_hz, sc_core::SC_SEC));
  }
  void on_timer() {
    const sc_core::sc_time now = sc_core::sc_time_stamp();
    const uint32_t entry = lvt_[0];
    if (!(entry & LVT_MASKED)) deliver(static_cast<uint8_t>(entry & LVT_VECTOR), false);
    switch (timer_mode()) {
      case TIMER_PERIODIC:
        arm_count_timer(now + sc_core::sc_time(tick_seconds() / 2, sc_core::SC_SEC));
        break;
      case TIMER_TSC_DEADLINE: tsc_deadline_ = 0; break;
      default: break;
    }
  }

  Params params_;
  uint64_t apic_base_ = 0xFEE00000 | APIC_BASE_ENABLE | (1u << 8);  // BSP, enabled
  uint32_t apic_id_ = 0, tpr_ = 0, ldr_ = 0, dfr_ = 0xFFFFFFFF, svr_ = 0xFF, esr_ = 0;
  uint32_t icr_low_ = 0, icr_high_ = 0;
  bool nmi_pending_ = false;
  std::array<uint32_t, 7> lvt_{};  // timer, thermal, perf, LINT0, LINT1, error, CMCI
  Bits isr_{}, tmr_{}, irr_{};
  uint32_t timer_initial_ = 0, timer_divide_ = 0;
  sc_core::sc_time timer_load_ = sc_core::SC_ZERO_TIME;
  uint64_t tsc_deadline_ = 0;
  sc_core::sc_event timer_event_, interrupt_event_;
};

}  // namespace pgsim::models
