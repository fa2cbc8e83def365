// An Intel 8259A programmable interrupt controller. The PC has two, cascaded: the slave's INT
// output drives the master's IR2. Edge-triggered inputs, fixed priority (IR0 highest), the ICW1-4
// initialization sequence, OCW1 mask, OCW2 (non-)specific EOI, OCW3 IRR/ISR read, auto-EOI.
#pragma once
#include <cstdint>

#include <systemc>

#include "models/devices/irq.h"
#include "models/devices/register_port.h"

namespace pgsim::models {

class Pic8259 : public sc_core::sc_module {
 public:
  // Register offsets from the base port (0x20 master, 0xA0 slave).
  enum Reg : unsigned { COMMAND = 0, DATA = 1 };
  enum Icw1Bits : uint8_t {
    ICW1_ICW4 = 1 << 0,    // ICW4 follows
    ICW1_SINGLE = 1 << 1,  // no cascade: ICW3 is skipped
    ICW1_INIT = 1 << 4,    // this command is ICW1
  };
  enum Icw4Bits : uint8_t { ICW4_AUTO_EOI = 1 << 1 };
  enum Ocw3Bits : uint8_t {
    OCW3_SELECT = 1 << 3,    // this command is OCW3 (not OCW2)
    OCW3_READ_ISR = 3 << 0,  // RR=1, RIS=1: reads of COMMAND return ISR
    OCW3_READ_IRR = 2 << 0,  // RR=1, RIS=0: reads of COMMAND return IRR
    OCW3_POLL = 1 << 2,      // poll command
  };
  enum Ocw2Command : uint8_t {
    OCW2_EOI = 0x20,           // non-specific EOI
    OCW2_SPECIFIC_EOI = 0x60,  // EOI of the level in bits 2:0
    OCW2_ROTATE_EOI = 0xA0,    // rotate on non-specific EOI (priority rotation is not modeled)
    OCW2_ROTATE_SPECIFIC = 0xE0,
  };
  static constexpr unsigned kCascadeInput = 2;

  RegisterPort in;  // 2 ports
  IrqLine irq;      // INT output

  struct InitialState {  // what the firmware leaves behind before the kernel runs
    uint8_t vector_base = 0x08;
    uint8_t mask = 0xFF;
  };

  explicit Pic8259(sc_core::sc_module_name name) : Pic8259(name, InitialState{}) {}
  Pic8259(sc_core::sc_module_name name, InitialState init)
      : sc_module(name),
        in("in", [this](uint64_t off, unsigned, const sc_core::sc_time&) -> uint64_t { return read(off); },
           [this](uint64_t off, unsigned, uint64_t v, const sc_core::sc_time&) {
             write(off, static_cast<uint8_t>(v));
           }),
        vector_base_(init.vector_base & 0xF8),
        imr_(init.mask) {}

  // Makes `slave` the device on input IR2: its INT drives IR2 and it supplies IR2's vector.
  void cascade(Pic8259& slave) {
    slave_ = &slave;
    slave.irq.connect([this](bool level) { set_irq(kCascadeInput, level); });
  }

  // An interrupt request input changed level; a rising edge latches the request.
  void set_irq(unsigned pin, bool level) {
    const uint8_t bit = static_cast<uint8_t>(1u << pin);
    if (level && !(pin_level_ & bit)) irr_ |= bit;  // a request stays latched until INTA
    pin_level_ = level ? (pin_level_ | bit) : (pin_level_ & ~bit);
    update();
  }

  // INTA cycle: the vector of the highest-priority request, now in service. A request that
  // vanished before the acknowledge gives the spurious vector (IR7).
  uint8_t acknowledge() {
    int pin = highest_pending();
    if (pin < 0) return vector_base_ | 7;
    const uint8_t bit = static_cast<uint8_t>(1u << pin);
    irr_ &= ~bit;
    if (!auto_eoi_) isr_ |= bit;
    uint8_t vector = static_cast<uint8_t>(vector_base_ | pin);
    if (pin == static_cast<int>(kCascadeInput) && slave_) {
      vector = slave_->acknowledge();
      if (slave_->irq.level()) irr_ |= bit;  // more requests waiting on the slave
    }
    update();
    return vector;
  }

  uint8_t read(uint64_t offset) {
    if (offset == DATA) return imr_;
    if (poll_) {
      poll_ = false;
      int pin = highest_pending();
      if (pin < 0) return 0;
      acknowledge();
      return static_cast<uint8_t>(0x80 | pin);
    }
    return read_isr_ ? isr_ : irr_;
  }

  void write(uint64_t offset, uint8_t value) {
    if (offset == COMMAND) {
      if (value & ICW1_INIT) {
        imr_ = 0; isr_ = 0; irr_ = 0; read_isr_ = false; auto_eoi_ = false;
        need_icw4_ = value & ICW1_ICW4;
        single_ = value & ICW1_SINGLE;
        init_step_ = 2;
      } else if (value & OCW3_SELECT) {
        if (value & 2) read_isr_ = value & 1;
        poll_ = value & OCW3_POLL;
      } else {
        const uint8_t command = value & 0xE0;
        if (command == OCW2_EOI || command == OCW2_ROTATE_EOI) {
          int pin = highest_in_service();
          if (pin >= 0) isr_ &= ~(1u << pin);
        } else if (command == OCW2_SPECIFIC_EOI || command == OCW2_ROTATE_SPECIFIC) {
          isr_ &= ~(1u << (value & 7));
        }
      }
    } else {
      switch (init_step_) {
        case 2:
          vector_base_ = value & 0xF8;
          init_step_ = single_ ? (need_icw4_ ? 4 : 0) : 3;
          break;
        case 3: init_step_ = need_icw4_ ? 4 : 0; break;  // ICW3: the cascade wiring is fixed
        case 4:
          auto_eoi_ = value & ICW4_AUTO_EOI;
          init_step_ = 0;
          break;
        default: imr_ = value; break;  // OCW1
      }
    }
    update();
  }

  uint8_t irr() const { return irr_; }
  uint8_t isr() const { return isr_; }
  uint8_t imr() const { return imr_; }

 private:
  // The highest-priority unmasked request above everything in service, or -1.
  int highest_pending() const {
    const uint8_t pending = irr_ & ~imr_;
    const int in_service = highest_in_service();
    for (int pin = 0; pin < 8; ++pin) {
      if (pin == in_service) return -1;
      if (pending & (1u << pin)) return pin;
    }
    return -1;
  }
  int highest_in_service() const {
    for (int pin = 0; pin < 8; ++pin)
      if (isr_ & (1u << pin)) return pin;
    return -1;
  }
  void update() { irq.set(init_step_ == 0 && highest_pending() >= 0); }

  Pic8259* slave_ = nullptr;
  uint8_t vector_base_;
  uint8_t imr_;
  uint8_t irr_ = 0, isr_ = 0, pin_level_ = 0;
  bool read_isr_ = false, auto_eoi_ = false, poll_ = false;
  bool need_icw4_ = false, single_ = false;
  int init_step_ = 0;
};

}  // namespace pgsim::models
