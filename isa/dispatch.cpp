// The Dispatch table, filled once from every register_*() function.
#include "isa/dispatch.h"

#include <stdexcept>

#include <Zydis/Zydis.h>

namespace pgsim::isa {

const char* insn_class_name(InsnClass cls) {
  switch (cls) {
    case InsnClass::Alu: return "alu";
    case InsnClass::Mul: return "mul";
    case InsnClass::Div: return "div";
    case InsnClass::Branch: return "branch";
    case InsnClass::Load: return "load";
    case InsnClass::Store: return "store";
    case InsnClass::Rmw: return "rmw";
    case InsnClass::String: return "string";
    case InsnClass::Fence: return "fence";
    case InsnClass::Nop: return "nop";
    case InsnClass::System: return "system";
    case InsnClass::Iret: return "iret";
    case InsnClass::Syscall: return "syscall";
    case InsnClass::Unimplemented: return "unimplemented";
    case InsnClass::kCount: break;
  }
  return "?";
}

const Dispatch& Dispatch::instance() {
  static const Dispatch table = [] {
    Dispatch d;
    register_integer_instructions(d);
    register_system_instructions(d);
    register_fpu_instructions(d);
    return d;
  }();
  return table;
}

void Dispatch::add(unsigned mnemonic, InsnClass cls, Handler handler, InsnTraits traits) {
  add_sized(mnemonic, cls, handler, handler, handler, handler, traits);
}

void Dispatch::add_sized(unsigned mnemonic, InsnClass cls, Handler h8, Handler h16, Handler h32, Handler h64,
                         InsnTraits traits) {
  if (entries_.size() <= mnemonic) entries_.resize(kSpecialFormEnd);
  if (cls == InsnClass::System) traits.flags |= kTraitSystem;
  entries_[mnemonic] = Entry{{h8, h16, h32, h64}, cls, traits};
}

Handler Dispatch::find(unsigned mnemonic, unsigned opsize, InsnClass* cls, InsnTraits* traits) const {
  if (mnemonic >= entries_.size()) return nullptr;
  const Entry& e = entries_[mnemonic];
  const unsigned index = opsize <= 1 ? 0 : opsize == 2 ? 1 : opsize == 4 ? 2 : 3;
  if (cls) *cls = e.cls;
  if (traits) *traits = e.traits;
  return e.by_size[index];
}

void Dispatch::add_forms(unsigned mnemonic, const FormHandlers& handlers) {
  if (mnemonic >= entries_.size() || !has(mnemonic))
    throw std::logic_error("operand forms registered for a mnemonic without handlers");
  entries_[mnemonic].by_form = handlers;
}

Handler Dispatch::find_form(unsigned mnemonic, unsigned opsize, OpKind k0, OpKind k1) const {
  if (mnemonic >= entries_.size()) return nullptr;
  OperandForm form;
  if (k0 == OpKind::Reg && k1 == OpKind::Reg) form = OperandForm::RegReg;
  else if (k0 == OpKind::Reg && k1 == OpKind::Imm) form = OperandForm::RegImm;
  else if (k0 == OpKind::Reg && k1 == OpKind::Mem) form = OperandForm::RegMem;
  else if (k0 == OpKind::Mem && k1 == OpKind::Reg) form = OperandForm::MemReg;
  else if (k0 == OpKind::Mem && k1 == OpKind::Imm) form = OperandForm::MemImm;
  else if (k0 == OpKind::Reg && k1 == OpKind::None) form = OperandForm::Reg;
  else if (k0 == OpKind::Mem && k1 == OpKind::None) form = OperandForm::Mem;
  else if (k0 == OpKind::Imm && k1 == OpKind::None) form = OperandForm::Imm;
  else return nullptr;
  const unsigned index = opsize <= 1 ? 0 : opsize == 2 ? 1 : opsize == 4 ? 2 : 3;
  return entries_[mnemonic].by_form[static_cast<unsigned>(form)][index];
}

bool Dispatch::has(unsigned mnemonic) const {
  if (mnemonic >= entries_.size()) return false;
  for (Handler h : entries_[mnemonic].by_size) {
    if (h) return true;
  }
  return false;
}

}  // namespace pgsim::isa
