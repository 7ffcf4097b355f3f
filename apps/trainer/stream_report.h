#pragma once
// What a stream run measures, and the files it leaves in its report folder.
// Metric names follow Avalanche where it has one:
//   R[i][j]            accuracy on chunk j's test part after round i (every j, also chunks not yet seen)
//   average_accuracy   ACC, Avalanche's Top1_Acc_Stream after the last round: mean_j<=T-1 R[T-1][j]
//   bwt                backward transfer (Lopez-Paz & Ranzato 2017, Avalanche's StreamBWT with its
//                      sign flipped back): 1/(T-1) Σ_{j<T-1} (R[T-1][j] − R[j][j]); 0 when T = 1
//   forgetting         Avalanche's StreamForgetting (Chaudhry et al. 2018):
//                      1/(T-1) Σ_{j<T-1} max_{l<T-1} (R[l][j] − R[T-1][j]) over l >= j; 0 when T = 1
//   newest_accuracy    R[T-1][T-1]
// Round 0 is the base model trained on chunk 0; rounds 1.. retrain on chunks 1...
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nnr {

using AccuracyMatrix = std::vector<std::vector<double>>;  // R[round][chunk], fractions in [0, 1]

// These throw nnr::InvalidArgument "[report] ..." on an empty or ragged R, or one with fewer chunk
// columns than rounds (R[j][j] must exist); average_accuracy also on a round past the last.
double average_accuracy(const AccuracyMatrix& r, size_t round);  // mean of R[round][0..round]
double backward_transfer(const AccuracyMatrix& r);
double forgetting(const AccuracyMatrix& r);

struct RoundCompute {
  int64_t forward_flops = 0;       // what the layers executed in this round's training steps
  int64_t input_grad_flops = 0;
  int64_t weight_grad_flops = 0;
  int64_t other_flops = 0;         // the method's other work: reward probes and gradients, λ candidates'
                                   // validation, importance estimation (everything but test evaluation)
  int64_t samples = 0;             // training samples processed (repeats counted)
  int64_t parameters_updated = 0;  // parameter entries the round's masks opened
  double train_seconds = 0.0;      // training steps only
  double round_seconds = 0.0;      // the whole round: choice, training, consolidation, memory, evaluation
  int64_t peak_rss_bytes = 0;      // of the process, at the round's end
  int64_t train_flops() const { return forward_flops + input_grad_flops + weight_grad_flops + other_flops; }
};

struct RoundRecord {
  int round = 0;
  std::string chunk;                   // the chunk's name
  std::vector<double> test_accuracy;   // R[round][j] for every chunk j
  double validation_accuracy = 0.0;    // on the validation parts of chunks 0..round
  double lambda = 0.0;                 // the penalty strength the round trained with
  RoundCompute compute;
  nlohmann::json choices = nlohmann::json::object();  // what the bandits chose (arms, pulls, budget)
};

struct StrategyReport {
  std::string strategy;                // preset name or "samples/weights/regularizer"
  std::string description;             // the three choices spelled out
  std::vector<RoundRecord> rounds;
  AccuracyMatrix accuracy() const;     // R from the rounds
  double average_accuracy() const;
  double bwt() const;
  double forgetting() const;
  double newest_accuracy() const;
  // Summed over the retraining rounds (1..): round 0 trains the base model, the same for every
  // strategy of a stream, so it would only blur the comparison.
  int64_t train_flops() const;
  double train_seconds() const;
};

struct StreamReport {
  std::string scenario, data, model, device;
  uint64_t seed = 0;
  std::vector<std::string> chunks;     // chunk names in arrival order
  nlohmann::json settings = nlohmann::json::object();  // epochs, memory, budget, λ, ... as run
  std::vector<StrategyReport> strategies;
  nlohmann::json data_parallel;  // a data-parallel run: ranks and bytes all-reduced; null otherwise
};

// Per strategy: strategy, description, average_accuracy, bwt, forgetting, newest_accuracy,
// train_flops, train_seconds, accuracy_matrix, rounds (every RoundRecord field); plus the
// stream's own fields. A strategy without rounds yet has null metrics.
nlohmann::json to_json(const StreamReport& report);

// Writes report.json (to_json), rounds.csv (one row per strategy and round: strategy, round,
// chunk, ACC so far, validation accuracy, λ, the compute fields, then acc_chunk_<j> per chunk)
// and report.svg (per strategy, average accuracy and each chunk's accuracy across rounds; below
// it, training FLOPs per round) into `dir`, creating it. Each file is written atomically.
// Throws nnr::Error naming the path when `dir` cannot be created or a file cannot be written, and
// nnr::InvalidArgument on a ragged accuracy matrix (before writing anything).
void write_stream_report(const std::string& dir, const StreamReport& report);

// The per-round table and the summary as the CLI prints them (plain text, fixed-width columns).
std::string format_round_table(const StrategyReport& strategy, const std::vector<std::string>& chunks);
std::string format_summary_table(const StreamReport& report);

}  // namespace nnr
