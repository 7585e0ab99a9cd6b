// Which NCCL communicator, and so which CUDA stream, each call of the NCCL
// communicator runs on (docs/CUDA.md, "Point-to-point messages"). The NCCL
// communicator (nccl_communicator.cpp) and the CPU model of NCCL's rules
// (tests/parallel/fake_nccl_communicator.h) both follow this header.
//
// NCCL runs a communicator's calls on its stream in issue order, one at a
// time, and a send finishes only when the peer's matching receive runs. With
// every message of a rank on one communicator and stream, a receive the
// executor posts ahead blocks the send behind it that the peer waits for: under
// the model all 42 layouts of tests/parallel/test_nccl_semantics.cpp deadlock
// that way, and so they do with a communicator per pair of ranks. A
// communicator per directed edge (src -> dst), each on its own stream, holds
// only sends on src and only receives on dst, both in the order the executor
// issues them (test_executor.cpp, PeersIssueSendsAndReceivesInTheSameOrder):
// a message waits only for its peer to reach it, and every schedule runs to
// the end. Grouping each step's sends and receives instead would need the
// executor to say where a step ends, and would hold every call of a group
// until the slowest (a receive posted ahead) completed.
#pragma once
#include <algorithm>
#include <utility>
#include <vector>

namespace attnres {

// The collectives' queue: the whole group's communicator and its stream.
constexpr int kGroupQueue = -1;

// The queue of a message from src to dst among `size` ranks: its directed
// edge's communicator and stream.
inline int p2p_queue(int src, int dst, int size) { return src * size + dst; }

// Every directed edge of `size` ranks, in rounds where no rank appears twice:
// ncclCommSplit gives a rank one communicator per call, so a round is one
// split. Pairs by the circle method (size − 1 rounds, one more for a bye
// when size is odd), each pair's two directions in two rounds.
inline std::vector<std::vector<std::pair<int, int>>> edge_rounds(int size) {
  const int n = size + size % 2;
  std::vector<std::vector<std::pair<int, int>>> rounds;
  for (int t = 0; t + 1 < n; ++t) {
    std::vector<std::pair<int, int>> up, down;
    for (int i = 0; i < n / 2; ++i) {
      const int a = i == 0 ? n - 1 : (t + i) % (n - 1), b = (t - i + n - 1) % (n - 1);
      if (a >= size || b >= size) continue;  // the bye
      up.push_back({std::min(a, b), std::max(a, b)});
      down.push_back({std::max(a, b), std::min(a, b)});
    }
    if (up.empty()) continue;  // one rank: no edges
    rounds.push_back(up);
    rounds.push_back(down);
  }
  return rounds;
}

}  // namespace attnres
