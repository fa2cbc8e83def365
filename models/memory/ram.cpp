#include "models/memory/ram.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace pgsim::models {

Ram::Ram(sc_core::sc_module_name name, const Params& params)
    : sc_module(name), in("in"), size_(params.size), latency_(params.latency) {
  if (size_ == 0 || size_ % 4096 != 0)
    throw std::invalid_argument("RAM size must be a non-zero multiple of 4 KiB, got " +
                                std::to_string(size_));
  void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    throw std::runtime_error("cannot reserve " + std::to_string(size_ >> 20) +
                             " MiB of guest RAM: " + std::strerror(errno));
  data_ = static_cast<uint8_t*>(p);
  pagemap_ = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  in.register_b_transport(this, &Ram::b_transport);
  in.register_get_direct_mem_ptr(this, &Ram::get_direct_mem_ptr);
  in.register_transport_dbg(this, &Ram::transport_dbg);
}

Ram::~Ram() {
  if (pagemap_ >= 0) close(pagemap_);
  munmap(data_, size_);
}

uint64_t Ram::resident_bytes() const {
  const long page = sysconf(_SC_PAGESIZE);
  const uint64_t pages = (size_ + page - 1) / page;
  std::vector<unsigned char> vec(pages);
  if (mincore(data_, size_, vec.data()) != 0) return 0;
  uint64_t resident = 0;
  for (unsigned char v : vec) resident += v & 1;
  return resident * page;
}

bool Ram::untouched(uint64_t offset, uint64_t size) const {
  if (pagemap_ < 0 || size == 0 || offset >= size_ || size > size_ - offset) return false;
  // One 64-bit entry per host page (Documentation/admin-guide/mm/pagemap.rst): bit 63 present,
  // bit 62 swapped. A page of this private anonymous mapping with neither was never touched.
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t first = reinterpret_cast<uintptr_t>(data_ + offset) / page;
  const uint64_t last = (reinterpret_cast<uintptr_t>(data_ + offset + size) - 1) / page;
  std::vector<uint64_t> entries(last - first + 1);
  const ssize_t bytes = static_cast<ssize_t>(entries.size() * sizeof(uint64_t));
  if (pread(pagemap_, entries.data(), bytes, static_cast<off_t>(first * sizeof(uint64_t))) != bytes) return false;
  for (const uint64_t e : entries)
    if (e >> 62) return false;
  return true;
}

void Ram::b_transport(tlm::tlm_generic_payload& trans, sc_core::sc_time& delay) {
  if (transport_dbg(trans) != trans.get_data_length() && trans.is_response_ok())
    trans.set_response_status(tlm::TLM_ADDRESS_ERROR_RESPONSE);
  trans.set_dmi_allowed(true);
  delay += latency_;
}

unsigned Ram::transport_dbg(tlm::tlm_generic_payload& trans) {
  const uint64_t addr = trans.get_address();
  const unsigned len = trans.get_data_length();
  if (trans.get_byte_enable_ptr() != nullptr) {
    trans.set_response_status(tlm::TLM_BYTE_ENABLE_ERROR_RESPONSE);
    return 0;
  }
  if (addr >= size_ || len > size_ - addr) {
    trans.set_response_status(tlm::TLM_ADDRESS_ERROR_RESPONSE);
    return 0;
  }
  if (trans.is_read())
    std::memcpy(trans.get_data_ptr(), data_ + addr, len);
  else if (trans.is_write())
    std::memcpy(data_ + addr, trans.get_data_ptr(), len);
  trans.set_response_status(tlm::TLM_OK_RESPONSE);
  return len;
}

bool Ram::get_direct_mem_ptr(tlm::tlm_generic_payload&, tlm::tlm_dmi& dmi) {
  dmi.set_dmi_ptr(data_);
  dmi.set_start_address(0);
  dmi.set_end_address(size_ - 1);
  dmi.set_granted_access(tlm::tlm_dmi::DMI_ACCESS_READ_WRITE);
  dmi.set_read_latency(latency_);
  dmi.set_write_latency(latency_);
  return true;
}

}  // namespace pgsim::models
