// MOVS, STOS, LODS, CMPS, SCAS with REP / REPE / REPNE (SDM vol. 2). The source segment is DS
// unless overridden; the destination is always ES:rDI. Index and count registers have the
// address size. Each iteration commits its registers after its memory accesses, so a fault in
// the middle leaves a restartable state (RIP still at the instruction); so does the core's step
// limit, which stops a long REP between two iterations (Core::suspend_instruction).
#include <algorithm>
#include <cstring>

#include "isa/integer/semantics.h"

namespace pgsim::isa::integer {
namespace {

enum class StringOp { Movs, Stos, Lods, Cmps, Scas };

// REP STOS and REP MOVS, forward (the caller checks DF and Core::direct_spans()), over whole
// elements within one page of each operand that the soft TLB maps directly (Core::direct_span): up
// to `limit` iterations as one host fill or copy, with the registers and counts those iterations
// leave. Returns how many it did; 0 leaves the next iteration to the per-access path. A copy whose
// destination starts inside its source repeats a pattern element by element, which a host copy
// does not: it takes the per-access path.
template <class T, StringOp kOp> uint64_t direct_run(Core& c, SegReg src, unsigned as, uint64_t limit) {
  auto& g = c.state().gpr;
  const uint64_t mask = Core::size_mask(as);
  // Whole elements before the index wraps at the address size (a source with an FS or GS base may
  // wrap inside its page).
  auto before_wrap = [&](uint64_t index) -> uint64_t {
    return as == 8 ? ~uint64_t{0} : (mask - index + 1) / sizeof(T);
  };
  const uint64_t di = g[RDI] & mask;
  const Core::DirectSpan dst = c.direct_span(ES, di, AccessKind::Write);
  uint64_t n = std::min<uint64_t>({limit, dst.bytes / sizeof(T), before_wrap(di)});
  if (n == 0) return 0;
  if constexpr (kOp == StringOp::Stos) {
    const T value = c.gpr<T>(RAX);
    for (uint64_t k = 0; k < n; ++k) std::memcpy(dst.host + k * sizeof(T), &value, sizeof(T));
    c.count_dtlb_hits(n);
  } else {
    const uint64_t si = g[RSI] & mask;
    const Core::DirectSpan from = c.direct_span(src, si, AccessKind::Read);
    n = std::min<uint64_t>({n, from.bytes / sizeof(T), before_wrap(si)});
    const auto to = reinterpret_cast<uintptr_t>(dst.host), at = reinterpret_cast<uintptr_t>(from.host);
    if (n == 0 || (to > at && to < at + n * sizeof(T))) return 0;
    std::memmove(dst.host, from.host, n * sizeof(T));
    c.count_dtlb_hits(2 * n);
    c.set_gpr_sized(RSI, si + n * sizeof(T), as);
  }
  c.set_gpr_sized(RDI, di + n * sizeof(T), as);
  c.set_gpr_sized(RCX, g[RCX] - n, as);
  return n;
}

template <class T, StringOp kOp> void string_op(Core& c, const Insn& i) {
  const unsigned as = i.addrsize;
  const uint64_t mask = Core::size_mask(as);
  const uint64_t step = c.flag(DF) ? -static_cast<uint64_t>(sizeof(T)) : sizeof(T);
  const SegReg src = static_cast<SegReg>(i.string_seg);
  const bool repeated = i.rep() || i.repne();
  uint64_t iterations = 0;
  const uint64_t allowance = repeated ? c.string_iteration_allowance() : 1;
  auto& g = c.state().gpr;
  // Whether runs of iterations may go as host copies: decided once, per page only the soft TLB.
  const bool direct = (kOp == StringOp::Movs || kOp == StringOp::Stos) && repeated && step == sizeof(T) &&
                      c.direct_spans();
  // The iterations made before a fault count, as those before a suspension do: the processor made
  // them, and their registers stay (SDM vol. 1, 7.3.9.1).
  try {
    for (;;) {
      if (repeated && (g[RCX] & mask) == 0) break;
      if constexpr (kOp == StringOp::Movs || kOp == StringOp::Stos) {
        if (direct) {
          if (const uint64_t n = direct_run<T, kOp>(c, src, as, std::min(g[RCX] & mask, allowance - iterations))) {
            iterations += n;
            if (c.suspend_at_allowance(iterations, allowance, g[RCX] & mask)) break;
            continue;
          }
        }
      }
      // A page fault is raised (Core::load, Core::store) and ends the instruction here: the
      // iterations before it keep the registers they left.
      const uint64_t si = g[RSI] & mask, di = g[RDI] & mask;
      bool equal = true;
      if constexpr (kOp == StringOp::Movs) {
        T v;
        if (!c.load<T>(src, si, &v) || !c.store<T>(ES, di, v)) break;
        c.set_gpr_sized(RSI, si + step, as);
        c.set_gpr_sized(RDI, di + step, as);
      } else if constexpr (kOp == StringOp::Stos) {
        if (!c.store<T>(ES, di, c.gpr<T>(RAX))) break;
        c.set_gpr_sized(RDI, di + step, as);
      } else if constexpr (kOp == StringOp::Lods) {
        T v;
        if (!c.load<T>(src, si, &v)) break;
        c.set_gpr<T>(RAX, v);
        c.set_gpr_sized(RSI, si + step, as);
      } else if constexpr (kOp == StringOp::Cmps) {
        T a, b;
        if (!c.load<T>(src, si, &a) || !c.load<T>(ES, di, &b)) break;
        c.set_flags_sub<T>(a, b, static_cast<T>(a - b));
        c.set_gpr_sized(RSI, si + step, as);
        c.set_gpr_sized(RDI, di + step, as);
        equal = a == b;
      } else {
        const T a = c.gpr<T>(RAX);
        T b;
        if (!c.load<T>(ES, di, &b)) break;
        c.set_flags_sub<T>(a, b, static_cast<T>(a - b));
        c.set_gpr_sized(RDI, di + step, as);
        equal = a == b;
      }
      ++iterations;
      if (!repeated) break;
      c.set_gpr_sized(RCX, g[RCX] - 1, as);
      if constexpr (kOp == StringOp::Cmps || kOp == StringOp::Scas) {
        if (i.rep() && !equal) break;    // REPE: stop on a difference
        if (i.repne() && equal) break;   // REPNE: stop on a match
      }
      if (c.suspend_at_allowance(iterations, allowance, g[RCX] & mask)) break;  // the step limit
    }
  } catch (...) {
    c.count_string_iterations(iterations);
    throw;
  }
  c.count_string_iterations(iterations);
}

template <StringOp kOp> void register_sizes(Dispatch& d, unsigned b, unsigned w, unsigned dw, unsigned q) {
  d.add(b, InsnClass::String, &string_op<uint8_t, kOp>);
  d.add(w, InsnClass::String, &string_op<uint16_t, kOp>);
  d.add(dw, InsnClass::String, &string_op<uint32_t, kOp>);
  d.add(q, InsnClass::String, &string_op<uint64_t, kOp>);
}

}  // namespace

void register_string(Dispatch& d) {
  register_sizes<StringOp::Movs>(d, ZYDIS_MNEMONIC_MOVSB, ZYDIS_MNEMONIC_MOVSW, ZYDIS_MNEMONIC_MOVSD, ZYDIS_MNEMONIC_MOVSQ);
  register_sizes<StringOp::Stos>(d, ZYDIS_MNEMONIC_STOSB, ZYDIS_MNEMONIC_STOSW, ZYDIS_MNEMONIC_STOSD, ZYDIS_MNEMONIC_STOSQ);
  register_sizes<StringOp::Lods>(d, ZYDIS_MNEMONIC_LODSB, ZYDIS_MNEMONIC_LODSW, ZYDIS_MNEMONIC_LODSD, ZYDIS_MNEMONIC_LODSQ);
  register_sizes<StringOp::Cmps>(d, ZYDIS_MNEMONIC_CMPSB, ZYDIS_MNEMONIC_CMPSW, ZYDIS_MNEMONIC_CMPSD, ZYDIS_MNEMONIC_CMPSQ);
  register_sizes<StringOp::Scas>(d, ZYDIS_MNEMONIC_SCASB, ZYDIS_MNEMONIC_SCASW, ZYDIS_MNEMONIC_SCASD, ZYDIS_MNEMONIC_SCASQ);
}

}  // namespace pgsim::isa::integer
