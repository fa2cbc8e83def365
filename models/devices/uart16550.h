// A 16550A UART (the PC's COM1 at I/O 0x3F8, IRQ 4). Transmission is instantaneous: a byte written
// to THR goes straight to the output sink (the run's serial log and, on request, the terminal), so
// LSR always reports the transmitter empty. Received bytes come from a host file given at start-up.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <utility>

#include <systemc>

#include "models/devices/irq.h"
#include "models/devices/register_port.h"

namespace pgsim::models {

class Uart16550 : public sc_core::sc_module {
 public:
  // Register offsets from the base port.
  enum Reg : unsigned {
    RBR_THR_DLL = 0,  // receive buffer (read) / transmit holding (write) / divisor low (DLAB=1)
    IER_DLM = 1,      // interrupt enable / divisor high (DLAB=1)
    IIR_FCR = 2,      // interrupt identification (read) / FIFO control (write)
    LCR = 3,          // line control
    MCR = 4,          // modem control
    LSR = 5,          // line status
    MSR = 6,          // modem status
    SCR = 7,          // scratch
  };
  enum IerBits : uint8_t {
    IER_RDI = 1 << 0,   // interrupt when received data is available
    IER_THRI = 1 << 1,  // interrupt when the transmit holding register is empty
    IER_RLSI = 1 << 2,  // interrupt on receiver line status
    IER_MSI = 1 << 3,   // interrupt on modem status change
  };
  enum IirBits : uint8_t {
    IIR_NO_INT = 0x01,       // no interrupt pending
    IIR_THRI = 0x02,         // transmit holding register empty
    IIR_RDI = 0x04,          // received data available
    IIR_FIFO_ENABLED = 0xC0, // both FIFO-enabled bits
  };
  enum LcrBits : uint8_t { LCR_DLAB = 1 << 7 };  // divisor latch access
  enum McrBits : uint8_t { MCR_LOOP = 1 << 4 };  // loopback: transmitted bytes are received
  enum LsrBits : uint8_t {
    LSR_DR = 1 << 0,    // data ready
    LSR_THRE = 1 << 5,  // transmit holding register empty
    LSR_TEMT = 1 << 6,  // transmitter empty
  };
  enum FcrBits : uint8_t { FCR_ENABLE = 1 << 0, FCR_CLEAR_RX = 1 << 1 };

  RegisterPort in;  // 8 ports
  IrqLine irq;

  // Every transmitted byte is handed to this sink.
  std::function<void(char)> output;

  explicit Uart16550(sc_core::sc_module_name name)
      : sc_module(name),
        in("in", [this](uint64_t off, unsigned, const sc_core::sc_time&) { return read(off); },
           [this](uint64_t off, unsigned, uint64_t v, const sc_core::sc_time&) {
             write(off, static_cast<uint8_t>(v));
           }) {}

  // Bytes the guest will receive, in order (the contents of the configured input file).
  void push_input(const std::string& bytes) {
    rx_.insert(rx_.end(), bytes.begin(), bytes.end());
    update_irq();
  }

  uint8_t read(uint64_t offset) {
    switch (offset) {
      case RBR_THR_DLL: {
        if (lcr_ & LCR_DLAB) return dll_;
        if (rx_.empty()) return 0;
        uint8_t byte = static_cast<uint8_t>(rx_.front());
        rx_.pop_front();
        update_irq();
        return byte;
      }
      case IER_DLM: return (lcr_ & LCR_DLAB) ? dlm_ : ier_;
      case IIR_FCR: {
        uint8_t iir = pending_iir();
        if (iir == IIR_THRI) thr_empty_pending_ = false;  // reading IIR acknowledges THRE
        update_irq();
        return iir | ((fcr_ & FCR_ENABLE) ? IIR_FIFO_ENABLED : 0);
      }
      case LCR: return lcr_;
      case MCR: return mcr_;
      case LSR: return LSR_THRE | LSR_TEMT | (rx_.empty() ? 0 : LSR_DR);
      case MSR: return (mcr_ & MCR_LOOP) ? static_cast<uint8_t>((mcr_ & 0x0F) << 4) : 0xB0;
      case SCR: return scr_;
      default: return 0xFF;
    }
  }

  void write(uint64_t offset, uint8_t value) {
    switch (offset) {
      case RBR_THR_DLL:
        if (lcr_ & LCR_DLAB) { dll_ = value; return; }
        if (mcr_ & MCR_LOOP) rx_.push_back(static_cast<char>(value));
        else if (output) output(static_cast<char>(value));
        thr_empty_pending_ = true;  // the byte left at once: THR is empty again
        break;
      case IER_DLM:
        if (lcr_ & LCR_DLAB) { dlm_ = value; return; }
        if ((value & IER_THRI) && !(ier_ & IER_THRI)) thr_empty_pending_ = true;
        ier_ = value & 0x0F;
        break;
      case IIR_FCR:
        fcr_ = value;
        if (value & FCR_CLEAR_RX) rx_.clear();
        break;
      case LCR: lcr_ = value; break;
      case MCR: mcr_ = value & 0x1F; break;
      case SCR: scr_ = value; break;
      default: break;
    }
    update_irq();
  }

 private:
  uint8_t pending_iir() const {
    if ((ier_ & IER_RDI) && !rx_.empty()) return IIR_RDI;
    if ((ier_ & IER_THRI) && thr_empty_pending_) return IIR_THRI;
    return IIR_NO_INT;
  }
  void update_irq() { irq.set(pending_iir() != IIR_NO_INT); }

  uint8_t ier_ = 0, lcr_ = 0, mcr_ = 0, fcr_ = 0, scr_ = 0, dll_ = 0x0C, dlm_ = 0;
  bool thr_empty_pending_ = false;
  std::deque<char> rx_;
};

}  // namespace pgsim::models
