// The queues and bindings a --config file declares, made at start after
// recovery: what exists already with the same settings is left alone, so a
// restart with the same file changes nothing.
#pragma once

#include "broker/config.h"
#include "broker/core/broker.h"

namespace basin {

// False (and logged, naming the file and line) if a declaration cannot be
// made: a bad name, a queue that exists with other settings, a dead-letter
// queue declared after the queue that uses it.
bool ApplyDeclarations(const Config& config, core::Broker* broker);

}  // namespace basin
