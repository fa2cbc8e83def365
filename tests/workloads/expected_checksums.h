// The checksum every benchmark of the pgsim kernel must print, computed on the host from the
// benchmark's definition (workloads/kernel/bench.c and user/user_bench.c describe them), not from
// anything the guest printed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace pgsim::guest_test {

// std::nullopt for a name that is not a benchmark.
// working_set_bytes is memwalk's ws=, forkwait_pages forkwait's pages=.
std::optional<uint64_t> expected_checksum(const std::string& bench, uint64_t iters,
                                          uint64_t working_set_bytes, uint64_t forkwait_pages = 0);

}  // namespace pgsim::guest_test
