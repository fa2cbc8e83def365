// A set of guest frame numbers that remembers its last answer. The VMM asks whether a frame is a
// page table, the GDT or translated code at every write it emulates, and a guest's writes come in
// runs to one frame (a REP STOS zeroing a page asks 512 times): the run asks the hash set once.
#pragma once
#include <cstdint>
#include <unordered_set>

namespace pgsim::vmm {

class FrameSet {
 public:
  bool contains(uint64_t frame) const {
    if (frame != last_frame_) {
      last_frame_ = frame;
      last_answer_ = frames_.count(frame) != 0;
    }
    return last_answer_;
  }
  // True when `frame` was not in the set.
  bool insert(uint64_t frame) {
    forget();
    return frames_.insert(frame).second;
  }
  void erase(uint64_t frame) {
    forget();
    frames_.erase(frame);
  }
  void clear() {
    forget();
    frames_.clear();
  }
  auto begin() const { return frames_.begin(); }
  auto end() const { return frames_.end(); }

 private:
  void forget() { last_frame_ = kNone; }
  static constexpr uint64_t kNone = ~0ull;  // no frame number (at most 52 bits)
  std::unordered_set<uint64_t> frames_;
  mutable uint64_t last_frame_ = kNone;
  mutable bool last_answer_ = false;
};

}  // namespace pgsim::vmm
