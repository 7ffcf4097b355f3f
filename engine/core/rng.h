#pragma once
// nnr's one seeded generator (engine, regularizers, bandits): the same sequence on every machine
// and compiler, because the standard library's distributions are implementation-defined, so
// uniform, normal, gamma and beta draws are computed here from xoshiro256** output. Standard
// library only, so every layer may include it.
#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>

namespace nnr {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { reseed(seed); }

  void reseed(uint64_t seed) {
    uint64_t x = seed;
    for (auto& s : state_) s = splitmix64(x);
    has_spare_normal_ = false;
  }

  uint64_t next_u64() {
    const uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // The whole generator state (for saving a run mid-stream); set_state restores it exactly.
  struct State {
    std::array<uint64_t, 4> words{};
    double spare_normal = 0.0;
    bool has_spare_normal = false;
  };
  State state() const { return State{state_, spare_normal_, has_spare_normal_}; }
  void set_state(const State& s) {
    state_ = s.words;
    spare_normal_ = s.spare_normal;
    has_spare_normal_ = s.has_spare_normal;
  }
  // The four words alone: the whole state of a generator that never calls normal() (the bandits
  // use single_normal, gamma and beta, so their saved state is four integers). set_words drops
  // any spare normal.
  const std::array<uint64_t, 4>& words() const { return state_; }
  void set_words(const std::array<uint64_t, 4>& words) { set_state(State{words, 0.0, false}); }

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  // Uniform integer in [0, n); n > 0. Lemire's multiply-shift with rejection (unbiased).
  uint64_t below(uint64_t n) {
    unsigned __int128 m = static_cast<unsigned __int128>(next_u64()) * n;
    uint64_t low = static_cast<uint64_t>(m);
    if (low < n) {
      const uint64_t threshold = (0 - n) % n;
      while (low < threshold) {
        m = static_cast<unsigned __int128>(next_u64()) * n;
        low = static_cast<uint64_t>(m);
      }
    }
    return static_cast<uint64_t>(m >> 64);
  }

  // Standard normal (Marsaglia polar method; the spare draw is kept).
  double normal() {
    if (has_spare_normal_) {
      has_spare_normal_ = false;
      return spare_normal_;
    }
    const double x = polar(&spare_normal_);
    has_spare_normal_ = true;
    return x;
  }

  // Standard normal by the same method, keeping no spare (so words() stays the whole state).
  double single_normal() {
    double unused;
    return polar(&unused);
  }

  // Gamma(shape, 1) by Marsaglia & Tsang (2000); shape < 1 uses the boost
  // Gamma(a) = Gamma(a + 1) * U^(1/a).
  double gamma(double shape) {
    if (shape < 1.0) {
      const double u = 1.0 - uniform();  // in (0, 1]
      return gamma(shape + 1.0) * std::pow(u, 1.0 / shape);
    }
    const double d = shape - 1.0 / 3.0;
    const double c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
      double x, v;
      do {
        x = single_normal();
        v = 1.0 + c * x;
      } while (v <= 0.0);
      v = v * v * v;
      const double u = uniform();
      if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
      if (u > 0.0 && std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
    }
  }

  // Beta(a, b) as X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b).
  double beta(double a, double b) {
    const double x = gamma(a);
    const double y = gamma(b);
    return x / (x + y);
  }

 private:
  // One pair of independent standard normals: returns one, the other goes to *second.
  double polar(double* second) {
    double u, v, s;
    do {
      u = 2.0 * uniform() - 1.0;
      v = 2.0 * uniform() - 1.0;
      s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    const double f = std::sqrt(-2.0 * std::log(s) / s);
    *second = v * f;
    return u * f;
  }

  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  std::array<uint64_t, 4> state_{};
  double spare_normal_ = 0.0;
  bool has_spare_normal_ = false;
};

// An independent seed for one component of a run ("init", "stream", "memory", "bandit.samples",
// ...) derived from the user's one seed: FNV-1a of the name mixed with the seed through
// splitmix64, so components never share a sequence and adding one changes no other's.
inline uint64_t derive_seed(uint64_t seed, std::string_view component) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const char c : component) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  uint64_t z = seed ^ h;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace nnr
