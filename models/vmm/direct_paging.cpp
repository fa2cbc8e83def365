#include "models/vmm/direct_paging.h"

namespace pgsim::vmm {
namespace {

constexpr uint64_t kPageBytes = 4096, kLargePageBytes = 2ull << 20;
constexpr unsigned kEntries = 512;
constexpr uint64_t kPresent = 1ull << 0, kWritable = 1ull << 1, kLargePage = 1ull << 7;
constexpr uint64_t kAddress = 0x000FFFFFFFFFF000ull;       // a 4 KiB frame or the next table
constexpr uint64_t kLargeAddress = 0x000FFFFFFFE00000ull;  // a 2 MiB page
constexpr uint64_t kLargeReserved = 0x1FE000ull;           // bits 13-20 of a 2 MiB entry (12 is PAT)

int64_t error(int code) { return -static_cast<int64_t>(code); }

bool vmm_slot(unsigned level, unsigned index) {
  return level == 4 && index >= PV_VMM_PML4_FIRST && index <= PV_VMM_PML4_LAST;
}

}  // namespace

unsigned table_level(FrameType type) {
  switch (type) {
    case FrameType::L1: return 1;
    case FrameType::L2: return 2;
    case FrameType::L3: return 3;
    case FrameType::L4: return 4;
    default: return 0;
  }
}

FrameType table_type(unsigned level) {
  static constexpr FrameType kTypes[] = {FrameType::None, FrameType::L1, FrameType::L2, FrameType::L3, FrameType::L4};
  return level <= 4 ? kTypes[level] : FrameType::None;
}

DirectPaging::DirectPaging(isa::PhysicalBus& memory, uint64_t guest_ram_bytes, uint64_t vmm_base, uint64_t vmm_bytes)
    : memory_(memory),
      ram_bytes_(guest_ram_bytes & ~(kPageBytes - 1)),
      vmm_base_(vmm_base),
      vmm_bytes_(vmm_bytes),
      frames_(ram_bytes_ / kPageBytes) {}

int64_t DirectPaging::check_owned(uint64_t address, uint64_t bytes) const {
  const uint64_t end = address + bytes;
  if (end < address) return error(PV_EINVAL);
  if (vmm_bytes_ && address < vmm_base_ + vmm_bytes_ && end > vmm_base_) return error(PV_EPERM);
  if (end > ram_bytes_) return error(PV_EINVAL);
  return 0;
}

uint64_t DirectPaging::read_entry(uint64_t address) {
  if (const uint8_t* frame = memory_.host_frame(address)) {
    uint64_t v = 0;
    for (unsigned k = 0; k < 8; ++k) v |= uint64_t{frame[(address + k) & (kPageBytes - 1)]} << (8 * k);
    return v;
  }
  return memory_.read(address, 8);
}

void DirectPaging::write_entry(uint64_t address, uint64_t value) {
  if (uint8_t* frame = memory_.host_frame(address)) {
    for (unsigned k = 0; k < 8; ++k) frame[(address + k) & (kPageBytes - 1)] = static_cast<uint8_t>(value >> (8 * k));
    return;
  }
  memory_.write(address, 8, value);
}

FrameType DirectPaging::type_of(uint64_t frame) const {
  const uint64_t n = frame / kPageBytes;
  return n < frames_.size() ? frames_[n].type : FrameType::None;
}

uint32_t DirectPaging::type_count(uint64_t frame) const {
  const uint64_t n = frame / kPageBytes;
  return n < frames_.size() ? frames_[n].count : 0;
}

bool DirectPaging::pinned(uint64_t frame) const {
  const uint64_t n = frame / kPageBytes;
  return n < frames_.size() && frames_[n].pinned;
}

int64_t DirectPaging::get_type(uint64_t frame, FrameType type) {
  if (int64_t r = check_owned(frame, kPageBytes)) return r;
  Frame& f = frames_[frame / kPageBytes];
  if (f.count > 0) {
    if (f.type != type) return error(PV_EPERM);  // a table mapped writable, or a writable page as a table
    ++f.count;
    return 0;
  }
  // Typed before its entries are checked, so that an entry pointing back at it finds the type
  // taken and is refused: a table never validates through itself.
  f.type = type;
  f.count = 1;
  if (const unsigned level = table_level(type)) {
    if (int64_t r = validate_table(frame, level)) {
      f.type = FrameType::None;
      f.count = 0;
      return r;
    }
    ++counters_.tables_validated;
  }
  return 0;
}

void DirectPaging::put_type(uint64_t frame) {
  Frame& f = frames_[frame / kPageBytes];
  if (--f.count > 0) return;
  if (const unsigned level = table_level(f.type)) {
    invalidate_table(frame, level);
    ++counters_.tables_invalidated;
  }
  f.type = FrameType::None;
}

int64_t DirectPaging::get_entry(uint64_t entry, unsigned level, unsigned index) {
  if (!(entry & kPresent) || vmm_slot(level, index)) return 0;
  if (entry & kLargePage) {
    if (level != 2 || (entry & kLargeReserved)) return error(PV_EINVAL);  // 1 GiB pages: not offered
    const uint64_t base = entry & kLargeAddress;
    if (int64_t r = check_owned(base, kLargePageBytes)) return r;
    if (!(entry & kWritable)) return 0;
    for (uint64_t page = base; page < base + kLargePageBytes; page += kPageBytes) {
      if (int64_t r = get_type(page, FrameType::Writable)) {
        for (uint64_t taken = base; taken < page; taken += kPageBytes) put_type(taken);
        return r;
      }
    }
    return 0;
  }
  const uint64_t target = entry & kAddress;
  if (int64_t r = check_owned(target, kPageBytes)) return r;
  if (level == 1) return (entry & kWritable) ? get_type(target, FrameType::Writable) : 0;
  return get_type(target, table_type(level - 1));
}

void DirectPaging::put_entry(uint64_t entry, unsigned level, unsigned index) {
  if (!(entry & kPresent) || vmm_slot(level, index)) return;
  if (entry & kLargePage) {
    if (!(entry & kWritable)) return;
    const uint64_t base = entry & kLargeAddress;
    for (uint64_t page = base; page < base + kLargePageBytes; page += kPageBytes) put_type(page);
    return;
  }
  if (level == 1 && !(entry & kWritable)) return;
  put_type(entry & kAddress);
}

int64_t DirectPaging::validate_table(uint64_t frame, unsigned level) {
  for (unsigned i = 0; i < kEntries; ++i) {
    if (int64_t r = get_entry(read_entry(frame + 8 * i), level, i)) {
      for (unsigned k = 0; k < i; ++k) put_entry(read_entry(frame + 8 * k), level, k);
      return r;
    }
  }
  return 0;
}

void DirectPaging::invalidate_table(uint64_t frame, unsigned level) {
  for (unsigned i = 0; i < kEntries; ++i) put_entry(read_entry(frame + 8 * i), level, i);
}

int64_t DirectPaging::count(int64_t result) {
  ++counters_.validations;
  if (result < 0) ++counters_.refusals;
  return result;
}

int64_t DirectPaging::update(uint64_t ptr, uint64_t value) {
  if (ptr & 7) return count(error(PV_EINVAL));
  if (int64_t r = check_owned(ptr, 8)) return count(r);
  const Frame& f = frames_[ptr / kPageBytes];
  const unsigned level = f.count > 0 ? table_level(f.type) : 0;
  if (level == 0) {  // not a page table (yet): an ordinary write, checked when it becomes one
    write_entry(ptr, value);
    ++counters_.plain_writes;
    return count(0);
  }
  const unsigned index = static_cast<unsigned>((ptr & (kPageBytes - 1)) / 8);
  if (vmm_slot(level, index)) return count(error(PV_EPERM));
  const uint64_t old = read_entry(ptr);
  // The new entry's references first: if the old one held the only reference to a table the new
  // one keeps, dropping it first would invalidate that table only to validate it again.
  if (int64_t r = get_entry(value, level, index)) return count(r);
  write_entry(ptr, value);
  put_entry(old, level, index);
  ++counters_.updates;
  return count(0);
}

int64_t DirectPaging::update_batch(const pv_mmu_update* requests, uint64_t n, uint64_t* done) {
  uint64_t applied = 0;
  int64_t result = static_cast<int64_t>(n);
  for (; applied < n; ++applied) {
    if (int64_t r = update(requests[applied].ptr, requests[applied].value)) {
      result = r;
      break;
    }
  }
  if (done) *done = applied;
  return result;
}

int64_t DirectPaging::pin(uint64_t frame, unsigned level) {
  if ((frame & (kPageBytes - 1)) || level < 1 || level > 4) return count(error(PV_EINVAL));
  if (int64_t r = check_owned(frame, kPageBytes)) return count(r);
  Frame& f = frames_[frame / kPageBytes];
  if (f.pinned) return count(error(PV_EINVAL));
  if (int64_t r = get_type(frame, table_type(level))) return count(r);
  f.pinned = true;
  return count(0);
}

int64_t DirectPaging::unpin(uint64_t frame) {
  if (frame & (kPageBytes - 1)) return count(error(PV_EINVAL));
  if (int64_t r = check_owned(frame, kPageBytes)) return count(r);
  Frame& f = frames_[frame / kPageBytes];
  if (!f.pinned) return count(error(PV_ENOENT));
  if (frame == kernel_root_ || frame == user_root_) return count(error(PV_EBUSY));
  f.pinned = false;
  put_type(frame);
  return count(0);
}

int64_t DirectPaging::load_roots(uint64_t kernel_root, uint64_t user_root) {
  if (!kernel_root || (kernel_root & (kPageBytes - 1)) || (user_root & (kPageBytes - 1)))
    return count(error(PV_EINVAL));
  if (int64_t r = get_type(kernel_root, FrameType::L4)) return count(r);
  if (user_root) {
    if (int64_t r = get_type(user_root, FrameType::L4)) {
      put_type(kernel_root);
      return count(r);
    }
  }
  if (kernel_root_) put_type(kernel_root_);
  if (user_root_) put_type(user_root_);
  kernel_root_ = kernel_root;
  user_root_ = user_root;
  return count(0);
}

}  // namespace pgsim::vmm
