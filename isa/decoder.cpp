// Zydis decoded instruction -> compact Insn.
#include "isa/decoder.h"

#include "isa/core.h"
#include "isa/dispatch.h"
#include "isa/system/cpu_features.h"

namespace pgsim::isa {
namespace {

struct ZydisModeSetting {
  ZydisMachineMode machine;
  ZydisStackWidth stack;
};

// Zydis' machine mode for each of our Modes (the stack width only affects how Zydis reports
// implicit stack operands; the core takes the real one from SS.B at run time).
constexpr ZydisModeSetting kZydisModes[7] = {
    {ZYDIS_MACHINE_MODE_REAL_16, ZYDIS_STACK_WIDTH_16},          // Real
    {ZYDIS_MACHINE_MODE_REAL_16, ZYDIS_STACK_WIDTH_16},          // Virtual8086
    {ZYDIS_MACHINE_MODE_LEGACY_16, ZYDIS_STACK_WIDTH_16},        // Protected16
    {ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32},        // Protected32
    {ZYDIS_MACHINE_MODE_LONG_COMPAT_16, ZYDIS_STACK_WIDTH_16},   // Compat16
    {ZYDIS_MACHINE_MODE_LONG_COMPAT_32, ZYDIS_STACK_WIDTH_32},   // Compat32
    {ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64},          // Long64
};

unsigned log2_scale(unsigned scale) {
  switch (scale) {
    case 2: return 1;
    case 4: return 2;
    case 8: return 3;
    default: return 0;
  }
}

// A general-purpose register as (index, high8); false when `reg` is not a GPR.
bool gpr_of(ZydisRegister reg, uint8_t* index, bool* high8) {
  const ZydisRegisterClass cls = ZydisRegisterGetClass(reg);
  const int id = ZydisRegisterGetId(reg);
  *high8 = false;
  switch (cls) {
    case ZYDIS_REGCLASS_GPR8:
      // Zydis orders AL CL DL BL AH CH DH BH SPL BPL SIL DIL R8B..R15B.
      if (id >= 4 && id < 8) {
        *index = static_cast<uint8_t>(id - 4);
        *high8 = true;
      } else {
        *index = static_cast<uint8_t>(id < 4 ? id : id - 4);
      }
      return true;
    case ZYDIS_REGCLASS_GPR16:
    case ZYDIS_REGCLASS_GPR32:
    case ZYDIS_REGCLASS_GPR64:
      *index = static_cast<uint8_t>(id);
      return true;
    default:
      return false;
  }
}

uint8_t base_of(ZydisRegister reg) {
  if (reg == ZYDIS_REGISTER_NONE) return kNoReg;
  if (reg == ZYDIS_REGISTER_RIP || reg == ZYDIS_REGISTER_EIP || reg == ZYDIS_REGISTER_IP) return kRipReg;
  uint8_t index;
  bool high8;
  return gpr_of(reg, &index, &high8) ? index : kNoReg;
}

uint8_t segment_of(ZydisRegister reg) {
  return reg >= ZYDIS_REGISTER_ES && reg <= ZYDIS_REGISTER_GS ? static_cast<uint8_t>(reg - ZYDIS_REGISTER_ES)
                                                               : static_cast<uint8_t>(DS);
}

Operand convert(const ZydisDecodedOperand& z) {
  Operand o;
  o.size = static_cast<uint8_t>(z.size / 8);
  switch (z.type) {
    case ZYDIS_OPERAND_TYPE_REGISTER: {
      const ZydisRegister r = z.reg.value;
      if (gpr_of(r, &o.reg, &o.high8)) {
        o.kind = OpKind::Reg;
      } else if (r >= ZYDIS_REGISTER_ES && r <= ZYDIS_REGISTER_GS) {
        o.kind = OpKind::SegReg;
        o.reg = static_cast<uint8_t>(r - ZYDIS_REGISTER_ES);
      } else if (r >= ZYDIS_REGISTER_CR0 && r <= ZYDIS_REGISTER_CR15) {
        o.kind = OpKind::CtlReg;
        o.reg = static_cast<uint8_t>(r - ZYDIS_REGISTER_CR0);
      } else if (r >= ZYDIS_REGISTER_DR0 && r <= ZYDIS_REGISTER_DR15) {
        o.kind = OpKind::DbgReg;
        o.reg = static_cast<uint8_t>(r - ZYDIS_REGISTER_DR0);
      } else if (ZydisRegisterGetClass(r) == ZYDIS_REGCLASS_XMM) {
        o.kind = OpKind::Xmm;
        o.reg = static_cast<uint8_t>(ZydisRegisterGetId(r));
      } else if (ZydisRegisterGetClass(r) == ZYDIS_REGCLASS_X87) {
        o.kind = OpKind::X87;
        o.reg = static_cast<uint8_t>(ZydisRegisterGetId(r));
      } else {
        o.kind = OpKind::Other;
      }
      break;
    }
    case ZYDIS_OPERAND_TYPE_MEMORY:
      o.kind = OpKind::Mem;
      o.seg = segment_of(z.mem.segment);
      o.base = base_of(z.mem.base);
      o.index = base_of(z.mem.index);
      o.scale = static_cast<uint8_t>(log2_scale(z.mem.scale));
      o.value = z.mem.disp.has_displacement ? z.mem.disp.value : 0;
      break;
    case ZYDIS_OPERAND_TYPE_POINTER:
      o.kind = OpKind::Ptr;
      o.selector = z.ptr.segment;
      o.value = z.ptr.offset;
      break;
    case ZYDIS_OPERAND_TYPE_IMMEDIATE:
      o.kind = z.imm.is_relative ? OpKind::Rel : OpKind::Imm;
      o.value = z.imm.is_signed ? z.imm.value.s : static_cast<int64_t>(z.imm.value.u);
      break;
    default:
      o.kind = OpKind::None;
      break;
  }
  return o;
}

// The class of an Alu-registered instruction refined by its memory operands (timing model).
InsnClass refine_class(InsnClass cls, const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* zo) {
  // Returns from interrupts and fast system calls have costs of their own in the timing model.
  if (cls == InsnClass::System) {
    switch (zi.mnemonic) {
      case ZYDIS_MNEMONIC_IRET: case ZYDIS_MNEMONIC_IRETD: case ZYDIS_MNEMONIC_IRETQ:
        return InsnClass::Iret;
      case ZYDIS_MNEMONIC_SYSCALL: case ZYDIS_MNEMONIC_SYSRET:
      case ZYDIS_MNEMONIC_SYSENTER: case ZYDIS_MNEMONIC_SYSEXIT:
        return InsnClass::Syscall;
      default: return cls;
    }
  }
  if (cls != InsnClass::Alu) return cls;
  bool reads_memory = false;
  for (unsigned k = 0; k < zi.operand_count_visible; ++k) {
    if (zo[k].type != ZYDIS_OPERAND_TYPE_MEMORY || zo[k].mem.type == ZYDIS_MEMOP_TYPE_AGEN) continue;
    const bool read = zo[k].actions & ZYDIS_OPERAND_ACTION_MASK_READ;
    const bool write = zo[k].actions & ZYDIS_OPERAND_ACTION_MASK_WRITE;
    if (read && write) return InsnClass::Rmw;
    if (write) return InsnClass::Store;
    reads_memory = true;
  }
  return reads_memory ? InsnClass::Load : cls;
}

// The Dispatch key: the mnemonic, or a SpecialForm for the system forms of MOV, PUSH, POP,
// JMP, CALL and RET.
unsigned dispatch_key(const ZydisDecodedInstruction& zi, const Insn& insn) {
  const bool far = zi.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR;
  const OpKind k0 = insn.num_ops > 0 ? insn.op[0].kind : OpKind::None;
  const OpKind k1 = insn.num_ops > 1 ? insn.op[1].kind : OpKind::None;
  switch (zi.mnemonic) {
    case ZYDIS_MNEMONIC_MOV:
      if (k0 == OpKind::SegReg) return kMovToSreg;
      if (k1 == OpKind::SegReg) return kMovFromSreg;
      if (k0 == OpKind::CtlReg) return kMovToCr;
      if (k1 == OpKind::CtlReg) return kMovFromCr;
      if (k0 == OpKind::DbgReg) return kMovToDr;
      if (k1 == OpKind::DbgReg) return kMovFromDr;
      break;
    case ZYDIS_MNEMONIC_PUSH:
      if (k0 == OpKind::SegReg) return kPushSreg;
      break;
    case ZYDIS_MNEMONIC_POP:
      if (k0 == OpKind::SegReg) return kPopSreg;
      break;
    case ZYDIS_MNEMONIC_JMP:
      if (far) return kJmpFar;
      break;
    case ZYDIS_MNEMONIC_CALL:
      if (far) return kCallFar;
      break;
    case ZYDIS_MNEMONIC_RET:
      if (far) return kRetFar;
      break;
    case ZYDIS_MNEMONIC_MOVSD:  // the SSE forms of the string mnemonics have XMM operands
      if (k0 == OpKind::Xmm || k1 == OpKind::Xmm) return kSseMovsd;
      break;
    case ZYDIS_MNEMONIC_CMPSD:
      if (k0 == OpKind::Xmm) return kSseCmpsd;
      break;
    default:
      break;
  }
  return zi.mnemonic;
}

// Runs a System-class handler and then lets the core re-derive its cached mode, CPL and segments.
void system_then_sync(Core& core, const Insn& insn) {
  insn.semantics(core, insn);
  if (!core.fault_raised()) core.sync_mode();  // a raised fault changed nothing, as a thrown one
}

}  // namespace

Decoder::Decoder(const Dispatch& dispatch) : dispatch_(dispatch) {
  for (unsigned m = 0; m < 7; ++m) ZydisDecoderInit(&decoders_[m], kZydisModes[m].machine, kZydisModes[m].stack);
}

const char* Decoder::mnemonic_name(unsigned mnemonic) {
  const char* name = ZydisMnemonicGetString(static_cast<ZydisMnemonic>(mnemonic));
  return name ? name : "(unknown)";
}

DecodeStatus Decoder::decode(Mode mode, const uint8_t* bytes, size_t size, Insn& insn) const {
  ZydisDecodedInstruction zi;
  ZydisDecodedOperand zo[ZYDIS_MAX_OPERAND_COUNT];
  const ZyanStatus status =
      ZydisDecoderDecodeFull(&decoders_[static_cast<unsigned>(mode)], bytes, size, &zi, zo);
  insn = Insn{};
  if (status == ZYDIS_STATUS_NO_MORE_DATA) return DecodeStatus::NeedMore;
  if (!ZYAN_SUCCESS(status)) {
    insn.length = 1;
    insn.handler = insn.semantics = &undecodable_instruction;
    insn.cls = InsnClass::Unimplemented;
    return DecodeStatus::Invalid;
  }
  insn.mnemonic = static_cast<uint16_t>(zi.mnemonic);
  insn.length = zi.length;
  insn.opsize = static_cast<uint8_t>(zi.operand_width / 8 ? zi.operand_width / 8 : 1);
  insn.addrsize = static_cast<uint8_t>(zi.address_width / 8);
  if (zi.attributes & ZYDIS_ATTRIB_HAS_LOCK) insn.prefixes |= kPrefixLock;
  if (zi.attributes & (ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE)) insn.prefixes |= kPrefixRep;
  if (zi.attributes & ZYDIS_ATTRIB_HAS_REPNE) insn.prefixes |= kPrefixRepne;
  insn.string_seg = DS;
  constexpr struct { ZyanU64 attribute; SegReg seg; } kOverrides[] = {
      {ZYDIS_ATTRIB_HAS_SEGMENT_ES, ES}, {ZYDIS_ATTRIB_HAS_SEGMENT_CS, CS}, {ZYDIS_ATTRIB_HAS_SEGMENT_SS, SS},
      {ZYDIS_ATTRIB_HAS_SEGMENT_DS, DS}, {ZYDIS_ATTRIB_HAS_SEGMENT_FS, FS}, {ZYDIS_ATTRIB_HAS_SEGMENT_GS, GS}};
  for (const auto& o : kOverrides) {
    if (zi.attributes & o.attribute) {
      insn.string_seg = o.seg;
      insn.prefixes |= kPrefixSegOverride;
    }
  }
  insn.condition = static_cast<uint8_t>(zi.opcode & 0xF);
  if (zi.opcode_map == ZYDIS_OPCODE_MAP_DEFAULT && (zi.opcode & 0xF8) == 0xD8) {
    const unsigned modrm = zi.raw.modrm.mod << 6 | zi.raw.modrm.reg << 3 | zi.raw.modrm.rm;
    insn.x87_opcode = static_cast<uint16_t>((zi.opcode & 7) << 8 | modrm);
  }
  insn.num_ops = static_cast<uint8_t>(zi.operand_count_visible < 3 ? zi.operand_count_visible : 3);
  for (unsigned k = 0; k < insn.num_ops; ++k) insn.op[k] = convert(zo[k]);

  InsnClass cls = InsnClass::Unimplemented;
  InsnTraits traits;
  unsigned key = dispatch_key(zi, insn);
  bool absent = false;
  static const CpuModel kDefaultCpu;
  const CpuModel& cpu = cpu_ ? *cpu_ : kDefaultCpu;
  for (const FeatureInstruction& g : feature_instructions()) {
    if (g.mnemonic != key || cpu.has(g.feature) || (g.long64_only && mode != Mode::Long64)) continue;
    if (g.fallback) key = g.fallback;
    else absent = true;
  }
  Handler handler = dispatch_.find(key, insn.opsize, &cls, &traits);
  // VEX/EVEX encodings, MMX and other register operands and a fourth operand are outside the
  // modeled subset.
  bool modeled = zi.operand_count_visible <= 3 && zi.encoding == ZYDIS_INSTRUCTION_ENCODING_LEGACY;
  for (unsigned k = 0; k < insn.num_ops; ++k) {
    if (insn.op[k].kind == OpKind::Other) modeled = false;
  }
  if (handler && modeled) {
    insn.semantics = handler;
    // One or two visible operands of a form the registration specialized: the instantiation that
    // knows their kinds.
    if (insn.num_ops == 1 || insn.num_ops == 2) {
      const OpKind second = insn.num_ops == 2 ? insn.op[1].kind : OpKind::None;
      if (Handler form = dispatch_.find_form(key, insn.opsize, insn.op[0].kind, second))
        insn.semantics = handler = form;
    }
    insn.cls = refine_class(cls, zi, zo);
    insn.traits = traits.flags;
    insn.sensitive = traits.sensitive;
    insn.handler = insn.has(kTraitSystem) ? &system_then_sync : handler;
    if (absent) insn.semantics = insn.handler = &absent_instruction;
  } else {
    insn.semantics = insn.handler = &unimplemented_instruction;
    insn.cls = InsnClass::Unimplemented;
  }
  return DecodeStatus::Ok;
}

void unimplemented_instruction(Core& core, const Insn& insn) {
  core.record_unimplemented(Decoder::mnemonic_name(insn.mnemonic));
  throw Fault::ud();
}

void absent_instruction(Core&, const Insn&) { throw Fault::ud(); }

void undecodable_instruction(Core& core, const Insn&) {
  core.record_unimplemented("(undecodable)");
  throw Fault::ud();
}

}  // namespace pgsim::isa
