// Architectural state of one x86-64 logical processor (Intel SDM vol. 3, ch. 2-3).
// Plain data: the semantics live elsewhere. No SystemC here.
#pragma once
#include <array>
#include <cstdint>

namespace pgsim::isa {

// General-purpose registers in the encoding order of the ModRM reg field.
enum Gpr : unsigned { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 };

// Segment registers in the encoding order of MOV Sreg (SDM vol. 2, table 3-7).
enum SegReg : unsigned { ES, CS, SS, DS, FS, GS, kNumSegRegs };

// RFLAGS bits (SDM vol. 1, 3.4.3).
enum Rflags : uint64_t {
  CF = 1u << 0,    // carry
  RF1 = 1u << 1,   // reserved, always 1
  PF = 1u << 2,    // parity of the low byte
  AF = 1u << 4,    // auxiliary carry (BCD)
  ZF = 1u << 6,    // zero
  SF = 1u << 7,    // sign
  TF = 1u << 8,    // trap (single step)
  IF = 1u << 9,    // interrupt enable
  DF = 1u << 10,   // direction for string instructions
  OF = 1u << 11,   // overflow
  IOPL = 3u << 12, // I/O privilege level (two bits)
  NT = 1u << 14,   // nested task
  RF = 1u << 16,   // resume
  VM = 1u << 17,   // virtual-8086 mode
  AC = 1u << 18,   // alignment check / SMAP override
  VIF = 1u << 19,  // virtual interrupt flag
  VIP = 1u << 20,  // virtual interrupt pending
  ID = 1u << 21,   // CPUID available
};
// The six status flags.
constexpr uint64_t kStatusFlags = CF | PF | AF | ZF | SF | OF;
constexpr unsigned kIoplShift = 12;

// CR0 bits (SDM vol. 3, 2.5).
enum Cr0 : uint64_t {
  CR0_PE = 1u << 0, CR0_MP = 1u << 1, CR0_EM = 1u << 2, CR0_TS = 1u << 3, CR0_ET = 1u << 4,
  CR0_NE = 1u << 5, CR0_WP = 1u << 16, CR0_AM = 1u << 18, CR0_NW = 1u << 29, CR0_CD = 1u << 30,
  CR0_PG = 1u << 31,
};

// CR4 bits (SDM vol. 3, 2.5).
enum Cr4 : uint64_t {
  CR4_VME = 1u << 0, CR4_PVI = 1u << 1, CR4_TSD = 1u << 2, CR4_DE = 1u << 3, CR4_PSE = 1u << 4,
  CR4_PAE = 1u << 5, CR4_MCE = 1u << 6, CR4_PGE = 1u << 7, CR4_PCE = 1u << 8,
  CR4_OSFXSR = 1u << 9, CR4_OSXMMEXCPT = 1u << 10, CR4_UMIP = 1u << 11, CR4_LA57 = 1u << 12,
  CR4_VMXE = 1u << 13, CR4_FSGSBASE = 1u << 16, CR4_PCIDE = 1u << 17, CR4_OSXSAVE = 1u << 18,
  CR4_SMEP = 1u << 20, CR4_SMAP = 1u << 21, CR4_PKE = 1u << 22, CR4_PKS = 1u << 24,
};

// The CR0 and CR4 bits the core implements (what MOV to CR0 keeps and MOV to CR4 accepts; the
// VMX capability MSRs IA32_VMX_CR0/CR4_FIXED1 advertise the same).
constexpr uint64_t kCr0Implemented = CR0_PE | CR0_MP | CR0_EM | CR0_TS | CR0_ET | CR0_NE | CR0_WP | CR0_AM |
                                     CR0_NW | CR0_CD | CR0_PG;
constexpr uint64_t kCr4Implemented = CR4_VME | CR4_PVI | CR4_TSD | CR4_DE | CR4_PSE | CR4_PAE | CR4_MCE |
                                     CR4_PGE | CR4_PCE | CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_UMIP | CR4_LA57 |
                                     CR4_PCIDE | CR4_OSXSAVE | CR4_SMEP | CR4_SMAP | CR4_PKE | CR4_PKS;
// The CR4 bits that change how linear addresses translate or which rights apply: a change flushes
// the TLBs (and the soft TLB, whose entries hold rights checked at fill time).
constexpr uint64_t kCr4PagingBits = CR4_PSE | CR4_PAE | CR4_PGE | CR4_PCIDE | CR4_SMEP | CR4_SMAP | CR4_LA57 |
                                    CR4_PKE | CR4_PKS;

// DR6 and DR7 bits (SDM vol. 3, 18.2.3-18.2.4).
enum Dr6 : uint64_t {
  DR6_B0 = 1u << 0,        // breakpoint condition 0 met (B0-B3: bits 0-3)
  DR6_BLD = 1u << 11,      // bus-lock detection (active low): reads 1
  DR6_BD = 1u << 13,       // the next instruction accesses a debug register (DR7.GD)
  DR6_BS = 1u << 14,       // single step (RFLAGS.TF)
  DR6_BT = 1u << 15,       // task switch with the TSS T flag
  DR6_RTM = 1u << 16,      // not in an RTM region (active low): reads 1
};
// DR6 after reset and what its read-as-one bits are; #DB clears B0-B3 and sets what it reports,
// leaving BD, BS and BT as they were (software clears them).
constexpr uint64_t kDr6Fixed1 = 0xFFFF0FF0u;
constexpr uint64_t kDr6Hits = 0xF;
enum Dr7 : uint64_t {
  DR7_ENABLES = 0xFF,      // L0 G0 L1 G1 L2 G2 L3 G3
  DR7_GD = 1u << 13,       // general detect: MOV DR raises #DB
  DR7_FIXED1 = 1u << 10,
};
// Breakpoint `n` of DR7: its enable bits, R/W field (00 execute, 01 write, 10 I/O with CR4.DE,
// 11 read or write) and LEN field (00 one byte, 01 two, 11 four, 10 eight).
constexpr bool dr7_enabled(uint64_t dr7, unsigned n) { return (dr7 >> (2 * n)) & 3; }
constexpr unsigned dr7_rw(uint64_t dr7, unsigned n) { return (dr7 >> (16 + 4 * n)) & 3; }
constexpr unsigned dr7_len(uint64_t dr7, unsigned n) {
  constexpr unsigned kBytes[4] = {1, 2, 8, 4};
  return kBytes[(dr7 >> (18 + 4 * n)) & 3];
}
// The bits of DR7 that exist (bits 11-12 and 14-15 read 0; 63:32 must be 0).
constexpr uint64_t kDr7Writable = 0xFFFF23FFu;

// IA32_EFER bits. LMSLE (AMD's long-mode segment limit enable, APM vol. 2 4.12.2) is a feature of
// the real CPU a VMM sets (binary translation keeps its own page above the guest's data segment
// limits with it); WRMSR does not offer it to guests (it raises #GP, as on CPUs without it).
enum Efer : uint64_t { EFER_SCE = 1u << 0, EFER_LME = 1u << 8, EFER_LMA = 1u << 10, EFER_NXE = 1u << 11, EFER_LMSLE = 1u << 13 };
// With EFER.LMSLE, at CPL > 0 in 64-bit mode, DS, ES and SS bound effective addresses in the top
// 4 GiB: an access there must lie at or below this base plus the segment's 32-bit limit (FS and GS,
// which keep 64-bit bases, and CS are not checked).
constexpr uint64_t kLmsleLimitBase = 0xFFFFFFFF00000000ull;

// Architectural MSR numbers the core implements.
enum Msr : uint32_t {
  MSR_TSC = 0x10,
  MSR_PLATFORM_ID = 0x17,
  MSR_APIC_BASE = 0x1B,
  MSR_BIOS_SIGN_ID = 0x8B,  // microcode update signature
  MSR_MTRRCAP = 0xFE,
  MSR_MISC_ENABLE = 0x1A0,
  MSR_MTRR_PHYS_BASE0 = 0x200,  // variable-range pairs: base 0x200 + 2n, mask 0x201 + 2n
  MSR_MTRR_FIX64K_00000 = 0x250,
  MSR_MTRR_FIX16K_80000 = 0x258,
  MSR_MTRR_FIX16K_A0000 = 0x259,
  MSR_MTRR_FIX4K_C0000 = 0x268,  // eight registers, 0x268-0x26F
  MSR_MTRR_DEF_TYPE = 0x2FF,
  MSR_PKRS = 0x6E1,
  MSR_SYSENTER_CS = 0x174,
  MSR_SYSENTER_ESP = 0x175,
  MSR_SYSENTER_EIP = 0x176,
  MSR_PAT = 0x277,
  MSR_TSC_DEADLINE = 0x6E0,
  MSR_EFER = 0xC0000080,
  MSR_STAR = 0xC0000081,
  MSR_LSTAR = 0xC0000082,
  MSR_CSTAR = 0xC0000083,
  MSR_FMASK = 0xC0000084,
  MSR_FS_BASE = 0xC0000100,
  MSR_GS_BASE = 0xC0000101,
  MSR_KERNEL_GS_BASE = 0xC0000102,
  MSR_TSC_AUX = 0xC0000103,
};

// IA32_APIC_BASE.EXTD: x2APIC mode (with x2APIC only).
constexpr uint64_t kApicBaseExtd = 1u << 10;

// A segment register: the visible selector and the hidden descriptor cache (SDM vol. 3, 3.4.3).
struct Segment {
  uint16_t selector = 0;
  uint64_t base = 0;
  uint32_t limit = 0xFFFF;  // byte-granular, already scaled by G
  // Access rights in the layout of descriptor bits 40..55 (type, S, DPL, P, AVL, L, D/B, G),
  // i.e. (descriptor_high >> 8) & 0xF0FF, as LAR reports them shifted right by 8.
  uint16_t attr = 0;

