// ATTNRES_FAULT parsing and firing, and the watchdog: death tests run the
// statement in a child process and check how it ended and what it printed.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "parallel/comm_watch.h"
#include "runtime/config.h"
#include "runtime/fault_injection.h"
#include "runtime/watchdog.h"

using namespace attnres;
namespace fs = std::filesystem;

namespace {

void expect_parse_error(const std::string& text, const std::string& needle) {
  try {
    parse_fault_spec(text);
    ADD_FAILURE() << "no error for '" << text << "'";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("ATTNRES_FAULT='" + text + "'"), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

// Death tests fork ("fast" style). The parent never reaches a fault point, so
// each child reads ATTNRES_FAULT afresh at its first one.
using FaultDeathTest = ::testing::Test;

// A device communicator as the watchdog sees it (parallel/comm_watch.h):
// its asynchronous error, and an abort that says it happened.
struct FakeComm : AsyncComm {
  std::string name, error;
  FakeComm(std::string n, std::string e) : name(std::move(n)), error(std::move(e)) { watch_comm(this); }
  ~FakeComm() override { unwatch_comm(this); }
  std::string async_error() override { return error; }
  void abort() override { std::fprintf(stderr, "aborted %s\n", name.c_str()); }
};

}  // namespace

TEST(FaultSpec, ParsesEveryKey) {
  EXPECT_FALSE(parse_fault_spec("").has_value());
  const auto s = parse_fault_spec("rank=1,step=7,at=checkpoint_write,once=/tmp/m");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->rank, 1);
  EXPECT_EQ(s->step, 7);
  EXPECT_EQ(s->at, "checkpoint_write");
  EXPECT_EQ(s->once, "/tmp/m");
  const auto h = parse_fault_spec("at=hang,step=3,rank=0");  // any order, once optional
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->at, "hang");
  EXPECT_EQ(h->step, 3);
  EXPECT_EQ(h->once, "");
  for (const char* at : {"nan", "sigterm", "sigusr1", "sigint"})
    EXPECT_EQ(parse_fault_spec(std::string("rank=0,step=1,at=") + at)->at, at);
  EXPECT_THROW(parse_fault_spec("rank=0,step=1,at=sigkill"), std::runtime_error);
}

TEST(FaultSpec, RejectsMalformedValues) {
  expect_parse_error("rank=1,step=7", "at= is missing");
  expect_parse_error("step=7,at=step", "rank= is missing");
  expect_parse_error("rank=1,at=step", "step= is missing");
  expect_parse_error("rank=x,step=7,at=step", "rank='x' is not a non-negative integer");
  expect_parse_error("rank=1,step=-2,at=step", "step='-2' is not a non-negative integer");
  expect_parse_error("rank=1,step=7,at=later", "at='later' is not a fault point");
  expect_parse_error("rank=1,step=7,at=step,when=now", "unknown key 'when'");
  expect_parse_error("rank=1,step=7,at=step,", "'' is not key=value");
  expect_parse_error("rank=1,step=7,at=step,once=", "once= needs a marker file path");
}

TEST_F(FaultDeathTest, KillsTheNamedRankAtTheNamedStepOnly) {
  EXPECT_EXIT(
      {
        setenv("ATTNRES_FAULT", "rank=2,step=5,at=step", 1);
        setenv("OMPI_COMM_WORLD_RANK", "2", 1);
        fault_point("step", 4);              // another step
        fault_point("checkpoint_write", 5);  // another point
        setenv("OMPI_COMM_WORLD_RANK", "1", 1);
        fault_point("step", 5);  // another rank (the rank is read at every call)
        setenv("OMPI_COMM_WORLD_RANK", "2", 1);
        fault_point("step", 5);
        std::exit(0);
      },
      ::testing::KilledBySignal(SIGKILL), "rank 2 killed \\(SIGKILL\\) at the end of step 5");
}

TEST_F(FaultDeathTest, KillsInsideACheckpointWrite) {
  EXPECT_EXIT(
      {
        setenv("ATTNRES_FAULT", "rank=0,step=6,at=checkpoint_write", 1);
        unsetenv("OMPI_COMM_WORLD_RANK");
        fault_point("step", 6);
        fault_point("checkpoint_write", 6);
        std::exit(0);
      },
      ::testing::KilledBySignal(SIGKILL), "killed \\(SIGKILL\\) inside the checkpoint write of step 6");
}

