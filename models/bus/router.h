// A TLM-2.0 interconnect with an address map: each window [base, base+size) forwards to one target
// socket at target address (addr - base + offset). The PC uses one router for the physical address
// space and one for the 16-bit I/O port space. DMI requests and invalidations are translated
// through the same map, so the CPU gets host pointers for RAM windows.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <systemc>
#include <tlm>
#include <tlm_utils/multi_passthrough_initiator_socket.h>
#include <tlm_utils/simple_target_socket.h>

namespace pgsim::models {

class Router : public sc_core::sc_module {
 public:
  tlm_utils::simple_target_socket<Router> in;
  tlm_utils::multi_passthrough_initiator_socket<Router> out;

  explicit Router(sc_core::sc_module_name name);

  // Routes [base, base+size) to `target`, which sees addresses starting at `offset`. Windows must
  // not overlap (a clear error names both). One target may be mapped in several windows.
  void map(uint64_t base, uint64_t size, tlm::tlm_target_socket<>& target, uint64_t offset = 0,
           const std::string& what = "");

  struct Window {
    uint64_t base, size, offset;
    unsigned port;
    std::string what;
  };
  const std::vector<Window>& windows() const { return windows_; }
  // The window holding `addr`, or nullptr.
  const Window* decode(uint64_t addr) const;

 private:
  void b_transport(tlm::tlm_generic_payload& trans, sc_core::sc_time& delay);
  bool get_direct_mem_ptr(tlm::tlm_generic_payload& trans, tlm::tlm_dmi& dmi);
  unsigned transport_dbg(tlm::tlm_generic_payload& trans);
  void invalidate_direct_mem_ptr(int port, sc_dt::uint64 start, sc_dt::uint64 end);

  std::vector<Window> windows_;
  std::vector<tlm::tlm_target_socket<>*> targets_;  // by port index
  mutable const Window* last_ = nullptr;           // most recent hit: accesses cluster
};

}  // namespace pgsim::models
