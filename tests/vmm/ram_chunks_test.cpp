// The shuffled EPT layout's move of guest RAM through host RAM (move_ram_chunks): after it, each
// chunk's contents are at its new place, whatever the permutation's cycles, fixed points and zero
// chunks, and on a bus whose pages lie apart in host memory.
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <vector>

#include "models/vmm/hw_assist.h"
#include "tests/isa/harness.h"

namespace pgsim {
namespace {

constexpr uint64_t kBase = 0x400000, kChunk = 3 * 4096, kChunks = 8;

// The chunk's bytes at `at`, page by page through the bus.
std::vector<uint8_t> chunk_at(test::FlatRam& ram, uint64_t at) {
  std::vector<uint8_t> bytes(kChunk);
  for (uint64_t off = 0; off < kChunk; off += 4096) std::memcpy(&bytes[off], ram.host_frame(at + off), 4096);
  return bytes;
}

TEST(MoveRamChunks, EveryChunksContentsEndAtItsNewPlace) {
  // Chunks 2 and 5 hold zeros; chunk 6 is zero but for its last byte; the others a pattern.
  auto fill = [](test::FlatRam& ram) {
    for (uint64_t c = 0; c < kChunks; ++c) {
      if (c == 2 || c == 5) continue;
      for (uint64_t k = 0; k < kChunk; ++k) {
        const uint8_t byte = c == 6 ? (k == kChunk - 1 ? 0x5A : 0) : static_cast<uint8_t>(c * 37 + k);
        const uint64_t at = kBase + c * kChunk + k;
        ram.host_frame(at)[at & 0xFFF] = byte;
      }
    }
  };
  // i -> (5i + 4) mod 8 (the layout's formula: cycles (0 4) (2 6) and four fixed points), a
  // rotation (one cycle of 8), and one that sends the zero chunks onto patterned ones and back.
  const std::vector<std::vector<uint64_t>> permutations = {
      {4, 1, 6, 3, 0, 5, 2, 7}, {3, 4, 5, 6, 7, 0, 1, 2}, {2, 5, 0, 1, 7, 3, 4, 6}};
  for (const auto& places : permutations) {
    test::FlatRam ram;
    fill(ram);
    std::vector<std::vector<uint8_t>> before;
    for (uint64_t c = 0; c < kChunks; ++c) before.push_back(chunk_at(ram, kBase + c * kChunk));
    std::vector<uint64_t> hosts;
    for (uint64_t p : places) hosts.push_back(kBase + p * kChunk);
    vmm::move_ram_chunks(ram, kBase, kChunk, hosts);
    for (uint64_t c = 0; c < kChunks; ++c) EXPECT_EQ(chunk_at(ram, hosts[c]), before[c]) << "chunk " << c;
  }
}

// The bus of a FlatRam that records the frames asked for.
class RecordingBus : public isa::PhysicalBus {
 public:
  explicit RecordingBus(test::FlatRam& ram) : ram_(ram) {}
  uint8_t* host_frame(uint64_t paddr) override {
    frames.insert(paddr >> 12);
    return ram_.host_frame(paddr);
  }
  uint64_t read(uint64_t paddr, unsigned size) override { return ram_.read(paddr, size); }
  void write(uint64_t paddr, unsigned size, uint64_t value) override { ram_.write(paddr, size, value); }
  std::set<uint64_t> frames;

 private:
  test::FlatRam& ram_;
};

// A chunk the platform knows to be untouched is not read; when it receives zeros it stays untouched.
TEST(MoveRamChunks, AChunkKnownUntouchedThatReceivesZerosIsNeverReached) {
  test::FlatRam ram;
  for (uint64_t c : {0, 1, 3, 4, 6, 7})
    for (uint64_t off = 0; off < kChunk; off += 4096) ram.host_frame(kBase + c * kChunk + off)[0] = static_cast<uint8_t>(c + 1);
  RecordingBus bus(ram);
  auto untouched = [](uint64_t paddr, uint64_t size) {
    return size == kChunk && (paddr == kBase + 2 * kChunk || paddr == kBase + 5 * kChunk);
  };
  // 2 -> 5: chunk 5 receives chunk 2's zeros; 5 -> 0: chunk 0 receives chunk 5's zeros.
  std::vector<uint64_t> hosts;
  for (uint64_t p : {3, 4, 5, 6, 7, 0, 1, 2}) hosts.push_back(kBase + p * kChunk);
  vmm::move_ram_chunks(bus, kBase, kChunk, hosts, untouched);
  for (uint64_t off = 0; off < kChunk; off += 4096) {
    EXPECT_FALSE(bus.frames.count((kBase + 5 * kChunk + off) >> 12)) << "chunk 5, offset " << off;
    EXPECT_EQ(ram.host_frame(kBase + 0 * kChunk + off)[0], 0);  // chunk 5's zeros
    EXPECT_EQ(ram.host_frame(kBase + 2 * kChunk + off)[0], 8);  // chunk 7's
    EXPECT_EQ(ram.host_frame(kBase + 3 * kChunk + off)[0], 1);  // chunk 0's
  }
}

TEST(MoveRamChunks, NewPlacesThatAreNotAPermutationAreRefused) {
  test::FlatRam ram;
  EXPECT_THROW(vmm::move_ram_chunks(ram, kBase, kChunk, {kBase, kBase}), std::invalid_argument);
  EXPECT_THROW(vmm::move_ram_chunks(ram, kBase, kChunk, {kBase + kChunk, kBase + 2 * kChunk}), std::invalid_argument);
  EXPECT_THROW(vmm::move_ram_chunks(ram, kBase, kChunk, {kBase + 1, kBase}), std::invalid_argument);
  EXPECT_THROW(vmm::move_ram_chunks(ram, kBase, 100, {kBase}), std::invalid_argument);
}

}  // namespace
}  // namespace pgsim
