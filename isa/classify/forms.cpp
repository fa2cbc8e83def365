// Enumeration of the implemented instruction forms: the opcode maps are walked byte by byte and
// every encoding the core's decoder and Dispatch table accept becomes a template.
#include "isa/classify/forms.h"

#include <algorithm>
#include <cctype>
#include <set>

#include <Zydis/Zydis.h>

#include "isa/decoder.h"
#include "isa/dispatch.h"

namespace pgsim::isa::classify {
namespace {

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// The group name of a form: Zydis' mnemonic, qualified for the system forms that share it with
// an ordinary instruction (the same split the decoder makes for its Dispatch keys).
std::string group_of(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* zo) {
  std::string name = upper(ZydisMnemonicGetString(zi.mnemonic));
  auto cls = [&](unsigned k) {
    return k < zi.operand_count_visible && zo[k].type == ZYDIS_OPERAND_TYPE_REGISTER
               ? ZydisRegisterGetClass(zo[k].reg.value)
               : ZYDIS_REGCLASS_INVALID;
  };
  const bool far = zi.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR;
  switch (zi.mnemonic) {
    case ZYDIS_MNEMONIC_MOV:
      if (cls(0) == ZYDIS_REGCLASS_SEGMENT) return "MOV to Sreg";
      if (cls(1) == ZYDIS_REGCLASS_SEGMENT) return "MOV from Sreg";
      if (cls(0) == ZYDIS_REGCLASS_CONTROL) return "MOV to CR";
      if (cls(1) == ZYDIS_REGCLASS_CONTROL) return "MOV from CR";
      if (cls(0) == ZYDIS_REGCLASS_DEBUG) return "MOV to DR";
      if (cls(1) == ZYDIS_REGCLASS_DEBUG) return "MOV from DR";
      break;
    case ZYDIS_MNEMONIC_PUSH:
      if (cls(0) == ZYDIS_REGCLASS_SEGMENT) return "PUSH Sreg";
      break;
    case ZYDIS_MNEMONIC_POP:
      if (cls(0) == ZYDIS_REGCLASS_SEGMENT) return "POP Sreg";
      break;
    case ZYDIS_MNEMONIC_JMP:
    case ZYDIS_MNEMONIC_CALL:
    case ZYDIS_MNEMONIC_RET:
      if (far) return name + " far";
      break;
    default:
      break;
  }
  return name;
}

// What distinguishes one form from another: mnemonic, widths, prefixes and operand shapes (a
// general-purpose register stands for any of its size; other registers are named).
std::string signature_of(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* zo) {
  std::string sig = std::string(ZydisMnemonicGetString(zi.mnemonic)) + "/" + std::to_string(zi.operand_width) +
                    "/" + std::to_string(zi.address_width);
  if (zi.attributes & (ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE)) sig += "/rep";
  if (zi.attributes & ZYDIS_ATTRIB_HAS_REPNE) sig += "/repne";
  if (zi.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR) sig += "/far";
  for (unsigned k = 0; k < zi.operand_count_visible; ++k) {
    const ZydisDecodedOperand& o = zo[k];
    sig += " ";
    switch (o.type) {
      case ZYDIS_OPERAND_TYPE_REGISTER: {
        const ZydisRegisterClass c = ZydisRegisterGetClass(o.reg.value);
        if (c == ZYDIS_REGCLASS_GPR8 || c == ZYDIS_REGCLASS_GPR16 || c == ZYDIS_REGCLASS_GPR32 ||
            c == ZYDIS_REGCLASS_GPR64) {
          sig += 'r';
          sig += std::to_string(o.size);
          // AX/EAX/RAX and CL as fixed operands are encoded differently from the ModRM register.
          if (o.visibility == ZYDIS_OPERAND_VISIBILITY_IMPLICIT) sig += ZydisRegisterGetString(o.reg.value);
        } else {
          sig += ZydisRegisterGetString(o.reg.value);
        }
        break;
      }
      case ZYDIS_OPERAND_TYPE_MEMORY: sig += 'm'; sig += std::to_string(o.size); break;
      case ZYDIS_OPERAND_TYPE_POINTER: sig += "ptr"; sig += std::to_string(o.ptr.segment); break;
      case ZYDIS_OPERAND_TYPE_IMMEDIATE:
        sig += o.imm.is_relative ? "rel" : "imm";
        sig += std::to_string(o.size);
        break;
      default: sig += "?"; break;
    }
  }
  return sig;
}

// Re-encodes a far-pointer instruction with another selector and offset.
bool reencode_far_pointer(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* zo, uint16_t selector,
                          uint32_t offset, std::vector<uint8_t>& out) {
  ZydisEncoderRequest req;
  if (!ZYAN_SUCCESS(ZydisEncoderDecodedInstructionToEncoderRequest(&zi, zo, zi.operand_count_visible, &req)))
    return false;
  for (unsigned k = 0; k < req.operand_count; ++k) {
    if (req.operands[k].type == ZYDIS_OPERAND_TYPE_POINTER) {
      req.operands[k].ptr.segment = selector;
      req.operands[k].ptr.offset = offset;
    }
  }
  uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
  ZyanUSize len = sizeof(buf);
  if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(&req, buf, &len))) return false;
  out.assign(buf, buf + len);
  return true;
}

