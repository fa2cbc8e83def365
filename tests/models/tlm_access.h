// One b_transport of `length` bytes at `address` through a target socket, as an initiator does.
#pragma once
#include <cstdint>

#include <tlm>

namespace pgsim::models {

template <class TargetSocket>
tlm::tlm_response_status tlm_access(TargetSocket& target, tlm::tlm_command command,
                                           uint64_t address, void* data, unsigned length) {
  tlm::tlm_generic_payload trans;
  trans.set_command(command);
  trans.set_address(address);
  trans.set_data_ptr(static_cast<unsigned char*>(data));
  trans.set_data_length(length);
  trans.set_streaming_width(length);
  sc_core::sc_time delay = sc_core::SC_ZERO_TIME;
  target.get_base_interface().b_transport(trans, delay);
  return trans.get_response_status();
}

}  // namespace pgsim::models
