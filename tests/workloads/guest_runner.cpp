#include "guest_runner.h"

#include "tests/platforms/pgsim_guest_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace pgsim::guest_test {

GuestRun run_process(const std::vector<std::string>& argv, std::chrono::seconds time_limit) {
    GuestRun result;
    int out[2];
    if (pipe(out) != 0) {
        result.launch_error = std::string("pipe: ") + std::strerror(errno);
        return result;
    }
    pid_t pid = fork();
    if (pid < 0) {
        result.launch_error = std::string("fork: ") + std::strerror(errno);
        close(out[0]);
        close(out[1]);
        return result;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        dup2(out[1], STDERR_FILENO);
        close(out[0]);
        close(out[1]);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        execvp(args[0], args.data());
        dprintf(STDERR_FILENO, "cannot execute %s: %s\n", args[0], std::strerror(errno));
        _exit(127);
    }
    close(out[1]);
    const auto deadline = std::chrono::steady_clock::now() + time_limit;
    char buffer[4096];
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            result.timed_out = true;
            kill(pid, SIGKILL);
            break;
        }
        pollfd pfd{out[0], POLLIN, 0};
        int ready = poll(&pfd, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) continue;  // the deadline check above ends the loop
        ssize_t n = read(out[0], buffer, sizeof(buffer));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // end of output: the process has exited (or closed its output)
        result.serial.append(buffer, static_cast<size_t>(n));
    }
    close(out[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status)) result.exit_status = WEXITSTATUS(status);
    if (WEXITSTATUS(status) == 127 && result.serial.find("cannot execute") != std::string::npos)
        result.launch_error = result.serial;
    return result;
}

GuestRunner qemu_runner(const std::string& kernel_image, std::chrono::seconds time_limit,
                        const std::string& cpu_model) {
    return [kernel_image, time_limit, cpu_model](const std::string& cmdline) {
        return run_process({"qemu-system-x86_64", "-machine", "pc", "-cpu", cpu_model, "-m", "128",
                            "-kernel", kernel_image, "-append", cmdline, "-nographic",
                            "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"},
                           time_limit);
    };
}

std::vector<NamedRunner> guest_runners() {
    return {{"qemu", qemu_runner(PGSIM_KERNEL_IMAGE, std::chrono::seconds(30))},
            {"pgsim", pgsim_runner(PGSIM_BINARY, PGSIM_KERNEL_IMAGE, std::chrono::seconds(30))}};
}

}  // namespace pgsim::guest_test