// The general-purpose and system instruction categories (the rest: x87, SIMD, extensions).
bool integer_or_system(ZydisInstructionCategory c) {
  switch (c) {
    case ZYDIS_CATEGORY_BINARY: case ZYDIS_CATEGORY_BITBYTE: case ZYDIS_CATEGORY_CALL: case ZYDIS_CATEGORY_CMOV:
    case ZYDIS_CATEGORY_COND_BR: case ZYDIS_CATEGORY_CONVERT: case ZYDIS_CATEGORY_DATAXFER:
    case ZYDIS_CATEGORY_DECIMAL: case ZYDIS_CATEGORY_FLAGOP: case ZYDIS_CATEGORY_INTERRUPT: case ZYDIS_CATEGORY_IO:
    case ZYDIS_CATEGORY_IOSTRINGOP: case ZYDIS_CATEGORY_LOGICAL: case ZYDIS_CATEGORY_MISC: case ZYDIS_CATEGORY_NOP:
    case ZYDIS_CATEGORY_POP: case ZYDIS_CATEGORY_PUSH: case ZYDIS_CATEGORY_RET: case ZYDIS_CATEGORY_ROTATE:
    case ZYDIS_CATEGORY_SEGOP: case ZYDIS_CATEGORY_SEMAPHORE: case ZYDIS_CATEGORY_SETCC: case ZYDIS_CATEGORY_SHIFT:
    case ZYDIS_CATEGORY_STRINGOP: case ZYDIS_CATEGORY_SYSCALL: case ZYDIS_CATEGORY_SYSRET: case ZYDIS_CATEGORY_SYSTEM:
    case ZYDIS_CATEGORY_UNCOND_BR: case ZYDIS_CATEGORY_WIDENOP:
      return true;
    default:
      return false;
  }
}

bool is_prefix_or_escape(uint8_t b, bool long64) {
  switch (b) {
    case 0x26: case 0x2E: case 0x36: case 0x3E: case 0x64: case 0x65: case 0x66: case 0x67:
    case 0xF0: case 0xF2: case 0xF3: case 0x0F:
      return true;
    default:
      return long64 && b >= 0x40 && b <= 0x4F;  // REX
  }
}

}  // namespace

