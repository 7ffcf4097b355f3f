#pragma once
// --device for the subcommands: cpu, or cuda (a GPU; needs a CUDA build).
#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "engine/core/collective.h"
#include "engine/core/context.h"

namespace nnr::cli {

// Registers --device on `cmd`, stored in `device` ("cpu" unless given).
void add_device_option(CLI::App* cmd, std::string& device, const std::string& what);

// The CUDA context for --device cuda (null for cpu), on the data-parallel collective's device when
// `parallel` has one (one GPU per rank), else on device 0. Callers open it before reading any data,
// so a machine or build without CUDA fails at once with the reason: nnr::InvalidArgument (exit 2)
// "[<command>] --device cuda: <why> (use --device cpu)".
std::unique_ptr<Context> open_device(const std::string& device, const std::string& command,
                                     const Collective* parallel = nullptr);

}  // namespace nnr::cli
