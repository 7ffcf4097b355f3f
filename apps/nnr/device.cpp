#include "apps/nnr/device.h"

#include "engine/core/error.h"

namespace nnr::cli {

void add_device_option(CLI::App* cmd, std::string& device, const std::string& what) {
  cmd->add_option("--device", device, what + " on cpu, or cuda (a GPU; needs a CUDA build)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
}

std::unique_ptr<Context> open_device(const std::string& device, const std::string& command,
                                     const Collective* parallel) {
  if (device != "cuda") return nullptr;
  const std::string why = Context::why_cuda_unavailable();
  if (!why.empty()) throw InvalidArgument("[" + command + "] --device cuda: " + why + " (use --device cpu)");
  return std::make_unique<Context>(parallel && parallel->cuda_device() >= 0 ? parallel->cuda_device() : 0);
}

}  // namespace nnr::cli
