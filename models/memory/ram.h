// Guest RAM: a TLM-2.0 target backed by one anonymous mapping reserved with MAP_NORESERVE, so the
// host commits a page only when the guest first touches it (a 4 GiB guest that uses 100 MiB costs
// about 100 MiB of host memory). The CPU reaches it through DMI; b_transport serves everyone else.
#pragma once
#include <cstdint>
#include <string>

#include <systemc>
#include <tlm>
#include <tlm_utils/simple_target_socket.h>

namespace pgsim::models {

class Ram : public sc_core::sc_module {
 public:
  struct Params {
    uint64_t size = 0;                                  // bytes, a multiple of 4 KiB
    sc_core::sc_time latency = sc_core::SC_ZERO_TIME;   // per b_transport / DMI access
  };

  tlm_utils::simple_target_socket<Ram> in;

  Ram(sc_core::sc_module_name name, const Params& params);
  ~Ram() override;
  Ram(const Ram&) = delete;
  Ram& operator=(const Ram&) = delete;

  uint64_t size() const { return size_; }
  uint8_t* data() { return data_; }  // the loader writes the image here before the run

  // Host memory the guest has actually touched (resident pages of the mapping), in bytes.
  uint64_t resident_bytes() const;
  // Whether [offset, offset + size) has never been touched: its host pages were neither faulted in
  // nor swapped out, so that it reads as zeros (and reading it would make the host allocate it).
  // False when the host cannot tell (no /proc/self/pagemap).
  bool untouched(uint64_t offset, uint64_t size) const;

 private:
  void b_transport(tlm::tlm_generic_payload& trans, sc_core::sc_time& delay);
  bool get_direct_mem_ptr(tlm::tlm_generic_payload& trans, tlm::tlm_dmi& dmi);
  unsigned transport_dbg(tlm::tlm_generic_payload& trans);

  uint64_t size_;
  sc_core::sc_time latency_;
  uint8_t* data_ = nullptr;
  int pagemap_ = -1;  // /proc/self/pagemap, for untouched()
};

}  // namespace pgsim::models