TEST_F(FaultDeathTest, OnceMarkerFiresOnlyTheFirstTime) {
  const fs::path marker = fs::temp_directory_path() / ("attnres_fault_once_" + std::to_string(getpid()));
  fs::remove(marker);
  const std::string spec = "rank=0,step=2,at=step,once=" + marker.string();
  EXPECT_EXIT(
      {
        setenv("ATTNRES_FAULT", spec.c_str(), 1);
        unsetenv("OMPI_COMM_WORLD_RANK");
        fault_point("step", 2);
        std::exit(0);
      },
      ::testing::KilledBySignal(SIGKILL), "killed");
  EXPECT_TRUE(fs::exists(marker));  // created before the kill
  EXPECT_EXIT(
      {
        setenv("ATTNRES_FAULT", spec.c_str(), 1);
        unsetenv("OMPI_COMM_WORLD_RANK");
        fault_point("step", 2);  // the marker exists: no fault
        std::exit(7);
      },
      ::testing::ExitedWithCode(7), "");
  fs::remove(marker);
}

TEST_F(FaultDeathTest, MalformedSpecIsAnErrorAtTheFirstFaultPoint) {
  EXPECT_EXIT(
      {
        setenv("ATTNRES_FAULT", "rank=0,step=2,at=soon", 1);
        try {
          fault_point("step", 1);
        } catch (const std::runtime_error& e) {
          std::fprintf(stderr, "%s\n", e.what());
          std::exit(3);
        }
        std::exit(0);
      },
      ::testing::ExitedWithCode(3), "at='soon' is not a fault point");
}

TEST_F(FaultDeathTest, WatchdogEndsAHungRankWithItsStep) {
  EXPECT_EXIT(
      {
        setenv("ATTNRES_FAULT", "rank=0,step=3,at=hang", 1);
        unsetenv("OMPI_COMM_WORLD_RANK");
        const Watchdog w(1, 0);
        for (int step = 1; step <= 5; ++step) {
          heartbeat(step);
          fault_point("step", step);  // hangs at step 3
        }
        std::exit(0);
      },
      ::testing::ExitedWithCode(kWatchdogExitCode),
      "rank 0 hangs at the end of step 3(.|\n)*attnres: rank 0: no progress for 1 s \\(last heartbeat at step 3\\); aborting");
}

// An asynchronous error ends the process within a polling period, heartbeats
// or not, after every watched communicator is aborted.
TEST_F(FaultDeathTest, WatchdogAbortsTheCommunicatorsOnAnAsynchronousError) {
  EXPECT_EXIT(
      {
        FakeComm edge("edge 0->1", "");
        FakeComm group("pipeline group", "NCCL: asynchronous error: remote process exited");
        const Watchdog w(1, 0);
        for (int i = 0; i < 60; ++i) {  // 3 s of steps, beating every 50 ms
          heartbeat(2);
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        std::exit(0);
      },
      ::testing::ExitedWithCode(kWatchdogExitCode),
      "attnres: rank 0: NCCL: asynchronous error: remote process exited \\(last heartbeat at step 2\\); "
      "aborting\n(.|\n)*aborted edge 0->1\n(.|\n)*aborted pipeline group");
}

// A hang aborts the communicators too, so that no peer waits on this rank's calls.
TEST_F(FaultDeathTest, WatchdogAbortsTheCommunicatorsOnAHang) {
  EXPECT_EXIT(
      {
        FakeComm group("data group", "");
        const Watchdog w(1, 0);
        std::this_thread::sleep_for(std::chrono::seconds(3));
        std::exit(0);
      },
      ::testing::ExitedWithCode(kWatchdogExitCode),
      "rank 0: no progress for 1 s \\(last heartbeat at step 0\\); aborting\n(.|\n)*aborted data group");
}

TEST(Watchdog, HeartbeatsKeepItQuietAndStoppingIsPrompt) {
  const auto t0 = std::chrono::steady_clock::now();
  {
    const Watchdog w(1, 0);
    // 2.5 s of work, beating every 100 ms: longer than the timeout in total, never idle for it.
    for (int i = 0; i < 25; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      heartbeat(i + 1);
    }
  }  // the process is still alive here: the watchdog did not fire
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 3.5);  // the destructor does not wait out a polling period of its own
  const Watchdog off(0, 0);  // 0 = off: no thread, and a second watchdog may start after the first
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  heartbeat();
}

TEST(Watchdog, TimeoutKeyDefaultsOverridesAndRejectsNegatives) {
  EXPECT_EQ(parse_config("", "t.yaml", {}).train.watchdog_timeout, 600);
  const Config c = parse_config("train: {watchdog_timeout: 0}\n", "t.yaml", {});
  EXPECT_EQ(c.train.watchdog_timeout, 0);
  EXPECT_EQ(parse_config(config_to_yaml(c), "rt.yaml", {}).train.watchdog_timeout, 0);
  EXPECT_EQ(parse_config("", "t.yaml", {"train.watchdog_timeout=3"}).train.watchdog_timeout, 3);
  try {
    parse_config("", "t.yaml", {"train.watchdog_timeout=-1"});
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.watchdog_timeout"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("-1"), std::string::npos) << e.what();
  }
}