std::vector<InstructionForm> enumerate_forms(Mode mode, const TemplateTargets& targets,
                                             std::vector<std::string>* without_semantics) {
  const bool long64 = mode == Mode::Long64;
  ZydisDecoder zd;
  ZydisDecoderInit(&zd, long64 ? ZYDIS_MACHINE_MODE_LONG_64 : ZYDIS_MACHINE_MODE_LEGACY_32,
                   long64 ? ZYDIS_STACK_WIDTH_64 : ZYDIS_STACK_WIDTH_32);
  ZydisFormatter formatter;
  ZydisFormatterInit(&formatter, ZYDIS_FORMATTER_STYLE_INTEL);
  const Decoder core_decoder(Dispatch::instance());

  std::vector<std::vector<uint8_t>> prefixes = {{}, {0x66}, {0xF3}, {0xF2}};
  if (long64) prefixes.insert(prefixes.end(), {{0x48}, {0x44}, {0x66, 0x48}});
  std::vector<std::vector<uint8_t>> opcodes;
  for (unsigned b = 0; b < 256; ++b) {
    if (!is_prefix_or_escape(static_cast<uint8_t>(b), long64)) opcodes.push_back({static_cast<uint8_t>(b)});
    if (b != 0x38 && b != 0x3A) opcodes.push_back({0x0F, static_cast<uint8_t>(b)});
  }
  // ModRM shapes: a register (reg field r, EAX in r/m) and memory at [disp32] (SIB, no base).
  const uint32_t d = targets.data_offset;
  std::vector<std::vector<uint8_t>> tails;
  for (uint8_t r = 0; r < 8; ++r) {
    tails.push_back({static_cast<uint8_t>(0xC0 | r << 3)});
    tails.push_back({static_cast<uint8_t>(0x04 | r << 3), 0x25, static_cast<uint8_t>(d), static_cast<uint8_t>(d >> 8),
                     static_cast<uint8_t>(d >> 16), static_cast<uint8_t>(d >> 24)});
  }
  // Immediates: 0x21 (a small vector, count and displacement) in every size.
  const uint8_t immediates[] = {0x21, 0, 0, 0, 0, 0, 0, 0};

  std::vector<InstructionForm> forms;
  std::set<std::string> seen, unimplemented;
  auto consider = [&](const std::vector<uint8_t>& bytes) {
    ZydisDecodedInstruction zi;
    ZydisDecodedOperand zo[ZYDIS_MAX_OPERAND_COUNT];
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&zd, bytes.data(), bytes.size(), &zi, zo))) return;
    if (zi.encoding != ZYDIS_INSTRUCTION_ENCODING_LEGACY) return;
    Insn insn;
    if (core_decoder.decode(mode, bytes.data(), zi.length, insn) != DecodeStatus::Ok) return;
    if (insn.semantics == &unimplemented_instruction || insn.semantics == &undecodable_instruction) {
      // UD0 and UD1 are defined to raise #UD, which the core does.
      const bool base = zi.meta.isa_ext == ZYDIS_ISA_EXT_BASE || zi.meta.isa_ext == ZYDIS_ISA_EXT_LONGMODE;
      if (base && integer_or_system(zi.meta.category) && zi.mnemonic != ZYDIS_MNEMONIC_UD0 &&
          zi.mnemonic != ZYDIS_MNEMONIC_UD1)
        unimplemented.insert(upper(ZydisMnemonicGetString(zi.mnemonic)));
      return;
    }
    std::vector<std::vector<uint8_t>> encodings;
    bool has_pointer = false;
    for (unsigned k = 0; k < zi.operand_count_visible; ++k)
      has_pointer |= zo[k].type == ZYDIS_OPERAND_TYPE_POINTER;
    if (has_pointer) {
      for (uint16_t sel : targets.far_selectors) {
        std::vector<uint8_t> e;
        if (reencode_far_pointer(zi, zo, sel, targets.far_offset, e)) encodings.push_back(e);
      }
    } else {
      encodings.emplace_back(bytes.begin(), bytes.begin() + zi.length);
    }
    for (const auto& e : encodings) {
      ZydisDecodedInstruction ei;
      ZydisDecodedOperand eo[ZYDIS_MAX_OPERAND_COUNT];
      if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&zd, e.data(), e.size(), &ei, eo))) continue;
      if (!seen.insert(signature_of(ei, eo)).second) continue;
      char text[256];
      ZydisFormatterFormatInstruction(&formatter, &ei, eo, ei.operand_count_visible, text, sizeof(text), 0,
                                      nullptr);
      // Encodings that differ only in a prefix Zydis shows nowhere are one form to the reader.
      if (!seen.insert(text).second) continue;
      forms.push_back({group_of(ei, eo), text, e});
    }
  };
  for (const auto& p : prefixes) {
    for (const auto& op : opcodes) {
      for (const auto& tail : tails) {
        std::vector<uint8_t> bytes = p;
        bytes.insert(bytes.end(), op.begin(), op.end());
        bytes.insert(bytes.end(), tail.begin(), tail.end());
        bytes.insert(bytes.end(), std::begin(immediates), std::end(immediates));
        consider(bytes);
      }
    }
  }
  // A mnemonic with some implemented forms is not reported for the others (e.g. a 16-bit form).
  for (const auto& f : forms) unimplemented.erase(upper(f.form.substr(0, f.form.find(' '))));
  if (without_semantics) without_semantics->assign(unimplemented.begin(), unimplemented.end());
  std::stable_sort(forms.begin(), forms.end(),
                   [](const InstructionForm& a, const InstructionForm& b) { return a.mnemonic < b.mnemonic; });
  return forms;
}

}  // namespace pgsim::isa::classify
