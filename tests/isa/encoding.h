// Instructions encoded with Zydis's encoder, for tests that generate guest code: operands and
// one instruction's bytes (empty when Zydis cannot encode it).
#pragma once
#include <Zydis/Zydis.h>

#include <cstdint>
#include <initializer_list>
#include <vector>

namespace pgsim::test {

inline ZydisEncoderOperand reg_op(ZydisRegister r) {
  ZydisEncoderOperand o{};
  o.type = ZYDIS_OPERAND_TYPE_REGISTER;
  o.reg.value = r;
  return o;
}
inline ZydisEncoderOperand mem_op(unsigned bytes, int64_t disp = 8, ZydisRegister index = ZYDIS_REGISTER_NONE, uint8_t scale = 0,
                           ZydisRegister base = ZYDIS_REGISTER_RBX) {
  ZydisEncoderOperand o{};
  o.type = ZYDIS_OPERAND_TYPE_MEMORY;
  o.mem.base = base;
  o.mem.index = index;
  o.mem.scale = scale;
  o.mem.displacement = disp;
  o.mem.size = static_cast<ZyanU16>(bytes);
  return o;
}
inline ZydisEncoderOperand imm_op(int64_t v) {
  ZydisEncoderOperand o{};
  o.type = ZYDIS_OPERAND_TYPE_IMMEDIATE;
  o.imm.s = v;
  return o;
}

inline std::vector<uint8_t> encode(ZydisMnemonic m, std::initializer_list<ZydisEncoderOperand> ops, ZyanU64 prefixes = 0,
                            ZydisMachineMode mode = ZYDIS_MACHINE_MODE_LONG_64) {
  ZydisEncoderRequest req{};
  req.machine_mode = mode;
  req.mnemonic = m;
  req.prefixes = prefixes;
  req.operand_count = static_cast<ZyanU8>(ops.size());
  unsigned k = 0;
  for (const auto& o : ops) req.operands[k++] = o;
  uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
  ZyanUSize len = sizeof(buf);
  if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(&req, buf, &len))) return {};
  return std::vector<uint8_t>(buf, buf + len);
}

}  // namespace pgsim::test
