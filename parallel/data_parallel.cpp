#include "parallel/data_parallel.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace attnres {

namespace k = kernels;

void gather_parts_to_root(Communicator& data, const k::Device& dev, const float* mine, size_t n, float* whole,
                          size_t total) {
  const std::vector<float> host = k::to_host(dev, mine, n);
  const std::vector<std::string> parts = data.gather(host.data(), n * sizeof(float), 0);
  if (data.rank() != 0) return;
  char* dst = reinterpret_cast<char*>(whole);
  for (const std::string& p : parts) dst = std::copy(p.begin(), p.end(), dst);
  if (dst != reinterpret_cast<char*>(whole + total))
    throw std::logic_error("ZeRO-1: the parts of a buffer of " + std::to_string(total) + " floats do not add up to it");
}

DataParallelSync::DataParallelSync(Communicator* data, std::vector<Chunk>& chunks, std::vector<int> ids)
    : data_(data), chunks_(chunks), ids_(std::move(ids)), started_(chunks.size(), false), parts_(chunks.size()),
      grad_parts_(chunks.size()), gathers_(chunks.size()) {}

DataParallelSync::~DataParallelSync() {
  for (std::vector<Request>* rs : {&pending_, &gathers_})
    for (Request& r : *rs)
      if (r.pending()) data_->wait(r);
}

void DataParallelSync::shard() {
  if (!data_) return;
  for (size_t i = 0; i < chunks_.size(); ++i) {
    parts_[i] = split_evenly(chunks_[i].layout.total, data_->size());
    // The largest part: the reduce-scatter's receive buffer.
    grad_parts_[i] = k::DeviceBuffer<float>(chunks_[i].dev, parts_[i].front());
  }
}

void DataParallelSync::start(size_t i) {
  if (started_[i]) throw std::logic_error("executor: chunk " + std::to_string(ids_[i]) + " has two REDUCE_GRADS");
  started_[i] = true;
  Chunk& c = chunks_[i];
  chunk_reduce_replicated_grads(c);
  if (!data_) return;
  if (parts_[i].empty()) pending_.push_back(data_->iallreduce_sum(c.grads.data(), c.layout.total));
  else pending_.push_back(data_->ireduce_scatter_sum(c.grads.data(), grad_parts_[i].data(), parts_[i]));
}

void DataParallelSync::progress() {
  for (std::vector<Request>* rs : {&pending_, &gathers_})
    for (Request& r : *rs)
      if (r.pending()) data_->test(r);
}

void DataParallelSync::finish() {
  for (size_t i = 0; i < chunks_.size(); ++i) {
    if (!started_[i]) throw std::logic_error("executor: chunk " + std::to_string(ids_[i]) + " has no REDUCE_GRADS");
    started_[i] = false;
  }
  if (!data_) return;
  data_->wait_all(pending_);
  pending_.clear();
}

GradPart DataParallelSync::part(size_t i) {
  Chunk& c = chunks_[i];
  if (parts_[i].empty()) return {0, c.layout.total, c.grads.data()};
  const int r = data_->rank();
  return {part_offset(parts_[i], r), parts_[i][size_t(r)], grad_parts_[i].data()};
}

// The weights the chunk reads, in the run's precision: what the all-gather moves.
static TensorRef weights(Chunk& c) {
  if (c.cfg.bf16()) return {c.compute.data(), c.compute.size(), k::DType::BF16};
  return {c.params.data(), c.params.size(), k::DType::F32};
}

void DataParallelSync::gather_parameters() {
  for (size_t i = 0; i < chunks_.size(); ++i)
    if (!parts_[i].empty()) gathers_[i] = data_->iallgather_parts(weights(chunks_[i]), parts_[i]);
}

void DataParallelSync::wait_parameters(size_t i) {
  if (gathers_[i].pending()) data_->wait(gathers_[i]);
}

void DataParallelSync::wait_parameters() {
  for (size_t i = 0; i < chunks_.size(); ++i) wait_parameters(i);
}

}  // namespace attnres
