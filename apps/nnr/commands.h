#pragma once
// The nnr subcommands. Each add_* registers its flags on the app and returns the function that
// runs it after parsing; the functions throw nnr::Error / nnr::InvalidArgument, which main()
// turns into "error: ..." and exit code 1 / 2.
#include <CLI/CLI.hpp>

#include <functional>

namespace nnr::cli {

using Command = std::function<void()>;

Command add_train(CLI::App& app);
Command add_eval(CLI::App& app);
Command add_predict(CLI::App& app);
Command add_stream(CLI::App& app);
// Sets exit_code to 3 when the regression gate refuses the round.
Command add_retrain(CLI::App& app, int& exit_code);
#ifdef NNR_HAVE_SERVE
// Runs until SIGINT/SIGTERM (then exits 0).
Command add_serve(CLI::App& app);
#endif

}  // namespace nnr::cli