  unsigned type() const { return attr & 0xF; }
  bool s() const { return attr & 0x10; }          // code/data (1) or system (0)
  unsigned dpl() const { return (attr >> 5) & 3; }
  bool present() const { return attr & 0x80; }
  bool l() const { return attr & 0x2000; }        // 64-bit code segment
  bool db() const { return attr & 0x4000; }       // default operand size 32 / big stack
  bool g() const { return attr & 0x8000; }
  unsigned rpl() const { return selector & 3; }
};

// GDTR / IDTR.
struct DescriptorTableReg {
  uint64_t base = 0;
  uint16_t limit = 0xFFFF;
};

// One 128-bit XMM register, as two little-endian quadwords.
struct Xmm {
  uint64_t q[2] = {0, 0};
  bool operator==(const Xmm&) const = default;
};

// One x87 data register in the double-extended format (SDM vol. 1, 4.2.2): a 64-bit significand
// with its explicit integer bit and 16 bits of sign and biased exponent.
struct Float80 {
  uint64_t significand = 0;
  uint16_t sign_exponent = 0;
  bool operator==(const Float80&) const = default;
};

// MXCSR bits (SDM vol. 1, 10.2.3).
enum Mxcsr : uint32_t {
  MXCSR_IE = 1u << 0, MXCSR_DE = 1u << 1, MXCSR_ZE = 1u << 2, MXCSR_OE = 1u << 3, MXCSR_UE = 1u << 4,
  MXCSR_PE = 1u << 5, MXCSR_DAZ = 1u << 6, MXCSR_IM = 1u << 7, MXCSR_RC = 3u << 13, MXCSR_FZ = 1u << 15,
};
constexpr uint32_t kMxcsrFlags = 0x3F;       // the six exception flags
constexpr unsigned kMxcsrMaskShift = 7;      // masks IM..PM sit above the flags
constexpr uint32_t kMxcsrMask = 0xFFFF;      // the MXCSR bits the core implements (FXSAVE's MXCSR_MASK)
constexpr uint32_t kMxcsrReset = 0x1F80;     // all exceptions masked, round to nearest

// x87 status-word bits (SDM vol. 1, 8.1.3).
enum FpuStatus : uint16_t {
  FSW_IE = 1u << 0, FSW_DE = 1u << 1, FSW_ZE = 1u << 2, FSW_OE = 1u << 3, FSW_UE = 1u << 4, FSW_PE = 1u << 5,
  FSW_SF = 1u << 6, FSW_ES = 1u << 7, FSW_C0 = 1u << 8, FSW_C1 = 1u << 9, FSW_C2 = 1u << 10,
  FSW_TOP = 7u << 11, FSW_C3 = 1u << 14, FSW_B = 1u << 15,
};
constexpr unsigned kFswTopShift = 11;
constexpr uint16_t kFcwReset = 0x037F;  // FNINIT: exceptions masked, 64-bit precision, round to nearest

// XCR0 state components (SDM vol. 1, 13.1).
enum Xcr0 : uint64_t { XCR0_X87 = 1u << 0, XCR0_SSE = 1u << 1 };
constexpr uint64_t kXcr0Supported = XCR0_X87 | XCR0_SSE;  // the components XSAVE manages here

// The x87 FPU and SSE state (what FXSAVE saves and XSAVE components 0 and 1 hold), kept in CpuState
// so that world switches and snapshots carry it.
struct FpuState {
  std::array<Float80, 8> st{};   // the x87 data registers R0-R7 (physical, not stack-relative)
  uint16_t fcw = kFcwReset;      // control word
  uint16_t fsw = 0;              // status word (TOP in bits 13:11)
  uint8_t ftw = 0;               // abridged tag word: bit i set when R<i> is not empty
  uint16_t fop = 0;              // the last non-control x87 instruction's opcode (Insn::x87_opcode)
  uint64_t fip = 0, fdp = 0;     // its address and its memory operand's address (offsets)
  uint16_t fcs = 0, fds = 0;     // their selectors (outside 64-bit mode)
  std::array<Xmm, 16> xmm{};
  uint32_t mxcsr = kMxcsrReset;
  bool operator==(const FpuState&) const = default;
};

// The execution mode, derived from CR0.PE, EFER.LMA, CS.L, CS.D and RFLAGS.VM.
enum class Mode : uint8_t { Real, Virtual8086, Protected16, Protected32, Compat16, Compat32, Long64 };

struct CpuState {
  std::array<uint64_t, 16> gpr{};
  uint64_t rip = 0;
  uint64_t rflags = RF1;

