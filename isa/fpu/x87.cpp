// The x87 FPU (SDM vol. 1, ch. 8; vol. 2): loads, stores and integer conversions, the basic
// arithmetic, compares, the constants, stack management, control and status words, and the
// environment and state images of FNSTENV/FLDENV/FNSAVE/FRSTOR. Arithmetic and conversions run on
// the host's x87 unit under the guest's precision and rounding control with every exception
// masked; the guest's masks then decide what is only flagged and what becomes pending (#MF at the
// next waiting x87 instruction, SDM vol. 1, 8.6).
#include <string>

#include "isa/decoder.h"
#include "isa/fpu/fpu.h"

namespace pgsim::isa::fpu {

void x87_update_summary(FpuState& f) {
  const bool pending = f.fsw & ~f.fcw & 0x3F;
  f.fsw = static_cast<uint16_t>(pending ? f.fsw | FSW_ES | FSW_B : f.fsw & ~(FSW_ES | FSW_B));
}

uint16_t x87_control_word(uint32_t v) { return static_cast<uint16_t>((v & 0x1F3F) | 0x40); }

void x87_reset(FpuState& f) {
  f.fcw = kFcwReset;
  f.fsw = 0;
  f.ftw = 0;
  f.fop = 0;
  f.fip = f.fdp = 0;
  f.fcs = f.fds = 0;
}

namespace {

constexpr uint16_t kExceptionFlags = 0x3F;
constexpr uint16_t kPreComputation = FSW_IE | FSW_DE | FSW_ZE;
const Float80 kIndefinite{0xC000000000000000ull, 0xFFFF};  // the default QNaN of masked invalid operations

struct Bytes10 {
  unsigned char b[10];
};
Bytes10 bytes(const Float80& f) {
  Bytes10 r;
  std::memcpy(r.b, &f.significand, 8);
  std::memcpy(r.b + 8, &f.sign_exponent, 2);
  return r;
}
Float80 float80(const Bytes10& r) {
  Float80 f;
  std::memcpy(&f.significand, r.b, 8);
  std::memcpy(&f.sign_exponent, r.b + 8, 2);
  return f;
}

// The host x87 control words for one operation: the guest's with every exception masked, and the
// host's own to restore.
struct HostControl {
  uint16_t guest;
  uint16_t host;
  explicit HostControl(uint16_t fcw) : guest(static_cast<uint16_t>(fcw | kExceptionFlags)) {
    asm volatile("fnstcw %0" : "=m"(host));
  }
};

// One host x87 sequence on the input `in` (or `first` and `second`) with the result in `out`; the
// sequence stores the status word in `sw` right after the operation whose C1 and flags count.
#define PGSIM_X87(sequence, out, in, sw, ctl)                                                         \
  asm volatile("fldcw %[cw]\n\tfnclex\n\t" sequence "\n\tfldcw %[host]"                            \
               : [o] "=m"(out), [sw] "=m"(sw)                                                        \
               : [i] "m"(in), [cw] "m"(ctl.guest), [host] "m"(ctl.host))
#define PGSIM_X87_2(sequence, out, first, second, sw, ctl)                                                     \
  asm volatile("fldcw %[cw]\n\tfnclex\n\t" sequence "\n\tfldcw %[host]"                            \
               : [o] "=m"(out), [sw] "=m"(sw)                                                        \
               : [a] "m"(first), [b] "m"(second), [cw] "m"(ctl.guest), [host] "m"(ctl.host))

FpuState& fpu_of(Core& c) { return c.state().fpu; }
unsigned top(const FpuState& f) { return (f.fsw >> kFswTopShift) & 7; }
void set_top(FpuState& f, unsigned t) { f.fsw = static_cast<uint16_t>((f.fsw & ~FSW_TOP) | ((t & 7) << kFswTopShift)); }
unsigned physical(const FpuState& f, unsigned i) { return (top(f) + i) & 7; }
bool empty(const FpuState& f, unsigned i) { return !(f.ftw >> physical(f, i) & 1); }
Float80& st(FpuState& f, unsigned i) { return f.st[physical(f, i)]; }


// Flags exceptions `raised` (with C1 as the operation left it); true when the result may be
// written, i.e. unless an unmasked invalid, denormal or divide-by-zero exception occurred.
bool flag(FpuState& f, uint16_t raised) {
  f.fsw = static_cast<uint16_t>((f.fsw & ~FSW_C1) | (raised & (kExceptionFlags | FSW_SF | FSW_C1)));
  x87_update_summary(f);
  return !(raised & ~f.fcw & kPreComputation);
}

// Waiting x87 instructions: #NM (CR0.EM/TS), then a pending unmasked exception as #MF.
void begin(Core& c, const Insn& i, bool waiting = true) {
  require_x87(c);
  FpuState& f = fpu_of(c);
  if (waiting && (f.fsw & FSW_ES)) throw Fault{MF, false, 0, 0};
  if (!waiting) return;
  f.fip = c.state().rip;
  f.fcs = c.state().seg[CS].selector;
  f.fop = i.x87_opcode;
  for (unsigned k = 0; k < i.num_ops; ++k) {
    if (i.op[k].kind != OpKind::Mem) continue;
    f.fdp = c.effective_address(i, i.op[k]);
    f.fds = c.state().seg[i.op[k].seg].selector;
  }
}

// Stack faults (SDM vol. 1, 8.5.1.1): invalid with SF; C1 says overflow (1) or underflow (0).
bool stack_underflow(FpuState& f) { return flag(f, FSW_IE | FSW_SF); }
bool stack_overflow(FpuState& f) { return flag(f, FSW_IE | FSW_SF | FSW_C1); }

void push(FpuState& f, const Float80& v) {
  set_top(f, top(f) - 1);
  f.st[top(f)] = v;
  f.ftw = static_cast<uint8_t>(f.ftw | 1u << top(f));
}
void pop(FpuState& f) {
  f.ftw = static_cast<uint8_t>(f.ftw & ~(1u << top(f)));
  set_top(f, top(f) + 1);
}

// The masked response to a stack underflow: ST(i) becomes the indefinite.
void set_indefinite(FpuState& f, unsigned i) {
  st(f, i) = kIndefinite;
  f.ftw = static_cast<uint8_t>(f.ftw | 1u << physical(f, i));
}

// Pushes a loaded value, or handles a full stack: with IE masked the indefinite is pushed.
void push_checked(FpuState& f, const Float80& v, uint16_t raised) {
  if (!empty(f, 7)) {
    if (stack_overflow(f)) push(f, kIndefinite);
    return;
  }
  if (flag(f, raised)) push(f, v);
}

// ---- Loads and stores ---------------------------------------------------------------------------

// The memory operand converted to double extended: m32/m64 floating point, m16/m32/m64 integers,
// or m80 as it is. `status` receives what the conversion raised (invalid for an SNaN, denormal).
Float80 load_value(Core& c, const Insn& i, const Operand& m, bool integer, uint16_t* status) {
  const Xmm raw = read_operand_memory(c, i, m, m.size);
  if (m.size == 10 && !integer) {
    *status = 0;
    return Float80{raw.q[0], static_cast<uint16_t>(raw.q[1])};
  }
  HostControl ctl(fpu_of(c).fcw);
  Bytes10 out;
  uint16_t sw = 0;
  const uint64_t in = raw.q[0];
  if (integer && m.size == 2) PGSIM_X87("filds %[i]\n\tfnstsw %[sw]\n\tfstpt %[o]", out, in, sw, ctl);
  else if (integer && m.size == 4) PGSIM_X87("fildl %[i]\n\tfnstsw %[sw]\n\tfstpt %[o]", out, in, sw, ctl);
  else if (integer) PGSIM_X87("fildll %[i]\n\tfnstsw %[sw]\n\tfstpt %[o]", out, in, sw, ctl);
  else if (m.size == 4) PGSIM_X87("flds %[i]\n\tfnstsw %[sw]\n\tfstpt %[o]", out, in, sw, ctl);
  else PGSIM_X87("fldl %[i]\n\tfnstsw %[sw]\n\tfstpt %[o]", out, in, sw, ctl);
  *status = sw;
  return float80(out);
}

// FLD m32/m64/m80 / ST(i); FILD m16/m32/m64.
template <bool Integer> void fld(Core& c, const Insn& i) {
  begin(c, i);
  FpuState& f = fpu_of(c);
  const Operand& src = i.op[0];
  if (src.kind == OpKind::X87) {
    if (empty(f, src.reg)) {
      if (stack_underflow(f)) push(f, kIndefinite);
      return;
    }
    push_checked(f, st(f, src.reg), 0);
    return;
  }
  uint16_t status;
  const Float80 v = load_value(c, i, src, Integer, &status);
  push_checked(f, v, static_cast<uint16_t>(status & kExceptionFlags));
}

// The host rounds ST(0) into the destination format: float m32/m64, or integer m16/m32/m64
// (FIST with the rounding control, FISTTP truncating). Returns the bytes and the raised status.
enum class StoreKind { Float, Integer, Truncate };
uint64_t store_value(Core& c, const Float80& v, unsigned size, StoreKind kind, uint16_t* status) {
  HostControl ctl(fpu_of(c).fcw);
  const Bytes10 in = bytes(v);
  uint64_t out = 0;
  uint16_t sw = 0;
  if (kind == StoreKind::Float) {
    if (size == 4) PGSIM_X87("fldt %[i]\n\tfstps %[o]\n\tfnstsw %[sw]", out, in, sw, ctl);
    else PGSIM_X87("fldt %[i]\n\tfstpl %[o]\n\tfnstsw %[sw]", out, in, sw, ctl);
  } else if (kind == StoreKind::Integer) {
    if (size == 2) PGSIM_X87("fldt %[i]\n\tfistps %[o]\n\tfnstsw %[sw]", out, in, sw, ctl);
    else if (size == 4) PGSIM_X87("fldt %[i]\n\tfistpl %[o]\n\tfnstsw %[sw]", out, in, sw, ctl);
    else PGSIM_X87("fldt %[i]\n\tfistpll %[o]\n\tfnstsw %[sw]", out, in, sw, ctl);
  } else {
    if (size == 2) PGSIM_X87("fldt %[i]\n\tfisttps %[o]\n\tfnstsw %[sw]", out, in, sw, ctl);
    else if (size == 4) PGSIM_X87("fldt %[i]\n\tfisttpl %[o]\n\tfnstsw %[sw]", out, in, sw, ctl);
    else PGSIM_X87("fldt %[i]\n\tfisttpll %[o]\n\tfnstsw %[sw]", out, in, sw, ctl);
  }
  *status = sw;
  return size == 8 ? out : out & Core::size_mask(size);
}

// FST/FSTP m32/m64/m80/ST(i); FIST/FISTP m16/m32/m64; FISTTP.
template <StoreKind Kind, bool Pop> void fst(Core& c, const Insn& i) {
  begin(c, i);
  FpuState& f = fpu_of(c);
  const Operand& dst = i.op[0];
  const bool underflow = empty(f, 0);
  Float80 v = underflow ? kIndefinite : st(f, 0);
  if (underflow && !stack_underflow(f)) return;
  if (dst.kind == OpKind::X87 || (dst.size == 10 && Kind == StoreKind::Float)) {
    if (!underflow) flag(f, 0);  // no rounding: C1 cleared
  }
  if (dst.kind == OpKind::X87) {
    st(f, dst.reg) = v;
    f.ftw = static_cast<uint8_t>(f.ftw | 1u << physical(f, dst.reg));
  } else if (dst.size == 10 && Kind == StoreKind::Float) {
    write_operand_memory(c, i, dst, Xmm{{v.significand, v.sign_exponent}}, 10);
  } else {
    uint16_t status = 0;
    const uint64_t out = store_value(c, v, dst.size, Kind, &status);
    if (!underflow && !flag(f, status)) return;
    write_operand_memory(c, i, dst, Xmm{{out, 0}}, dst.size);
  }
  if (Pop) pop(f);
}

// ---- Arithmetic ---------------------------------------------------------------------------------

enum class Arith { Add, Sub, Mul, Div };

// a OP b on the host.
Float80 host_arith(Core& c, Arith op, const Float80& a, const Float80& b, uint16_t* status) {
  HostControl ctl(fpu_of(c).fcw);
  const Bytes10 x = bytes(a), y = bytes(b);
  Bytes10 out;
  uint16_t sw = 0;
#define PGSIM_ARITH(insn) \
  PGSIM_X87_2("fldt %[b]\n\tfldt %[a]\n\t" insn " %%st(1), %%st\n\tfnstsw %[sw]\n\tfstpt %[o]\n\tfstp %%st(0)", out, x, y, \
              sw, ctl)
  switch (op) {
    case Arith::Add: PGSIM_ARITH("fadd"); break;
    case Arith::Sub: PGSIM_ARITH("fsub"); break;
    case Arith::Mul: PGSIM_ARITH("fmul"); break;
    case Arith::Div: PGSIM_ARITH("fdiv"); break;
  }
#undef PGSIM_ARITH
  *status = sw;
  return float80(out);
}

// ST(0) op m on the host, with the memory operand as the instruction reads it (its conversion and
// the operation raise exceptions together, with the hardware's priorities): m32/m64 floating
// point or m16/m32 integers; Reverse: m op ST(0).
Float80 host_arith_memory(Core& c, Arith op, bool reverse, bool integer, unsigned size, const Float80& a,
                          uint64_t m, uint16_t* status) {
  HostControl ctl(fpu_of(c).fcw);
  const Bytes10 x = bytes(a);
  Bytes10 out;
  uint16_t sw = 0;
#define PGSIM_CASE(key, insn)                                                                                 \
  case key:                                                                                                   \
    PGSIM_X87_2("fldt %[a]\n\t" insn " %[b]\n\tfnstsw %[sw]\n\tfstpt %[o]", out, x, m, sw, ctl); \
    break;
  // key: operation (0 add, 1 sub, 2 subr, 3 mul, 4 div, 5 divr) * 4 + form (0 m32, 1 m64, 2 m16int, 3 m32int)
  const unsigned operation = op == Arith::Add ? 0 : op == Arith::Sub ? (reverse ? 2 : 1) : op == Arith::Mul ? 3 : (reverse ? 5 : 4);
  const unsigned form = integer ? (size == 2 ? 2 : 3) : (size == 4 ? 0 : 1);
  switch (operation * 4 + form) {
    PGSIM_CASE(0, "fadds") PGSIM_CASE(1, "faddl") PGSIM_CASE(2, "fiadds") PGSIM_CASE(3, "fiaddl")
    PGSIM_CASE(4, "fsubs") PGSIM_CASE(5, "fsubl") PGSIM_CASE(6, "fisubs") PGSIM_CASE(7, "fisubl")
    PGSIM_CASE(8, "fsubrs") PGSIM_CASE(9, "fsubrl") PGSIM_CASE(10, "fisubrs") PGSIM_CASE(11, "fisubrl")
    PGSIM_CASE(12, "fmuls") PGSIM_CASE(13, "fmull") PGSIM_CASE(14, "fimuls") PGSIM_CASE(15, "fimull")
    PGSIM_CASE(16, "fdivs") PGSIM_CASE(17, "fdivl") PGSIM_CASE(18, "fidivs") PGSIM_CASE(19, "fidivl")
    PGSIM_CASE(20, "fdivrs") PGSIM_CASE(21, "fdivrl") PGSIM_CASE(22, "fidivrs") PGSIM_CASE(23, "fidivrl")
    default: break;
  }
#undef PGSIM_CASE
  *status = sw;
  return float80(out);
}

// FADD/FSUB/FSUBR/FMUL/FDIV/FDIVR with a memory source (ST(0) = ST(0) op m), with two registers
// (dest = dest op src), the popping forms, and FIADD ... FIDIVR (an integer source). Reverse:
// src op dest (FSUBR, FDIVR).
template <Arith Op, bool Reverse, bool Pop, bool Integer> void arith(Core& c, const Insn& i) {
  begin(c, i);
  FpuState& f = fpu_of(c);
  unsigned dest = 0;
  Float80 src;
  const Operand& m = i.op[0];
  if (m.kind == OpKind::Mem) {
    const uint64_t raw = read_operand_memory(c, i, m, m.size).q[0];
    if (empty(f, 0)) {
      if (stack_underflow(f)) set_indefinite(f, 0);
      return;
    }
    uint16_t raised = 0;
    const Float80 r = host_arith_memory(c, Op, Reverse, Integer, m.size, st(f, 0), raw, &raised);
    if (flag(f, raised)) st(f, 0) = r;
    return;
  } else {
    dest = i.op[0].reg;
    if (empty(f, i.op[1].reg)) dest = 0xFF;  // flagged below
    else src = st(f, i.op[1].reg);
  }
  if (dest == 0xFF || empty(f, dest)) {
    if (dest == 0xFF) dest = i.op[0].reg;
    if (stack_underflow(f)) {
      set_indefinite(f, dest);
      if (Pop) pop(f);
    }
    return;
  }
  const Float80 d = st(f, dest);
  uint16_t raised = 0;
  const Float80 r = Reverse ? host_arith(c, Op, src, d, &raised) : host_arith(c, Op, d, src, &raised);
  if (!flag(f, raised)) return;
  st(f, dest) = r;
  if (Pop) pop(f);
}

// FSQRT and FRNDINT on ST(0).
template <bool Sqrt> void unary(Core& c, const Insn& i) {
  begin(c, i);
  FpuState& f = fpu_of(c);
  if (empty(f, 0)) {
    if (stack_underflow(f)) set_indefinite(f, 0);
    return;
  }
  HostControl ctl(f.fcw);
  const Bytes10 in = bytes(st(f, 0));
  Bytes10 out;
  uint16_t sw = 0;
  if (Sqrt) PGSIM_X87("fldt %[i]\n\tfsqrt\n\tfnstsw %[sw]\n\tfstpt %[o]", out, in, sw, ctl);
  else PGSIM_X87("fldt %[i]\n\tfrndint\n\tfnstsw %[sw]\n\tfstpt %[o]", out, in, sw, ctl);
  if (flag(f, sw)) st(f, 0) = float80(out);
}

// FCHS and FABS: the sign bit only, C1 cleared.
template <bool Abs> void sign(Core& c, const Insn& i) {
  begin(c, i);
  FpuState& f = fpu_of(c);
  if (empty(f, 0)) {
    if (stack_underflow(f)) set_indefinite(f, 0);
    return;
  }
  Float80& v = st(f, 0);
  v.sign_exponent = static_cast<uint16_t>(Abs ? v.sign_exponent & 0x7FFF : v.sign_exponent ^ 0x8000);
  f.fsw = static_cast<uint16_t>(f.fsw & ~FSW_C1);
}

// Loads a constant (FLD1, FLDZ, FLDPI, ...), rounded as the rounding control says.
template <unsigned Which> void fld_constant(Core& c, const Insn& i) {
  begin(c, i);
  FpuState& f = fpu_of(c);
  HostControl ctl(f.fcw);
  Bytes10 out;
  uint16_t sw = 0;
  const uint64_t none = 0;
  switch (Which) {
    case 0: PGSIM_X87("fld1\n\tfnstsw %[sw]\n\tfstpt %[o]", out, none, sw, ctl); break;
    case 1: PGSIM_X87("fldz\n\tfnstsw %[sw]\n\tfstpt %[o]", out, none, sw, ctl); break;
    case 2: PGSIM_X87("fldpi\n\tfnstsw %[sw]\n\tfstpt %[o]", out, none, sw, ctl); break;
    case 3: PGSIM_X87("fldl2e\n\tfnstsw %[sw]\n\tfstpt %[o]", out, none, sw, ctl); break;
    case 4: PGSIM_X87("fldl2t\n\tfnstsw %[sw]\n\tfstpt %[o]", out, none, sw, ctl); break;
    case 5: PGSIM_X87("fldlg2\n\tfnstsw %[sw]\n\tfstpt %[o]", out, none, sw, ctl); break;
    default: PGSIM_X87("fldln2\n\tfnstsw %[sw]\n\tfstpt %[o]", out, none, sw, ctl); break;
  }
  push_checked(f, float80(out), 0);
}

// ---- Compares -----------------------------------------------------------------------------------

// ST(0) compared with `b` on the host: ZF, PF, CF as FCOMI/FUCOMI set them. Signalling: FCOM
// (invalid for any NaN), else FUCOM (invalid for an SNaN only).
uint64_t host_compare(Core& c, const Float80& a, const Float80& b, bool signalling, uint16_t* status) {
  HostControl ctl(fpu_of(c).fcw);
  const Bytes10 x = bytes(a), y = bytes(b);
  bool z, p, carry;
  uint16_t sw = 0;
  if (signalling)
    asm volatile("fldcw %[cw]\n\tfnclex\n\tfldt %[b]\n\tfldt %[a]\n\tfcomip %%st(1), %%st\n\tfstp %%st(0)\n\t"
                 "fnstsw %[sw]\n\tfldcw %[host]"
                 : "=@ccz"(z), "=@ccp"(p), "=@ccc"(carry), [sw] "=m"(sw)
                 : [a] "m"(x), [b] "m"(y), [cw] "m"(ctl.guest), [host] "m"(ctl.host));
  else
    asm volatile("fldcw %[cw]\n\tfnclex\n\tfldt %[b]\n\tfldt %[a]\n\tfucomip %%st(1), %%st\n\tfstp %%st(0)\n\t"
                 "fnstsw %[sw]\n\tfldcw %[host]"
                 : "=@ccz"(z), "=@ccp"(p), "=@ccc"(carry), [sw] "=m"(sw)
                 : [a] "m"(x), [b] "m"(y), [cw] "m"(ctl.guest), [host] "m"(ctl.host));
  *status = static_cast<uint16_t>(sw & kExceptionFlags);
  return (z ? uint64_t{ZF} : 0) | (p ? uint64_t{PF} : 0) | (carry ? uint64_t{CF} : 0);
}

enum class CompareTo { Operand, St1, Zero };

// FCOM/FCOMP/FCOMPP, FUCOM/FUCOMP/FUCOMPP, FICOM(P), FTST (condition codes C3 C2 C0) and
// FCOMI/FCOMIP/FUCOMI/FUCOMIP (ZF PF CF, with OF SF AF cleared).
template <bool Signalling, unsigned Pops, CompareTo With, bool ToEflags, bool Integer = false>
void compare(Core& c, const Insn& i) {
  begin(c, i);
  FpuState& f = fpu_of(c);
  uint16_t status = 0;
  Float80 b;
  bool missing = empty(f, 0);
  if (With == CompareTo::Zero) {
    b = Float80{};
  } else if (With == CompareTo::St1) {
    missing = missing || empty(f, 1);
    b = st(f, 1);
  } else {
    const Operand& o = i.op[i.num_ops - 1];
    if (o.kind == OpKind::Mem) {
      b = load_value(c, i, o, Integer, &status);
      status &= kExceptionFlags;
    } else {
      missing = missing || empty(f, o.reg);
      b = st(f, o.reg);
    }
  }
  uint64_t flags = ZF | PF | CF;  // unordered
  if (missing) {
    if (!stack_underflow(f)) return;
  } else {
    uint16_t raised = 0;
    flags = host_compare(c, st(f, 0), b, Signalling, &raised);
    if (ToEflags) raised = static_cast<uint16_t>(raised | (f.fsw & FSW_C1));  // FCOMI leaves C1 alone
    if (!flag(f, static_cast<uint16_t>(status | raised))) return;
  }
  if (ToEflags) {
    c.set_flags(CF | PF | AF | ZF | SF | OF, flags);
  } else {
    const uint16_t cc = static_cast<uint16_t>(((flags & ZF) ? FSW_C3 : 0) | ((flags & PF) ? FSW_C2 : 0) |
                                              ((flags & CF) ? FSW_C0 : 0));
    f.fsw = static_cast<uint16_t>((f.fsw & ~(FSW_C3 | FSW_C2 | FSW_C0)) | cc);
  }
  for (unsigned k = 0; k < Pops; ++k) pop(f);
}

// FXAM: the class of ST(0) in C3 C2 C0, its sign in C1 (SDM vol. 2, FXAM).
void fxam(Core& c, const Insn& i) {
  begin(c, i);
  FpuState& f = fpu_of(c);
  const Float80& v = st(f, 0);
  const unsigned exponent = v.sign_exponent & 0x7FFF;
  const bool integer_bit = v.significand >> 63;
  const uint64_t fraction = v.significand << 1;
  uint16_t cc;
  if (empty(f, 0)) cc = FSW_C3 | FSW_C0;
  else if (exponent == 0x7FFF) cc = !integer_bit ? 0 : fraction ? FSW_C0 : FSW_C2 | FSW_C0;  // unsupported, NaN, infinity
  else if (exponent == 0) cc = v.significand ? FSW_C3 | FSW_C2 : FSW_C3;                     // denormal, zero
  else cc = integer_bit ? FSW_C2 : 0;                                                         // normal, unnormal
  if (v.sign_exponent & 0x8000) cc |= FSW_C1;
  f.fsw = static_cast<uint16_t>((f.fsw & ~(FSW_C3 | FSW_C2 | FSW_C1 | FSW_C0)) | cc);
}

// ---- Stack and control --------------------------------------------------------------------------

void fxch(Core& c, const Insn& i) {
  begin(c, i);
  FpuState& f = fpu_of(c);
  const unsigned r = i.num_ops ? i.op[0].reg : 1;
  if (empty(f, 0) || empty(f, r)) {
    if (!stack_underflow(f)) return;
    for (unsigned k : {0u, r}) {
      if (empty(f, k)) set_indefinite(f, k);
    }
  }
  std::swap(st(f, 0), st(f, r));
  f.fsw = static_cast<uint16_t>(f.fsw & ~FSW_C1);
}

void ffree(Core& c, const Insn& i) {
  begin(c, i);
  FpuState& f = fpu_of(c);
  f.ftw = static_cast<uint8_t>(f.ftw & ~(1u << physical(f, i.op[0].reg)));
  f.fsw = static_cast<uint16_t>(f.fsw & ~FSW_C1);  // the SDM leaves C0-C3 undefined; processors clear C1
}

template <int Delta> void step_top(Core& c, const Insn& i) {
  begin(c, i);
  FpuState& f = fpu_of(c);
  set_top(f, top(f) + Delta);
  f.fsw = static_cast<uint16_t>(f.fsw & ~FSW_C1);
}

void fninit(Core& c, const Insn& i) {
  begin(c, i, false);
  x87_reset(fpu_of(c));
}

void fnclex(Core& c, const Insn& i) {
  begin(c, i, false);
  FpuState& f = fpu_of(c);
  f.fsw = static_cast<uint16_t>(f.fsw & ~(kExceptionFlags | FSW_SF | FSW_ES | FSW_B));
}

// FWAIT: #NM only when both CR0.MP and CR0.TS are set; then a pending exception is #MF.
void fwait(Core& c, const Insn&) {
  const CpuState& s = c.state();
  if ((s.cr0 & CR0_MP) && (s.cr0 & CR0_TS)) throw device_not_available();
  if (s.fpu.fsw & FSW_ES) throw Fault{MF, false, 0, 0};
}

void fnstsw(Core& c, const Insn& i) {
  begin(c, i, false);
  const Operand& dst = i.op[0];
  if (dst.kind == OpKind::Reg) c.set_gpr<uint16_t>(RAX, fpu_of(c).fsw);
  else c.set<uint16_t>(i, dst, fpu_of(c).fsw);
}

void fnstcw(Core& c, const Insn& i) {
  begin(c, i, false);
  c.set<uint16_t>(i, i.op[0], fpu_of(c).fcw);
}

void fldcw(Core& c, const Insn& i) {
  begin(c, i, false);
  FpuState& f = fpu_of(c);
  f.fcw = x87_control_word(c.get<uint16_t>(i, i.op[0]));
  x87_update_summary(f);
}

// ---- FNSTENV/FLDENV/FNSAVE/FRSTOR (32-bit protected-mode format, SDM vol. 1, figure 8-9) ---------

// The full tag word: 00 valid, 01 zero, 10 special (NaN, infinity, denormal, unsupported), 11 empty.
uint16_t full_tag_word(const FpuState& f) {
  uint16_t tags = 0;
  for (unsigned r = 0; r < 8; ++r) {
    unsigned tag = 3;
    if (f.ftw >> r & 1) {
      const Float80& v = f.st[r];
      const unsigned exponent = v.sign_exponent & 0x7FFF;
      if (exponent == 0 && v.significand == 0) tag = 1;
      else if (exponent == 0x7FFF || exponent == 0 || !(v.significand >> 63)) tag = 2;
      else tag = 0;
    }
    tags = static_cast<uint16_t>(tags | tag << (2 * r));
  }
  return tags;
}
uint8_t abridged_tags(uint16_t full) {
  uint8_t tags = 0;
  for (unsigned r = 0; r < 8; ++r) {
    if (((full >> (2 * r)) & 3) != 3) tags = static_cast<uint8_t>(tags | 1u << r);
  }
  return tags;
}

constexpr unsigned kEnvironmentSize = 28;

// Only the 32-bit protected-mode layout is modeled: the 16-bit and real-mode layouts are refused
// loudly (listed as unimplemented, #UD).
void require_32bit_layout(Core& c, const Insn& i, const char* mnemonic) {
  if (i.opsize == 2 || c.mode() == Mode::Real || c.mode() == Mode::Virtual8086) {
    c.record_unimplemented((std::string(mnemonic) + " (16-bit or real-mode layout)").c_str());
    throw Fault::ud();
  }
}

void store_environment(Core& c, const Insn& i, const FpuState& f, uint64_t at) {
  const SegReg s = static_cast<SegReg>(i.op[0].seg);
  const uint32_t words[7] = {0xFFFF0000u | f.fcw,
                             0xFFFF0000u | f.fsw,
                             0xFFFF0000u | full_tag_word(f),
                             static_cast<uint32_t>(f.fip),
                             static_cast<uint32_t>(f.fcs) | static_cast<uint32_t>(f.fop & 0x7FF) << 16,
                             static_cast<uint32_t>(f.fdp),
                             0xFFFF0000u | f.fds};
  for (unsigned k = 0; k < 7; ++k) c.write<uint32_t>(s, at + 4 * k, words[k]);
}

FpuState load_environment(Core& c, const Insn& i, FpuState f, uint64_t at) {
  const SegReg s = static_cast<SegReg>(i.op[0].seg);
  uint32_t words[7];
  for (unsigned k = 0; k < 7; ++k) words[k] = c.read<uint32_t>(s, at + 4 * k);
  f.fcw = x87_control_word(words[0]);
  f.fsw = static_cast<uint16_t>(words[1]);
  f.ftw = abridged_tags(static_cast<uint16_t>(words[2]));
  f.fip = words[3];
  f.fcs = static_cast<uint16_t>(words[4]);
  f.fop = static_cast<uint16_t>((words[4] >> 16) & 0x7FF);
  f.fdp = words[5];
  f.fds = static_cast<uint16_t>(words[6]);
  x87_update_summary(f);
  return f;
}

// FNSTENV/FLDENV (the environment) and FNSAVE/FRSTOR (with ST(0)..ST(7) after it; FNSAVE then
// initializes the FPU as FNINIT does). FNSTENV masks every exception after storing.
template <bool Save, bool Registers> void image(Core& c, const Insn& i) {
  begin(c, i, false);
  require_32bit_layout(c, i, Decoder::mnemonic_name(i.mnemonic));
  const SegReg s = static_cast<SegReg>(i.op[0].seg);
  const uint64_t at = c.effective_address(i, i.op[0]);
  FpuState& f = fpu_of(c);
  if (Save) {
    probe_write(c, s, at, kEnvironmentSize + (Registers ? 80 : 0));
    store_environment(c, i, f, at);
    if (Registers) {
      for (unsigned k = 0; k < 8; ++k)
        write_bytes(c, s, at + kEnvironmentSize + 10 * k, Xmm{{st(f, k).significand, st(f, k).sign_exponent}}, 10);
      x87_reset(f);
    } else {
      f.fcw = static_cast<uint16_t>(f.fcw | kExceptionFlags);
      x87_update_summary(f);
    }
    return;
  }
  FpuState loaded = load_environment(c, i, f, at);
  for (unsigned k = 0; Registers && k < 8; ++k) {
    const Xmm raw = read_bytes(c, s, at + kEnvironmentSize + 10 * k, 10);
    st(loaded, k) = Float80{raw.q[0], static_cast<uint16_t>(raw.q[1])};
  }
  f = loaded;
}

}  // namespace

void register_x87(Dispatch& d) {
  constexpr InsnClass A = InsnClass::Alu, M = InsnClass::Mul, D = InsnClass::Div;
  d.add(ZYDIS_MNEMONIC_FLD, A, &fld<false>);
  d.add(ZYDIS_MNEMONIC_FILD, A, &fld<true>);
  d.add(ZYDIS_MNEMONIC_FST, A, &fst<StoreKind::Float, false>);
  d.add(ZYDIS_MNEMONIC_FSTP, A, &fst<StoreKind::Float, true>);
  d.add(ZYDIS_MNEMONIC_FIST, A, &fst<StoreKind::Integer, false>);
  d.add(ZYDIS_MNEMONIC_FISTP, A, &fst<StoreKind::Integer, true>);
  d.add(ZYDIS_MNEMONIC_FISTTP, A, &fst<StoreKind::Truncate, true>);
  d.add(ZYDIS_MNEMONIC_FLD1, A, &fld_constant<0>);
  d.add(ZYDIS_MNEMONIC_FLDZ, A, &fld_constant<1>);
  d.add(ZYDIS_MNEMONIC_FLDPI, A, &fld_constant<2>);
  d.add(ZYDIS_MNEMONIC_FLDL2E, A, &fld_constant<3>);
  d.add(ZYDIS_MNEMONIC_FLDL2T, A, &fld_constant<4>);
  d.add(ZYDIS_MNEMONIC_FLDLG2, A, &fld_constant<5>);
  d.add(ZYDIS_MNEMONIC_FLDLN2, A, &fld_constant<6>);
  d.add(ZYDIS_MNEMONIC_FADD, A, &arith<Arith::Add, false, false, false>);
  d.add(ZYDIS_MNEMONIC_FADDP, A, &arith<Arith::Add, false, true, false>);
  d.add(ZYDIS_MNEMONIC_FIADD, A, &arith<Arith::Add, false, false, true>);
  d.add(ZYDIS_MNEMONIC_FSUB, A, &arith<Arith::Sub, false, false, false>);
  d.add(ZYDIS_MNEMONIC_FSUBP, A, &arith<Arith::Sub, false, true, false>);
  d.add(ZYDIS_MNEMONIC_FISUB, A, &arith<Arith::Sub, false, false, true>);
  d.add(ZYDIS_MNEMONIC_FSUBR, A, &arith<Arith::Sub, true, false, false>);
  d.add(ZYDIS_MNEMONIC_FSUBRP, A, &arith<Arith::Sub, true, true, false>);
  d.add(ZYDIS_MNEMONIC_FISUBR, A, &arith<Arith::Sub, true, false, true>);
  d.add(ZYDIS_MNEMONIC_FMUL, M, &arith<Arith::Mul, false, false, false>);
  d.add(ZYDIS_MNEMONIC_FMULP, M, &arith<Arith::Mul, false, true, false>);
  d.add(ZYDIS_MNEMONIC_FIMUL, M, &arith<Arith::Mul, false, false, true>);
  d.add(ZYDIS_MNEMONIC_FDIV, D, &arith<Arith::Div, false, false, false>);
  d.add(ZYDIS_MNEMONIC_FDIVP, D, &arith<Arith::Div, false, true, false>);
  d.add(ZYDIS_MNEMONIC_FIDIV, D, &arith<Arith::Div, false, false, true>);
  d.add(ZYDIS_MNEMONIC_FDIVR, D, &arith<Arith::Div, true, false, false>);
  d.add(ZYDIS_MNEMONIC_FDIVRP, D, &arith<Arith::Div, true, true, false>);
  d.add(ZYDIS_MNEMONIC_FIDIVR, D, &arith<Arith::Div, true, false, true>);
  d.add(ZYDIS_MNEMONIC_FSQRT, D, &unary<true>);
  d.add(ZYDIS_MNEMONIC_FRNDINT, A, &unary<false>);
  d.add(ZYDIS_MNEMONIC_FCHS, A, &sign<false>);
  d.add(ZYDIS_MNEMONIC_FABS, A, &sign<true>);
  d.add(ZYDIS_MNEMONIC_FCOM, A, &compare<true, 0, CompareTo::Operand, false>);
  d.add(ZYDIS_MNEMONIC_FCOMP, A, &compare<true, 1, CompareTo::Operand, false>);
  d.add(ZYDIS_MNEMONIC_FCOMPP, A, &compare<true, 2, CompareTo::St1, false>);
  d.add(ZYDIS_MNEMONIC_FUCOM, A, &compare<false, 0, CompareTo::Operand, false>);
  d.add(ZYDIS_MNEMONIC_FUCOMP, A, &compare<false, 1, CompareTo::Operand, false>);
  d.add(ZYDIS_MNEMONIC_FUCOMPP, A, &compare<false, 2, CompareTo::St1, false>);
  d.add(ZYDIS_MNEMONIC_FICOM, A, &compare<true, 0, CompareTo::Operand, false, true>);
  d.add(ZYDIS_MNEMONIC_FICOMP, A, &compare<true, 1, CompareTo::Operand, false, true>);
  d.add(ZYDIS_MNEMONIC_FTST, A, &compare<true, 0, CompareTo::Zero, false>);
  d.add(ZYDIS_MNEMONIC_FCOMI, A, &compare<true, 0, CompareTo::Operand, true>);
  d.add(ZYDIS_MNEMONIC_FCOMIP, A, &compare<true, 1, CompareTo::Operand, true>);
  d.add(ZYDIS_MNEMONIC_FUCOMI, A, &compare<false, 0, CompareTo::Operand, true>);
  d.add(ZYDIS_MNEMONIC_FUCOMIP, A, &compare<false, 1, CompareTo::Operand, true>);
  d.add(ZYDIS_MNEMONIC_FXAM, A, &fxam);
  d.add(ZYDIS_MNEMONIC_FXCH, A, &fxch);
  d.add(ZYDIS_MNEMONIC_FFREE, A, &ffree);
  d.add(ZYDIS_MNEMONIC_FINCSTP, A, &step_top<1>);
  d.add(ZYDIS_MNEMONIC_FDECSTP, A, &step_top<-1>);
  d.add(ZYDIS_MNEMONIC_FNINIT, A, &fninit);
  d.add(ZYDIS_MNEMONIC_FNCLEX, A, &fnclex);
  d.add(ZYDIS_MNEMONIC_FWAIT, A, &fwait);
  d.add(ZYDIS_MNEMONIC_FNSTSW, A, &fnstsw);
  d.add(ZYDIS_MNEMONIC_FNSTCW, A, &fnstcw);
  d.add(ZYDIS_MNEMONIC_FLDCW, A, &fldcw);
  d.add(ZYDIS_MNEMONIC_FNSTENV, A, &image<true, false>);
  d.add(ZYDIS_MNEMONIC_FLDENV, A, &image<false, false>);
  d.add(ZYDIS_MNEMONIC_FNSAVE, A, &image<true, true>);
  d.add(ZYDIS_MNEMONIC_FRSTOR, A, &image<false, true>);
}

}  // namespace pgsim::isa::fpu
