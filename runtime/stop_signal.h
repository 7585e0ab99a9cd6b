// Save on signal (DESIGN §10). SIGTERM and SIGUSR1 (a scheduler preempting
// the job, or SLURM's warning before its time limit), SIGHUP (the terminal
// went away: resumable like a preemption) and SIGINT (the user) only set a
// flag; SIGUSR2 is ignored. The training loop asks at every step boundary; the ranks
// agree, save a checkpoint of that step and exit with the status below, so a
// supervisor or scheduler can tell "resume me" from "the user stopped me".
#pragma once

namespace attnres {

constexpr int kPreemptedExitCode = 75;    // EX_TEMPFAIL: saved on SIGTERM/SIGUSR1/SIGHUP; resume
constexpr int kInterruptedExitCode = 130;  // saved on SIGINT: stopped by the user

// Installs the handlers (idempotent). Call before training starts.
void install_stop_signals();

// The first stop signal this process received since start, or 0.
int received_stop_signal();

}  // namespace attnres
