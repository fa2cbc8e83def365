// guest: the software the machine boots.
#include "platforms/config/schema_sections.h"

namespace pgsim::config {

void declare_guest(Schema& s) {
  s.add(file("guest.kernel",
             "Multiboot kernel image (ELF32 or ELF64), relative to the config file that sets it"));
  s.add(text("guest.cmdline", "", "Multiboot command line handed to the kernel"));
  s.add(files("guest.modules",
              "Multiboot modules loaded after the kernel, each relative to its config file"));
  s.add(file("guest.serial_input",
             "file whose bytes the UART receives as input (\"\": no input)"));
}

}  // namespace pgsim::config
