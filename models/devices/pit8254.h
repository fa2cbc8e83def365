// An Intel 8254 programmable interval timer (ports 0x40-0x43) clocked at 1.193182 MHz, with the
// PC's port 0x61 (system control port B: gate of channel 2 in bit 0, channel 2's output in bit 5).
// Counter values and outputs are derived from simulated time (the formulas of QEMU's i8254);
// channel 0's output drives IRQ 0 from an SC_METHOD scheduled at each output transition.
#pragma once
#include <array>
#include <cstdint>

#include <systemc>

#include "models/devices/irq.h"
#include "models/devices/register_port.h"

namespace pgsim::models {

class Pit8254 : public sc_core::sc_module {
 public:
  static constexpr double kPcInputHz = 1193182;  // the PC's 14.31818 MHz crystal / 12
  enum Reg : unsigned { COUNTER0 = 0, COUNTER1 = 1, COUNTER2 = 2, CONTROL = 3 };
  // Read/write access of a counter (control word bits 5:4).
  enum Access : uint8_t { LATCH = 0, LSB = 1, MSB = 2, LSB_THEN_MSB = 3 };
  enum PortBBits : uint8_t {
    PORTB_GATE2 = 1 << 0,     // gate of channel 2
    PORTB_SPEAKER = 1 << 1,   // speaker data enable (kept, not sounded)
    PORTB_OUT2 = 1 << 5,      // output of channel 2 (read only)
  };

  RegisterPort in;      // ports 0x40-0x43
  RegisterPort port_b;  // port 0x61
  IrqLine irq;          // channel 0 output (IRQ 0)

  struct InitialState {  // what the firmware leaves: channel 0 in mode 2 with count 65536
    uint8_t channel0_mode = 2;
    uint32_t channel0_count = 0x10000;
    double input_hz = kPcInputHz;
  };

  SC_HAS_PROCESS(Pit8254);
  explicit Pit8254(sc_core::sc_module_name name) : Pit8254(name, InitialState{}) {}
  Pit8254(sc_core::sc_module_name name, InitialState init)
      : sc_module(name),
        in("in", [this](uint64_t off, unsigned, const sc_core::sc_time& now) -> uint64_t { return read(off, now); },
           [this](uint64_t off, unsigned, uint64_t v, const sc_core::sc_time& now) {
             write(off, static_cast<uint8_t>(v), now);
           }),
        port_b("port_b",
               [this](uint64_t, unsigned, const sc_core::sc_time& now) -> uint64_t {
                 return (port_b_ & 0x0F) | (output(channels_[2], now) ? PORTB_OUT2 : 0);
               },
               [this](uint64_t, unsigned, uint64_t v, const sc_core::sc_time& now) {
                 const bool gate = v & PORTB_GATE2;
                 if (gate && !(port_b_ & PORTB_GATE2)) channels_[2].load_time = now;  // gate edge restarts
                 channels_[2].gate = gate;
                 port_b_ = static_cast<uint8_t>(v);
               }) {
    input_hz_ = init.input_hz;
    for (auto& c : channels_) c = Channel{};
    channels_[0].mode = init.channel0_mode;
    channels_[0].count = init.channel0_count;
    channels_[0].access = LSB_THEN_MSB;
    SC_METHOD(on_transition);
    sensitive << transition_event_;
    dont_initialize();
  }

  void start_of_simulation() override { schedule(sc_core::SC_ZERO_TIME); }

  uint8_t read(uint64_t offset, const sc_core::sc_time& now) {
    if (offset == CONTROL) return 0xFF;
    Channel& c = channels_[offset];
    if (c.status_latched) {
      c.status_latched = false;
      return c.status;
    }
    if (c.latch_bytes > 0) {  // a latched value is read LSB then MSB
      --c.latch_bytes;
      return static_cast<uint8_t>(c.latch_bytes == 1 || c.access == LSB ? c.latched : c.latched >> 8);
    }
    const uint16_t value = static_cast<uint16_t>(count_now(c, now));
    switch (c.access) {
      case LSB: return value & 0xFF;
      case MSB: return value >> 8;
      default: {
        const bool high = c.read_high;
        c.read_high = !c.read_high;
        return high ? value >> 8 : value & 0xFF;
      }
    }
  }

