#include "engine/core/captured_step.h"

#include <string>

#include "engine/core/error.h"

#include "engine/core/backend.h"

namespace nnr {

struct PinnedHostBuffer::Impl {
  std::unique_ptr<PinnedMemory> memory;
};

PinnedHostBuffer::PinnedHostBuffer(size_t bytes) : impl_(std::make_unique<Impl>()) {
  std::string why;
  DeviceLibrary* library = cuda_library(&why);
  if (!library) throw Error("[context] " + why);
  impl_->memory = library->pinned(bytes);
}
void* PinnedHostBuffer::data() { return impl_ ? impl_->memory->data() : nullptr; }
size_t PinnedHostBuffer::bytes() const { return impl_ ? impl_->memory->bytes() : 0; }

struct CapturedStep::Impl {
  std::unique_ptr<RecordedWork> work;
};

void CapturedStep::record(const std::function<void()>& work) {
  clear();
  impl_->work = ctx_.backend().record(work);
}

void CapturedStep::replay() {
  if (!impl_->work) throw Error("[cuda-graph] replay before a step was recorded");
  impl_->work->replay();
}

bool CapturedStep::recorded() const { return impl_->work != nullptr; }

void CapturedStep::clear() noexcept { impl_->work.reset(); }

PinnedHostBuffer::PinnedHostBuffer() = default;
PinnedHostBuffer::~PinnedHostBuffer() = default;
PinnedHostBuffer::PinnedHostBuffer(PinnedHostBuffer&&) noexcept = default;
PinnedHostBuffer& PinnedHostBuffer::operator=(PinnedHostBuffer&&) noexcept = default;

CapturedStep::CapturedStep(Context& ctx) : impl_(std::make_unique<Impl>()), ctx_(ctx) {}
CapturedStep::~CapturedStep() { clear(); }

}  // namespace nnr
