// The `attnres` program: one CLI11 app, subcommands registered from launch/cmd_*.cpp.
#include <cstdio>
#include <exception>

#include "launch/commands.h"

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // log lines appear as they happen, also under mpirun
  CLI::App app{"attnres: train transformers with Attention Residuals"};
  app.require_subcommand(1);
  attnres::cli::add_train_command(app);
  attnres::cli::add_eval_command(app);
  attnres::cli::add_data_command(app);
  attnres::cli::add_schedule_command(app);
  attnres::cli::add_plan_command(app);
  attnres::cli::add_checkpoint_command(app);
  attnres::cli::add_export_command(app);
  attnres::cli::add_config_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const attnres::cli::ExitStatus& e) {
    return e.code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attnres: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