  void write(uint64_t offset, uint8_t value, const sc_core::sc_time& now) {
    if (offset == CONTROL) {
      const unsigned sel = value >> 6;
      if (sel == 3) {  // read-back: bit 5 clear latches counts, bit 4 clear latches status
        for (unsigned i = 0; i < 3; ++i) {
          if (!(value & (2u << i))) continue;
          Channel& c = channels_[i];
          if (!(value & 0x20) && c.latch_bytes == 0) latch(c, now);
          if (!(value & 0x10) && !c.status_latched) {
            c.status = static_cast<uint8_t>((output(c, now) ? 0x80 : 0) | (c.access << 4) | (c.mode << 1));
            c.status_latched = true;
          }
        }
        return;
      }
      Channel& c = channels_[sel];
      const uint8_t access = (value >> 4) & 3;
      if (access == LATCH) {
        if (c.latch_bytes == 0) latch(c, now);
        return;
      }
      c.access = access;
      c.mode = (value >> 1) & 7;
      if (c.mode > 5) c.mode -= 4;  // modes 6 and 7 are aliases of 2 and 3
      c.write_high = c.read_high = false;
      return;
    }
    Channel& c = channels_[offset];
    switch (c.access) {
      case LSB: load(c, value, now); break;
      case MSB: load(c, uint32_t{value} << 8, now); break;
      default:
        if (!c.write_high) {
          c.write_lsb = value;
          c.write_high = true;
        } else {
          load(c, c.write_lsb | (uint32_t{value} << 8), now);
          c.write_high = false;
        }
    }
    if (offset == COUNTER0) schedule(now);
  }

 private:
  struct Channel {
    uint8_t mode = 0, access = LSB_THEN_MSB, status = 0, write_lsb = 0;
    uint32_t count = 0x10000;  // the reload value; 0 programs 65536
    uint16_t latched = 0;
    unsigned latch_bytes = 0;
    bool status_latched = false, read_high = false, write_high = false, gate = true;
    sc_core::sc_time load_time = sc_core::SC_ZERO_TIME;
  };

  uint64_t ticks_since(const Channel& c, const sc_core::sc_time& now) const {
    const double seconds = (now - c.load_time).to_seconds();
    return static_cast<uint64_t>(seconds * input_hz_);
  }
  sc_core::sc_time time_of_tick(const Channel& c, uint64_t tick) const {
    return c.load_time + sc_core::sc_time(static_cast<double>(tick) / input_hz_, sc_core::SC_SEC);
  }
  void load(Channel& c, uint32_t value, const sc_core::sc_time& now) {
    c.count = value == 0 ? 0x10000 : value;
    c.load_time = now;
  }
  void latch(Channel& c, const sc_core::sc_time& now) {
    c.latched = static_cast<uint16_t>(count_now(c, now));
    c.latch_bytes = (c.access == LSB_THEN_MSB) ? 2 : 1;
  }
  uint32_t count_now(const Channel& c, const sc_core::sc_time& now) {
    const uint64_t d = ticks_since(c, now);
    switch (c.mode) {
      case 0: case 1: case 4: case 5: return static_cast<uint32_t>((c.count - d) & 0xFFFF);
      case 3: return static_cast<uint32_t>(c.count - ((2 * d) % c.count));
      default: return static_cast<uint32_t>(c.count - (d % c.count));
    }
  }
  bool output(const Channel& c, const sc_core::sc_time& now) {
    const uint64_t d = ticks_since(c, now);
    switch (c.mode) {
      case 0: return d >= c.count;
      case 1: return d < c.count;
      case 2: return (d % c.count) == 0 && d != 0;
      case 3: return (d % c.count) < ((c.count + 1) >> 1);
      default: return d == c.count;
    }
  }
  // The first tick after `now` at which channel 0's output rises, for modes that raise it.
  bool next_rise(const Channel& c, const sc_core::sc_time& now, sc_core::sc_time& at) const {
    const uint64_t d = ticks_since(c, now);
    uint64_t tick;
    switch (c.mode) {
      case 0: case 4: case 5:
        if (d >= c.count) return false;
        tick = c.count;
        break;
      case 2: case 3: tick = (d / c.count + 1) * c.count; break;
      default: return false;
    }
    at = time_of_tick(c, tick);
    return true;
  }
  void schedule(const sc_core::sc_time& now) {
    sc_core::sc_time at;
    transition_event_.cancel();
    if (next_rise(channels_[0], now, at)) {
      const sc_core::sc_time stamp = sc_core::sc_time_stamp();
      transition_event_.notify(at > stamp ? at - stamp : sc_core::SC_ZERO_TIME);
    }
  }
  void on_transition() {
    const sc_core::sc_time now = sc_core::sc_time_stamp();
    irq.pulse();  // the 8259 and the I/O APIC latch the rising edge
    // Step one tick past the edge so the next rise is found, not this one.
    schedule(now + sc_core::sc_time(1.0 / input_hz_, sc_core::SC_SEC));
  }

  double input_hz_ = kPcInputHz;
  std::array<Channel, 3> channels_;
  uint8_t port_b_ = 0;
  sc_core::sc_event transition_event_;
};

}  // namespace pgsim::models
