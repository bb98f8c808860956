#include "enforce/tc_programs.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "enforce/enforcer.hpp"
#include "enforce/tc_messages.hpp"

namespace ctquota::enforce {

ProgramFd::ProgramFd(int fd, const char* what) : fd_(fd) {
    if (fd_ < 0) {
        throw EnforceError(std::string("tc: cannot load the ") + what +
                           " (eBPF; loading needs CAP_BPF): " + std::strerror(errno));
    }
}

ProgramFd::~ProgramFd() {
    close(fd_);
}

TcPrograms::TcPrograms()
    : shard_(load_shard_program(), "shard classifier"),
      band_(load_band_program(), "band classifier"),
      redirect_(load_redirect_program(), "redirect classifier") {}

}  // namespace ctquota::enforce
