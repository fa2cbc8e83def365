// A TLM-2.0 target socket that decodes a generic payload into register reads and writes of 1, 2, 4
// or 8 bytes at an offset, and hands the device the initiator's local time (sc_time_stamp() plus
// the annotated delay), so timers read correctly under temporal decoupling.
#pragma once
#include <cstdint>
#include <cstring>
#include <functional>
#include <utility>

#include <systemc>
#include <tlm>
#include <tlm_utils/simple_target_socket.h>

namespace pgsim::models {

class RegisterPort {
 public:
  using Read = std::function<uint64_t(uint64_t offset, unsigned size, const sc_core::sc_time& now)>;
  using Write = std::function<void(uint64_t offset, unsigned size, uint64_t value,
                                   const sc_core::sc_time& now)>;

  tlm_utils::simple_target_socket<RegisterPort> socket;

  RegisterPort(const char* name, Read read, Write write,
               sc_core::sc_time latency = sc_core::SC_ZERO_TIME)
      : socket(name), read_(std::move(read)), write_(std::move(write)), latency_(latency) {
    socket.register_b_transport(this, &RegisterPort::b_transport);
  }

 private:
  void b_transport(tlm::tlm_generic_payload& trans, sc_core::sc_time& delay) {
    const unsigned len = trans.get_data_length();
    if (len != 1 && len != 2 && len != 4 && len != 8) {
      trans.set_response_status(tlm::TLM_BURST_ERROR_RESPONSE);
      return;
    }
    const sc_core::sc_time now = sc_core::sc_time_stamp() + delay;
    uint64_t value = 0;
    if (trans.is_read()) {
      value = read_(trans.get_address(), len, now);
      std::memcpy(trans.get_data_ptr(), &value, len);  // x86 hosts are little-endian like the guest
    } else if (trans.is_write()) {
      std::memcpy(&value, trans.get_data_ptr(), len);
      write_(trans.get_address(), len, value, now);
    }
    delay += latency_;
    trans.set_response_status(tlm::TLM_OK_RESPONSE);
  }

  Read read_;
  Write write_;
  sc_core::sc_time latency_;
};

}  // namespace pgsim::models
