// Which basind this is: filled in when the build is configured (CMake's
// project version, `git rev-parse` or -DBASIN_REVISION, CMAKE_BUILD_TYPE).
#pragma once

#include <string_view>

namespace basin {

std::string_view BuildVersion();
std::string_view BuildRevision();  // "unknown" outside a git checkout
std::string_view BuildType();

}  // namespace basin
