// A Communicator over NCCL for device memory (DESIGN §7), built with the CUDA
// backend. Float buffers given to isend, irecv and allreduce_sum(float) are
// device memory of `dev`; host-side collectives (doubles, bytes, barrier) go
// through the MPI communicator it was made from, which it owns.
//
// - The NCCL unique id is made on rank 0 and broadcast over that MPI group.
// - Each call runs on a communication stream of its own, after an event
//   recorded on the compute stream (dev.stream), so it sees every kernel
//   issued before it; completing a Request (wait, or a true test) makes the
//   compute stream wait for the call's event, so later kernels see its result.
// - A message goes on the communicator and stream of its directed edge
//   (nccl_arrangement.h: one queue per rank deadlocks), its tensors inside
//   one ncclGroupStart/End; collectives on the whole group's. Where the
//   TagSpace allows messages, set-up splits every edge of the group from its
//   communicator and sends one float over each, so that NCCL connects it.
//   NCCL pairs a peer's sends and receives by issue order, not by tag: the
//   executor issues them in matching orders on both peers
//   (tests/parallel/test_executor.cpp, PeersIssueSendsAndReceivesInTheSameOrder),
//   and the tag is only checked against the communicator's TagSpace.
// - Every call's NCCL group is closed even when a call in it throws
//   (parallel/group_guard.h), its errors name it, and every ncclComm_t is
//   watched by the watchdog while it lives (parallel/comm_watch.h).
// - Under ATTNRES_SHARE_GPU, NCCL is set up for ranks sharing a device
//   before its first call (parallel/shared_gpu.h).
#pragma once
#include <memory>

#include "kernels/device.h"
#include "parallel/communicator.h"
#include "parallel/topology.h"

namespace attnres {

std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator> mpi_group,
                                                     const kernels::Device& dev, TagSpace tags = {});

// The groups of a rank on a CUDA device: pipeline, data and tensor become
// NCCL communicators over the MPI ones (which they keep for host-side
// collectives), the tensor collectives an NCCL group on the device's own
// stream; world stays MPI (it only carries host values).
Groups make_nccl_groups(Groups mpi, const kernels::Device& dev, TagSpace pipeline_tags);

}  // namespace attnres