  std::array<Segment, kNumSegRegs> seg{};
  DescriptorTableReg gdtr, idtr;
  Segment ldtr, tr;

  uint64_t cr0 = CR0_ET | CR0_NW | CR0_CD;
  uint64_t cr2 = 0, cr3 = 0, cr4 = 0;
  uint64_t cr8 = 0;  // task priority (mirrors the local APIC TPR bits 7:4)
  std::array<uint64_t, 8> dr{0, 0, 0, 0, 0, 0, 0xFFFF0FF0, 0x400};

  uint64_t efer = 0;
  uint64_t star = 0, lstar = 0, cstar = 0, fmask = 0;
  uint64_t kernel_gs_base = 0;
  uint64_t sysenter_cs = 0, sysenter_esp = 0, sysenter_eip = 0;
  uint64_t pat = 0x0007040600070406ull;
  uint64_t tsc_aux = 0;
  uint32_t pkru = 0;     // user-mode protection keys (RDPKRU/WRPKRU): AD = bit 2k, WD = bit 2k+1
  uint64_t pkrs = 0;     // supervisor-mode protection keys (IA32_PKRS), same layout
  uint64_t misc_enable = 1;  // IA32_MISC_ENABLE's writable bits, fast strings on (isa/system/machine_msrs.cpp)
  // Memory-type range registers: the state firmware hands an OS on QEMU's PC (everything
  // write-back by default type, no range set); types are only kept, the core has no caches.
  uint64_t mtrr_def_type = 0;
  std::array<uint64_t, 16> mtrr_var{};    // PHYSBASE0, PHYSMASK0, ... PHYSBASE7, PHYSMASK7
  std::array<uint64_t, 11> mtrr_fixed{};  // FIX64K_00000, FIX16K_80000/A0000, FIX4K_C0000..F8000
  uint64_t apic_base = 0xFEE00900;  // BSP, xAPIC enabled

