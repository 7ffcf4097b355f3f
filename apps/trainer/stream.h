#pragma once
// Streams: the ordered chunks of labelled data a served model sees, one retraining round each.
// Every chunk has a train part (what a round may train on), a validation part held out from the
// chunk's training data (every reward, every λ or strategy choice and the regression gate read it)
// and a test part (reports only; nothing is ever chosen on it).
//
// Scenarios (StreamOptions::scenario):
//   split     class-incremental: the classes cut into `chunks` consecutive groups (Fashion-MNIST,
//             5 chunks: classes {0,1}, {2,3}, ...); single head, all classes in the output.
//   permuted  domain-incremental: chunk 0 the identity, chunk t a fixed seeded pixel permutation
//             (the same for its train, validation and test parts).
//   rotated   domain-incremental: chunk t every image rotated by t * rotation_step degrees
//             (bilinear, zero outside; images are [C, H, W]).
//   drift     a serving stream: the training set dealt into `chunks` disjoint chunks whose class
//             priors shift gradually; `initial_classes` classes are there from the start and the
//             rest appear part-way; a chunk's test part follows its class mix; label_noise flips
//             that fraction of training labels (not validation or test labels) to another class
//             of the same chunk. The exact priors are in stream.cpp (DriftPriors).
//   files     chunks given as data specs in arrival order, "TRAIN[@TEST]"; without @TEST the last
//             `holdout` fraction of TRAIN is the chunk's test part.
// All randomness comes from `seed`; the same options give the same chunks on every machine.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/data/dataset.h"

namespace nnr {

struct StreamChunk {
  std::string name;              // e.g. "classes 0-1", "permutation 2", "rotation 45", "drift 7", file spec
  Dataset train;
  Dataset validation;            // held out from the chunk's training data
  Dataset test;
  std::vector<int32_t> classes;  // classes present in `train`, increasing
};

struct StreamOptions {
  std::string scenario = "split";     // split | permuted | rotated | drift | files
  int chunks = 5;                     // split/permuted/rotated/drift; files: ignored (one per spec)
  double validation_fraction = 0.1;   // of each chunk's training data, in [0, 0.9]
  uint64_t seed = 0;
  int64_t train_samples = 0;          // > 0: keep a seeded random subset of that many training
                                      // samples per chunk (before the validation split); 0: all
  int64_t test_samples = 0;           // > 0: at most that many test samples per chunk; 0: all
  double rotation_step = 0.0;         // rotated: degrees per chunk; 0: 180 / chunks
  int initial_classes = 0;            // drift: classes present from chunk 0; 0: half of them
  double label_noise = 0.0;           // drift: fraction of training labels flipped, in [0, 1)
  std::vector<std::string> chunk_specs;  // files: "TRAIN[@TEST]" data specs (load_dataset)
  double holdout = 0.2;               // files: test fraction of a chunk without @TEST, in (0, 1)
};

// The chunks of a stream built from a data set's train and test splits (split, permuted,
// rotated, drift; "files" is make_file_stream's). Throws nnr::InvalidArgument naming the bad option
// (too many chunks for the classes, a fraction out of range, unlabelled data, mismatched sample
// shapes, a chunk left with fewer than 2 training samples or no test samples).
std::vector<StreamChunk> make_stream(const Dataset& train, const Dataset& test, const StreamOptions& options);

// The chunks of a `files` stream: loads every spec (load_dataset); all must share one sample
// shape, and num_classes is the largest of them for every chunk.
std::vector<StreamChunk> make_file_stream(const StreamOptions& options);

// One chunk of a `files` stream: the spec "TRAIN[@TEST]" arriving as chunk `index` (0-based). Its
// validation split depends only on options.seed and the index, so a chunk given to `nnr retrain`
// alone is cut exactly as the same chunk of a whole `files` stream. num_classes is the chunk's own.
StreamChunk make_file_chunk(const std::string& spec, int index, const StreamOptions& options);

const std::vector<std::string>& stream_scenarios();

}  // namespace nnr
