// pgsim drives SystemC from its own main() (elaborate the board, then sc_start()), but Debian's
// libsystemc.so carries a main() that refers to sc_main, so every program linking the modules
// must define one. It is compiled into each such program (an INTERFACE source of pgsim_models)
// and is never called.
#include <cstdio>

extern "C" int sc_main(int, char*[]) {
  std::fputs("pgsim: sc_main is not an entry point of this program\n", stderr);
  return 1;
}