  FpuState fpu;
  uint64_t xcr0 = XCR0_X87;  // XSETBV's extended control register 0

  uint64_t tsc = 0;      // time-stamp counter; the platform advances it with simulated cycles
  bool halted = false;   // HLT executed, waiting for an interrupt
  bool interrupt_shadow = false;  // STI / MOV SS: interrupts inhibited for one instruction
  bool nmi_blocked = false;       // an NMI handler runs: further NMIs wait for the next IRET

  // CPL is the DPL of the hidden CS descriptor (SS.DPL equals it); in real mode it is 0.
  unsigned cpl() const { return (cr0 & CR0_PE) ? ((rflags & VM) ? 3 : seg[CS].dpl()) : 0; }
  unsigned iopl() const { return (rflags >> kIoplShift) & 3; }
  bool long_mode_active() const { return efer & EFER_LMA; }
  bool paging() const { return cr0 & CR0_PG; }

  Mode mode() const {
    if (!(cr0 & CR0_PE)) return Mode::Real;
    if (rflags & VM) return Mode::Virtual8086;
    if (long_mode_active()) {
      if (seg[CS].l()) return Mode::Long64;
      return seg[CS].db() ? Mode::Compat32 : Mode::Compat16;
    }
    return seg[CS].db() ? Mode::Protected32 : Mode::Protected16;
  }
};

}  // namespace pgsim::isa
