#include "models/bus/router.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace pgsim::models {

Router::Router(sc_core::sc_module_name name) : sc_module(name), in("in"), out("out") {
  in.register_b_transport(this, &Router::b_transport);
  in.register_get_direct_mem_ptr(this, &Router::get_direct_mem_ptr);
  in.register_transport_dbg(this, &Router::transport_dbg);
  out.register_invalidate_direct_mem_ptr(this, &Router::invalidate_direct_mem_ptr);
}

void Router::map(uint64_t base, uint64_t size, tlm::tlm_target_socket<>& target, uint64_t offset,
                 const std::string& what) {
  if (size == 0 || base + size - 1 < base)
    throw std::invalid_argument(std::string(name()) + ": empty or wrapping window for " + what);
  for (const Window& w : windows_) {
    if (base < w.base + w.size && w.base < base + size) {
      std::ostringstream msg;
      msg << name() << ": window " << what << " [0x" << std::hex << base << ", 0x" << base + size
          << ") overlaps " << w.what << " [0x" << w.base << ", 0x" << w.base + w.size << ")";
      throw std::invalid_argument(msg.str());
    }
  }
  auto it = std::find(targets_.begin(), targets_.end(), &target);
  unsigned port = static_cast<unsigned>(it - targets_.begin());
  if (it == targets_.end()) {
    targets_.push_back(&target);
    out.bind(target);
  }
  windows_.push_back({base, size, offset, port, what.empty() ? target.name() : what});
  last_ = nullptr;
}

const Router::Window* Router::decode(uint64_t addr) const {
  if (last_ && addr - last_->base < last_->size) return last_;
  for (const Window& w : windows_)
    if (addr - w.base < w.size) return last_ = &w;
  return nullptr;
}

void Router::b_transport(tlm::tlm_generic_payload& trans, sc_core::sc_time& delay) {
  const uint64_t addr = trans.get_address();
  const Window* w = decode(addr);
  if (!w || trans.get_data_length() > w->size - (addr - w->base)) {
    trans.set_response_status(tlm::TLM_ADDRESS_ERROR_RESPONSE);
    return;
  }
  trans.set_address(addr - w->base + w->offset);
  out[w->port]->b_transport(trans, delay);
  trans.set_address(addr);
}

unsigned Router::transport_dbg(tlm::tlm_generic_payload& trans) {
  const uint64_t addr = trans.get_address();
  const Window* w = decode(addr);
  if (!w) return 0;
  trans.set_address(addr - w->base + w->offset);
  unsigned n = out[w->port]->transport_dbg(trans);
  trans.set_address(addr);
  return n;
}

bool Router::get_direct_mem_ptr(tlm::tlm_generic_payload& trans, tlm::tlm_dmi& dmi) {
  const uint64_t addr = trans.get_address();
  const Window* w = decode(addr);
  if (!w) return false;
  trans.set_address(addr - w->base + w->offset);
  bool ok = out[w->port]->get_direct_mem_ptr(trans, dmi);
  trans.set_address(addr);
  if (!ok) return false;
  // Clip the grant to the window and translate it back to this router's address space.
  uint64_t start = std::max<uint64_t>(dmi.get_start_address(), w->offset);
  uint64_t end = std::min<uint64_t>(dmi.get_end_address(), w->offset + w->size - 1);
  if (start > end) return false;
  dmi.set_dmi_ptr(dmi.get_dmi_ptr() + (start - dmi.get_start_address()));
  dmi.set_start_address(start - w->offset + w->base);
  dmi.set_end_address(end - w->offset + w->base);
  return true;
}

void Router::invalidate_direct_mem_ptr(int port, sc_dt::uint64 start, sc_dt::uint64 end) {
  for (const Window& w : windows_) {
    if (w.port != static_cast<unsigned>(port)) continue;
    uint64_t lo = std::max<uint64_t>(start, w.offset), hi = std::min<uint64_t>(end, w.offset + w.size - 1);
    if (lo <= hi) in->invalidate_direct_mem_ptr(lo - w.offset + w.base, hi - w.offset + w.base);
  }
}

}  // namespace pgsim::models
