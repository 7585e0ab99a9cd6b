// Communicators over MPI on host memory, and the MPI process lifetime. This is
// the only code that calls MPI; the rest of the program holds Communicators.
// <mpi.h> stays out of this header, so no other layer can reach MPI directly.
//
// Tag encoding: a list of n tensors is sent as n MPI messages of MPI_FLOAT,
// message i of tag {mb, chunk, dir} carrying MPI tag
//   ((mb · chunks + chunk) · 2 + dir) · max_tensors + i
// with (chunks, max_tensors) from the communicator's TagSpace. The tags are
// unique per (mb, chunk, dir, i), so messages posted in any order never match
// the wrong buffer. The largest tag, microbatches · chunks · 2 · max_tensors − 1,
// must not exceed MPI_TAG_UB (2^31 − 1 in Open MPI; the MPI standard only
// guarantees 32767).
#pragma once
#include <memory>

#include "parallel/communicator.h"
#include "parallel/topology.h"

namespace attnres {

// The one MPI initialisation of a process, for the trainer and the
// multi-process tests alike: MPI_Init_thread at MPI_THREAD_FUNNELED. OpenMP
// threads, the watchdog and the asynchronous checkpoint writer run beside the
// main thread, but only the main thread calls MPI. A program not started by
// mpirun becomes a world of one. MPI is finalized at exit; destroy every
// communicator before then. Later calls do nothing. Throws std::runtime_error
// if MPI provides a lower thread level.
void init_mpi(int* argc = nullptr, char*** argv = nullptr);

// The MPI tag of tensor `index` of message `tag`. Throws std::logic_error if
// tag or index lie outside `space`.
int encode_tag(const TagSpace& space, MessageTag tag, int index);

// Every process (a duplicate of MPI_COMM_WORLD). Throws std::runtime_error if
// `tags` does not fit MPI_TAG_UB, std::logic_error before init_mpi.
std::unique_ptr<Communicator> make_mpi_world(TagSpace tags = {});

// The processes on this node (those sharing its memory), for what is decided
// per node: threads per rank and the sgemm peak.
std::unique_ptr<Communicator> make_mpi_node();

// Splits the world by `topo` (which must describe this process's world rank
// and size). `pipeline_tags` is the tag space of the pipeline group; the
// other groups are for collectives only.
Groups make_mpi_groups(const Topology& topo, TagSpace pipeline_tags);

}  // namespace attnres
