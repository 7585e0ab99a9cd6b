// The `attnres` program: one CLI11 app, subcommands registered from launch/cmd_*.cpp.
#include <cstdio>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "launch/commands.h"
#include "runtime/stop_signal.h"

// CLI11 calls an unknown word where a subcommand belongs "A subcommand is
// required"; name it, at every level (`attnres frob`, `attnres checkpoint frob`).
static void check_command_name(CLI::App& app, int argc, char** argv, int at = 1, const std::string& above = "") {
  const std::vector<CLI::App*> subs = app.get_subcommands([](const CLI::App*) { return true; });
  if (subs.empty() || at >= argc || argv[at][0] == '-') return;
  std::string known;
  for (CLI::App* c : subs) {
    if (c->get_name() == argv[at]) return check_command_name(*c, argc, argv, at + 1, above + argv[at] + " ");
    known += (known.empty() ? "" : ", ") + c->get_name();
  }
  throw std::invalid_argument("unknown command '" + above + argv[at] + "' (expected " +
                              (above.empty() ? "" : above + "followed by ") + "one of " + known + ")");
}

int main(int argc, char** argv) {
  // A stop signal while a run starts (config, MPI, set-up) is kept for its
  // first step boundary, not the default death (exit 143, nothing saved).
  if (argc > 1 && std::string(argv[1]) == "train") attnres::install_stop_signals();
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // log lines appear as they happen, also under mpirun
  CLI::App app{"attnres: train transformers with Attention Residuals"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "attnres " ATTNRES_VERSION " (" ATTNRES_GIT_COMMIT ")");
  attnres::cli::add_train_command(app);
  attnres::cli::add_eval_command(app);
  attnres::cli::add_data_command(app);
  attnres::cli::add_schedule_command(app);
  attnres::cli::add_plan_command(app);
  attnres::cli::add_checkpoint_command(app);
  attnres::cli::add_export_command(app);
  attnres::cli::add_config_command(app);
  attnres::cli::add_generate_command(app);
  try {
    check_command_name(app, argc, argv);
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11's own statuses (105-114) are for its tests; a bad command line is 1, --help 0.
    return app.exit(e) == 0 ? 0 : 1;
  } catch (const attnres::cli::ExitStatus& e) {
    return e.code;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "attnres: error: out of memory (std::bad_alloc): the model, its activations or the data "
                         "did not fit; `attnres plan` shows what each rank needs\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attnres: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
