// An 82093AA-style I/O APIC at 0xFEC00000 with 24 redirection entries: IOREGSEL at offset 0x00,
// IOWIN at 0x10, the EOI register at 0x40 (version 0x20). Edge inputs deliver on a rising edge;
// level inputs deliver while asserted and hold Remote IRR until the local APIC broadcasts the EOI.
#pragma once
#include <array>
#include <cstdint>
#include <functional>

#include <systemc>

#include "models/devices/register_port.h"

namespace pgsim::models {

class Ioapic : public sc_core::sc_module {
 public:
  static constexpr unsigned kPins = 24;
  enum Reg : unsigned { IOREGSEL = 0x00, IOWIN = 0x10, EOI = 0x40 };
  // Indirect registers selected through IOREGSEL.
  enum Index : uint32_t { IOAPICID = 0x00, IOAPICVER = 0x01, IOAPICARB = 0x02, REDTBL0 = 0x10 };
  static constexpr uint32_t kVersion = 0x20 | ((kPins - 1) << 16);
  enum RedirectionBits : uint64_t {
    RTE_VECTOR = 0xFF,
    RTE_DELIVERY_MODE = 7u << 8,
    RTE_DELIVERY_STATUS = 1u << 12,  // read only
    RTE_POLARITY_LOW = 1u << 13,
    RTE_REMOTE_IRR = 1u << 14,       // read only: a level interrupt is in service
    RTE_LEVEL = 1u << 15,            // trigger mode: level (1) or edge (0)
    RTE_MASKED = 1u << 16,
  };
  static constexpr uint64_t kReadOnly = RTE_DELIVERY_STATUS | RTE_REMOTE_IRR;

  RegisterPort in;  // the register window

  // Delivers a fixed interrupt to the local APIC (one CPU: every destination is that CPU).
  std::function<void(uint8_t vector, bool level_triggered)> deliver;

  explicit Ioapic(sc_core::sc_module_name name)
      : sc_module(name),
        in("in", [this](uint64_t off, unsigned, const sc_core::sc_time&) -> uint64_t { return read(off); },
           [this](uint64_t off, unsigned, uint64_t v, const sc_core::sc_time&) {
             write(off, static_cast<uint32_t>(v));
           }) {
    redirection_.fill(RTE_MASKED);
  }

  void set_irq(unsigned pin, bool level) {
    if (pin >= kPins) return;
    const uint64_t entry = redirection_[pin];
    const bool active = (entry & RTE_POLARITY_LOW) ? !level : level;
    const bool was_active = pin_active_[pin];
    pin_active_[pin] = active;
    if (entry & RTE_LEVEL) {
      if (active) service(pin);
    } else if (active && !was_active) {
      service(pin);
    }
  }

  // The local APIC's EOI broadcast for a level-triggered vector.
  void end_of_interrupt(uint8_t vector) {
    for (unsigned pin = 0; pin < kPins; ++pin) {
      uint64_t& entry = redirection_[pin];
      if ((entry & RTE_VECTOR) != vector || !(entry & RTE_REMOTE_IRR)) continue;
      entry &= ~uint64_t{RTE_REMOTE_IRR};
      if ((entry & RTE_LEVEL) && pin_active_[pin]) service(pin);
    }
  }

  uint64_t redirection(unsigned pin) const { return redirection_[pin]; }

 private:
  uint32_t read(uint64_t offset) const {
    if (offset == IOREGSEL) return select_;
    if (offset != IOWIN) return 0;
    if (select_ == IOAPICID) return id_ << 24;
    if (select_ == IOAPICVER) return kVersion;
    if (select_ == IOAPICARB) return id_ << 24;
    if (select_ >= REDTBL0 && select_ < REDTBL0 + 2 * kPins) {
      const uint64_t entry = redirection_[(select_ - REDTBL0) / 2];
      return static_cast<uint32_t>((select_ & 1) ? entry >> 32 : entry);
    }
    return 0;
  }
  void write(uint64_t offset, uint32_t value) {
    if (offset == IOREGSEL) { select_ = value & 0xFF; return; }
    if (offset == EOI) { end_of_interrupt(static_cast<uint8_t>(value)); return; }
    if (offset != IOWIN) return;
    if (select_ == IOAPICID) { id_ = (value >> 24) & 0xF; return; }
    if (select_ < REDTBL0 || select_ >= REDTBL0 + 2 * kPins) return;
    const unsigned pin = (select_ - REDTBL0) / 2;
    uint64_t& entry = redirection_[pin];
    const uint64_t kept = entry & kReadOnly;
    if (select_ & 1) entry = (entry & 0xFFFFFFFFull) | (uint64_t{value} << 32);
    else entry = (entry & ~0xFFFFFFFFull) | value;
    entry = (entry & ~kReadOnly) | kept;
    if ((entry & RTE_LEVEL) && pin_active_[pin]) service(pin);  // unmasking a held level
  }
  void service(unsigned pin) {
    uint64_t& entry = redirection_[pin];
    if (entry & RTE_MASKED) return;
    const bool level = entry & RTE_LEVEL;
    if (level) {
      if (entry & RTE_REMOTE_IRR) return;
      entry |= RTE_REMOTE_IRR;
    }
    if (deliver) deliver(static_cast<uint8_t>(entry & RTE_VECTOR), level);
  }

  uint32_t select_ = 0, id_ = 0;
  std::array<uint64_t, kPins> redirection_{};
  std::array<bool, kPins> pin_active_{};
};

}  // namespace pgsim::models
