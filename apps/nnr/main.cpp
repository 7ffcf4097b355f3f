// nnr: retrain served neural networks on the data that keeps arriving.
// Exit codes: 0 success, 1 runtime error (bad file, diverged training), 2 usage error, 3 a retraining
// round refused by the regression gate (nothing written).
#include <csignal>
#include <cstdio>
#include <exception>
#include <string>

#include "apps/nnr/commands.h"
#include "engine/core/collective.h"
#include "engine/core/error.h"

int main(int argc, char** argv) {
  std::signal(SIGXFSZ, SIG_IGN);  // a write past RLIMIT_FSIZE fails with EFBIG and is reported, not a silent kill
  CLI::App app{"nnr: retrain a served neural network on new data without forgetting the old.\n"
               "Run 'nnr <command> --help' for a command's flags."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "nnr 0.1.0");
  const nnr::cli::Command train = nnr::cli::add_train(app);
  const nnr::cli::Command eval = nnr::cli::add_eval(app);
  const nnr::cli::Command predict = nnr::cli::add_predict(app);
  const nnr::cli::Command stream = nnr::cli::add_stream(app);
  int exit_code = 0;
  const nnr::cli::Command retrain = nnr::cli::add_retrain(app, exit_code);
#ifdef NNR_HAVE_SERVE
  const nnr::cli::Command serve = nnr::cli::add_serve(app);
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "error: %s\nRun 'nnr --help' or 'nnr <command> --help' for usage.\n", e.what());
    return 2;
  }
  try {
    // `nnr train`, `nnr stream` and `nnr retrain` split their work across the ranks of `mpirun -np N`;
    // every other command would run whole on each rank and race on its outputs.
    if (nnr::launched_ranks() > 1 && !app.got_subcommand("train") && !app.got_subcommand("stream") &&
        !app.got_subcommand("retrain"))
      throw nnr::InvalidArgument("[nnr] " + app.get_subcommands().front()->get_name() + " is not data-parallel yet (" +
                                 std::to_string(nnr::launched_ranks()) +
                                 " ranks): run it without mpirun; nnr train, stream and retrain run under it");
    if (app.got_subcommand("train")) train();
    else if (app.got_subcommand("eval")) eval();
    else if (app.got_subcommand("predict")) predict();
    else if (app.got_subcommand("stream")) stream();
    else if (app.got_subcommand("retrain")) retrain();
#ifdef NNR_HAVE_SERVE
    else if (app.got_subcommand("serve")) serve();
#endif
    return exit_code;
  } catch (const nnr::InvalidArgument& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
