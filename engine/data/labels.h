#pragma once
// Limits shared by every label reader.
#include <cstdint>

namespace nnr {

// Labels are class indices in [0, kMaxClasses). The bound catches a mislabelled column (a
// feature read as the label) before it becomes a million-way output layer.
constexpr int32_t kMaxClasses = 65536;

}  // namespace nnr
