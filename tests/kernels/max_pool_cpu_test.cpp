// The CPU max pooling (kernels/max_pool.cpp) against a plain scan written here: 2×2 stride-2 and
// other windows, one thread and two (planes split), on awkward sizes (odd
// heights and widths whose last row or column no window covers, overlapping windows), with ties
// and NaNs; backward as a plain scatter, and with relu_y as the scatter followed by ReLU's
// backward. Every comparison is exact: the same elements are chosen and added in the same order.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "engine/core/rng.h"
#include "kernels/elementwise.h"
#include "kernels/max_pool.h"
#include "kernels/thread_pool.h"

using namespace nnr;
using nnr::kernels::PoolShape;

namespace {

struct Reference {
  std::vector<float> y;
  std::vector<int64_t> argmax;
};

// Row-major window scan, strict '>': the first maximum wins and a NaN never does.
Reference plain_pool(const std::vector<float>& x, const PoolShape& s) {
  Reference r;
  for (int64_t p = 0; p < s.planes; ++p)
    for (int64_t i = 0; i < s.out_height(); ++i)
      for (int64_t j = 0; j < s.out_width(); ++j) {
        int64_t best = p * s.height * s.width + i * s.stride * s.width + j * s.stride;
        for (int64_t di = 0; di < s.window; ++di)
          for (int64_t dj = 0; dj < s.window; ++dj) {
            const int64_t idx = p * s.height * s.width + (i * s.stride + di) * s.width + j * s.stride + dj;
            if (x[static_cast<size_t>(idx)] > x[static_cast<size_t>(best)]) best = idx;
          }
        r.y.push_back(x[static_cast<size_t>(best)]);
        r.argmax.push_back(best);
      }
  return r;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
  return true;
}

}  // namespace

TEST_CASE("CPU max pooling: 2x2 and other windows match a plain scan, relu_y masks as ReLU's backward",
          "[max_pool]") {
  Rng rng(5);
  struct Case {
    int64_t planes, height, width, window, stride;
  };
  // 2x2/2 on even and odd sizes (the last row or column dropped), 3x3/2 overlapping, 3x3/3, 1x1;
  // 301 planes of 15x17 = 76 755 floats: over the size that splits planes across threads.
  const std::vector<Case> cases{{3, 8, 8, 2, 2},  {5, 7, 9, 2, 2},   {301, 15, 17, 2, 2}, {7, 9, 7, 3, 2},
                                {4, 9, 9, 3, 3},  {301, 13, 19, 3, 2}, {2, 5, 5, 1, 1}};
  const int threads_before = kernels::loop_threads();
  for (const int threads : {1, 2})
    for (const Case& c : cases) {
      kernels::set_loop_threads(threads);
      PoolShape s;
      s.planes = c.planes, s.height = c.height, s.width = c.width, s.window = c.window, s.stride = c.stride;
      INFO(threads << " threads, " << c.planes << " planes of " << c.height << "x" << c.width << ", window "
                   << c.window << ", stride " << c.stride);
      const int64_t in_n = s.planes * s.height * s.width, out_n = s.out_numel();
      std::vector<float> x(static_cast<size_t>(in_n));
      for (auto& v : x) v = std::round(static_cast<float>(rng.normal()) * 2.0f) / 2.0f;  // many ties, many 0s
      for (size_t i = 0; i < x.size(); i += 37) x[i] = std::numeric_limits<float>::quiet_NaN();
      const Reference want = plain_pool(x, s);

      std::vector<float> y(static_cast<size_t>(out_n));
      std::vector<int64_t> argmax(static_cast<size_t>(out_n));
      kernels::max_pool2d_forward_cpu(x.data(), s, y.data(), argmax.data());
      REQUIRE(argmax == want.argmax);
      REQUIRE(same_bits(y, want.y));

      std::vector<float> dy(static_cast<size_t>(out_n));
      for (auto& v : dy) v = static_cast<float>(rng.normal());
      std::vector<float> scattered(static_cast<size_t>(in_n), 0.0f);
      for (size_t i = 0; i < dy.size(); ++i) scattered[static_cast<size_t>(want.argmax[i])] += dy[i];
      std::vector<float> dx(static_cast<size_t>(in_n), 7.0f);  // overwritten in full
      kernels::max_pool2d_backward_cpu(dy.data(), argmax.data(), s, dx.data());
      REQUIRE(dx == scattered);

      // As below a ReLU: the pool's input is relu(x), and dx of the ReLU's input is the plain
      // scatter masked by relu(x) > 0 (kernels/elementwise.h's relu_backward_cpu).
      std::vector<float> relu_x(x.size());
      for (size_t i = 0; i < x.size(); ++i) relu_x[i] = x[i] > 0.0f ? x[i] : 0.0f;
      const Reference pooled = plain_pool(relu_x, s);
      std::vector<float> plain(static_cast<size_t>(in_n), 0.0f), want_relu_dx(static_cast<size_t>(in_n));
      for (size_t i = 0; i < dy.size(); ++i) plain[static_cast<size_t>(pooled.argmax[i])] += dy[i];
      kernels::relu_backward_cpu(relu_x.data(), plain.data(), want_relu_dx.data(), in_n);
      std::vector<float> relu_dx(static_cast<size_t>(in_n), 7.0f);
      kernels::max_pool2d_backward_cpu(dy.data(), pooled.argmax.data(), s, relu_dx.data(), pooled.y.data());
      REQUIRE(relu_dx == want_relu_dx);
    }
  kernels::set_loop_threads(threads_before);
}
