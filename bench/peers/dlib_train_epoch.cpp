// dlib peer of bench/train_epoch.cpp: MLP 784-256-256-10 on Fashion-MNIST, batch 128, SGD with
// momentum 0.9, lr 0.01; one warm-up epoch, then one timed epoch. dlib's fc layers call the
// system BLAS (OpenBLAS here; its threads are set by OPENBLAS_NUM_THREADS). Prints one JSON line.
// Built by bench/mlp_peers.sh against Debian's libdlib-dev.
#include <sys/resource.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <dlib/dnn.h>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using namespace dlib;

using net_type = loss_multiclass_log<fc<10, relu<fc<256, relu<fc<256, input<matrix<float>>>>>>>>;

static std::vector<unsigned char> read_gz(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path);
  std::vector<unsigned char> out;
  unsigned char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + n);
  gzclose(f);
  return out;
}

int main() {
  const std::string dir = "/usr/share/datasets/fashion-mnist/";
  const auto pixels = read_gz(dir + "train-images-idx3-ubyte.gz");
  const auto labels = read_gz(dir + "train-labels-idx1-ubyte.gz");
  const size_t n = labels.size() - 8;
  std::vector<matrix<float>> images(n);
  std::vector<unsigned long> y(n);
  for (size_t i = 0; i < n; ++i) {
    images[i].set_size(28, 28);
    for (long r = 0; r < 28; ++r)
      for (long c = 0; c < 28; ++c) images[i](r, c) = pixels[16 + i * 784 + r * 28 + c] / 255.0f;
    y[i] = labels[8 + i];
  }

  net_type net;
  dnn_trainer<net_type> trainer(net, sgd(0, 0.9));
  trainer.set_learning_rate(0.01);
  trainer.set_min_learning_rate(0.01);  // no automatic decay: a fixed-rate epoch like the peers
  trainer.set_mini_batch_size(128);
  trainer.be_quiet();

  std::mt19937 rng(0);
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::vector<matrix<float>> bx;
  std::vector<unsigned long> by;
  auto epoch = [&]() {
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t s = 0; s < n; s += 128) {
      bx.clear();
      by.clear();
      for (size_t i = s; i < std::min(n, s + 128); ++i) {
        bx.push_back(images[order[i]]);
        by.push_back(y[order[i]]);
      }
      trainer.train_one_step(bx, by);
    }
    trainer.get_net();  // waits for the trainer's thread to finish the queued steps
  };
  epoch();
  const auto start = std::chrono::steady_clock::now();
  epoch();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf("{\"engine\": \"dlib\", \"model\": \"mlp:784-256-256-10\", \"epoch_seconds\": %.4f, "
              "\"final_loss\": %.4f, \"peak_rss_mb\": %.1f}\n",
              seconds, trainer.get_average_loss(), usage.ru_maxrss / 1024.0);
  return 0;
}
