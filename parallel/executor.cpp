#include "parallel/executor.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstdio>
#include <deque>
#include <stdexcept>

#include "kernels/memory.h"
#include "kernels/ops.h"
#include "models/recompute.h"
#include "parallel/data_parallel.h"
#include "parallel/memory_plan.h"

namespace attnres {

namespace k = kernels;

namespace {
double now_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

double PipelineExecutor::trace_clock_us() const { return now_us() - t0_us_; }

void PipelineExecutor::trace_span(std::string name, const char* category, double start_us) {
  if (tracing_) trace_.push_back({std::move(name), category, start_us, trace_clock_us() - start_us});
}

// Everything one microbatch holds on one local chunk, from its forward input
// to its last backward. Buffers are allocated once; slots are reused. Which
// microbatch holds a slot is the SlotTable's (same index).
struct PipelineExecutor::Slot {
  ChunkActs acts;                  // empty under recomputation (Local::recompute)
  RecomputeKept kept;              // recomputation: what the microbatch keeps between its passes
  ResidualState out;               // the forward's output stream
  std::vector<float*> recv_vals;   // forward payload into this chunk (in_hop order)
  std::vector<float*> recv_grads;  // backward payload from the next chunk (out_grad_hop order)
  // bf16 hops (hop_receive_wire_buffers): each received message's bf16 copy, in payload order.
  std::vector<k::bf16*> wire_recv_vals, wire_recv_grads;
  std::vector<float*> own_grads;   // per source index: gradient buffers this slot owns
  float* dhidden = nullptr;        // standard mode, last chunk: gradient of the output
  std::vector<float*> grads;       // per source index in the output stream: its gradient
  ResidualState in, din;
  Request recv_f, recv_b;
  bool recv_f_posted = false, recv_b_posted = false;
  bool copied_in = false, copied_back = false;  // COPY_F / COPY_B filled recv_vals / recv_grads
};

// The staging buffers of one chunk's messages in one direction
// (ModelConfig::sends_in_flight of them, in the hop's element type): a
// message is copied, or rounded to bf16, into a free one and sent from
// there, so the slot it came from is free at once.
struct PipelineExecutor::SendPool {
  std::vector<std::vector<TensorRef>> bufs;      // per buffer, one per payload tensor
  std::vector<int> free;                         // buffers not in flight
  std::deque<std::pair<Request, int>> in_flight;  // oldest first, with its buffer
};

struct PipelineExecutor::Local {
  int chunk = 0;
  Chunk* model = nullptr;
  HopPayload in_hop, out_hop;            // forward: into this chunk; into the next (empty for the last)
  HopPayload in_grad_hop, out_grad_hop;  // the same hops' backward payloads
  RecomputedChunk recompute;   // full or block recomputation; empty otherwise
  SendPool sends_f, sends_b;   // into the next chunk / back into the previous one, when on another rank
  int n_in = 0, n_out = 0;     // sources in the input / output stream
  std::vector<Slot> slots;
  std::vector<k::DeviceBuffer<float>> buffers;  // every hop buffer of every slot
  std::vector<k::DeviceBuffer<k::bf16>> wire;   // bf16 hops: every slot's wire buffers
};

PipelineExecutor::PipelineExecutor(const ModelConfig& cfg, const Partition& part, Schedule schedule,
                                   int pp_rank, Communicator* pipe, Communicator* data, int micro_batch,
                                   uint64_t seed, HopCaching caching, k::Device dev,
                                   const TensorParallel& tp)
    : cfg_(cfg), part_(part), schedule_(std::move(schedule)), rank_(pp_rank), pipe_(pipe), data_(data),
      micro_batch_(micro_batch), caching_(caching), dev_(dev), table_(schedule_, pp_rank),
      stream_floats_(size_t(chunk_dims(cfg, micro_batch, tp).Nr) * cfg.d_model) {
  const int P = schedule_.P, C = schedule_.num_chunks();
  if (part_.num_chunks() != C || int(schedule_.placement.size()) != C)
    throw std::logic_error("executor: partition and schedule disagree on chunks");
  if (P > 1 && (!pipe_ || pipe_->size() != P)) throw std::logic_error("executor: pipeline communicator size != P");

  const std::vector<int> slots = activation_slots(schedule_, rank_);

  const std::vector<int> mine = schedule_.chunks_of(rank_);
  local_index_.assign(size_t(C), -1);
  chunks_.resize(mine.size());
  for (size_t i = 0; i < mine.size(); ++i) {
    const int c = mine[i];
    local_index_[size_t(c)] = int(i);
    const ChunkRange& r = part_.chunks[size_t(c)];
    chunk_init(chunks_[size_t(i)], cfg_, r.first, r.last, micro_batch_, seed, dev_, tp);
    chunks_[size_t(i)].progress = [this] { let_messages_move(); };
    auto L = std::make_unique<Local>();
    L->chunk = c;
    L->model = &chunks_[size_t(i)];
    if (c > 0) {
      L->in_hop = hop_payload(cfg_, part_, c, caching_.forward);
      L->in_grad_hop = hop_payload(cfg_, part_, c, caching_.backward);
    }
    if (c + 1 < C) {
      L->out_hop = hop_payload(cfg_, part_, c + 1, caching_.forward);
      L->out_grad_hop = hop_payload(cfg_, part_, c + 1, caching_.backward);
    }
    // The payload leaves out what this rank holds from an earlier chunk: that
    // chunk must be one the schedule places here.
    const int held = L->in_hop.cached_from;
    if (held >= 0 && schedule_.placement[size_t(held)] != rank_)
      throw std::logic_error("executor: the hop into chunk " + std::to_string(c) + " caches chunk " +
                             std::to_string(held) + "'s sources, but the schedule places chunk " +
                             std::to_string(held) + " on rank " +
                             std::to_string(schedule_.placement[size_t(held)]) + ", not " +
                             std::to_string(rank_));
    if (cfg_.attnres()) {
      L->n_in = sources_at(cfg_, r.first);
      L->n_out = sources_at(cfg_, r.last);
    }
    L->slots.resize(size_t(slots[size_t(c)]));
    recompute_init(L->recompute, *L->model);
    // What a later segment reads or leaves the chunk must outlive the shared arena.
    const int kept = recompute_kept_outputs(cfg_, r.first, r.last);
    auto alloc = [&] { return L->buffers.emplace_back(dev_, stream_floats_).data(); };
    for (Slot& s : L->slots) {
      if (!L->recompute.on()) acts_init(s.acts, *L->model);
      for (int t = 0; t < kept; ++t) s.kept.kept.push_back(alloc());
      for (size_t t = 0; t < L->in_hop.tensors.size(); ++t) s.recv_vals.push_back(alloc());
      for (size_t t = 0; t < L->out_grad_hop.tensors.size(); ++t) s.recv_grads.push_back(alloc());
      s.own_grads.assign(size_t(L->n_out), nullptr);
      for (const HopTensor& h : L->in_grad_hop.tensors)
        if (h.kind == HopTensor::Source) s.own_grads[size_t(h.source)] = alloc();
      for (int src = (c == 0 ? 0 : L->n_in); src < L->n_out; ++src) s.own_grads[size_t(src)] = alloc();
      if (!cfg_.attnres() && r.has_head) s.dhidden = alloc();
      s.grads.assign(size_t(L->n_out), nullptr);
      if (bf16_hops()) {
        auto wire = [&](std::vector<k::bf16*>& to, const HopPayload& hop) {
          for (size_t t = 0; t < hop.tensors.size(); ++t) to.push_back(L->wire.emplace_back(dev_, stream_floats_).data());
        };
        wire(s.wire_recv_vals, L->in_hop), wire(s.wire_recv_grads, L->out_grad_hop);
      }
    }
    if (c + 1 < C && schedule_.placement[size_t(c + 1)] != rank_) init_send_pool(*L, L->sends_f, L->out_hop);
    if (c > 0 && schedule_.placement[size_t(c - 1)] != rank_) init_send_pool(*L, L->sends_b, L->in_grad_hop);
    locals_.push_back(std::move(L));
  }
  dp_ = std::make_unique<DataParallelSync>(data_, chunks_, mine);
  weights_ready_.assign(chunks_.size(), false);
  losses_ = k::DeviceBuffer<double>(dev_, size_t(schedule_.M));
  fwd_bytes_.assign(size_t(C), 0);
  bwd_bytes_.assign(size_t(C), 0);
  run_start_ = k::event_create(dev_);
  t0_us_ = now_us();
}

// Between sublayers: pending hops and dp sums move while this rank computes.
void PipelineExecutor::let_messages_move() {
  if (pipe_) pipe_->progress();
  if (data_) dp_->progress();
  land_flights();
}

// Tracing: message r (just posted) is on the wire from now.
void PipelineExecutor::fly(const char* what, MessageTag tag, Request& r) {
  if (!tracing_) return;
  flights_.push_back({std::string(what) + "(mb=" + std::to_string(tag.mb) + ",hop=" + std::to_string(tag.chunk) + ")",
                      now_us(), &r});
}

// Tracing: a step's trace holds every message of the step, so its last sends
// are waited for (every peer posts its receives within its own step).
void PipelineExecutor::land_sends() {
  for (auto& L : locals_)
    for (SendPool* p : {&L->sends_f, &L->sends_b})
      for (auto& [req, b] : p->in_flight) pipe_->wait(req);
  land_flights();
}

// Tracing: records each flight that is done by now (testing it: a test
// moves it along too, and NCCL's test waits, so only when tracing).
void PipelineExecutor::land_flights() {
  for (size_t i = 0; i < flights_.size();) {
    Flight& f = flights_[i];
    if (!f.req->pending() || pipe_->test(*f.req)) {
      trace_.push_back({f.name, "wire", f.start_us - t0_us_, now_us() - f.start_us});
      flights_.erase(flights_.begin() + long(i));
    } else {
      ++i;
    }
  }
}

// The staging buffers of `pool`, for messages of `hop`'s payload.
void PipelineExecutor::init_send_pool(Local& L, SendPool& pool, const HopPayload& hop) {
  for (int b = 0; b < cfg_.sends_in_flight; ++b) {
    std::vector<TensorRef>& refs = pool.bufs.emplace_back();
    for (size_t t = 0; t < hop.tensors.size(); ++t)
      refs.push_back({bf16_hops() ? static_cast<void*>(L.wire.emplace_back(dev_, stream_floats_).data())
                                  : static_cast<void*>(L.buffers.emplace_back(dev_, stream_floats_).data()),
                      stream_floats_, cfg_.hop_dtype});
    pool.free.push_back(b);
  }
}

// Buffers are freed by their owners; pending messages and reductions must finish first.
PipelineExecutor::~PipelineExecutor() {
  for (k::Event& e : timed_) k::event_destroy(e);
  k::event_destroy(run_start_);
  try {
    for (auto& L : locals_)
      for (SendPool* p : {&L->sends_f, &L->sends_b})
        for (auto& [req, b] : p->in_flight) pipe_->wait(req);
  } catch (const std::exception& e) {  // a destructor reports, never throws
    std::fprintf(stderr, "attnres: executor: a send still in flight failed: %s\n", e.what());
  }
}

bool PipelineExecutor::holds_last_chunk() const { return locals_.back()->chunk == schedule_.num_chunks() - 1; }

PipelineExecutor::Local& PipelineExecutor::local(int chunk) {
  assert(chunk >= 0 && chunk < int(local_index_.size()) && local_index_[size_t(chunk)] >= 0);
  return *locals_[size_t(local_index_[size_t(chunk)])];
}

PipelineExecutor::Slot& PipelineExecutor::slot_of(int mb, int chunk) {
  const int i = table_.find(chunk, mb);
  if (i < 0)
    throw std::logic_error("executor: no activations for mb " + std::to_string(mb) + " chunk " + std::to_string(chunk));
  return local(chunk).slots[size_t(i)];
}

PipelineExecutor::Slot& PipelineExecutor::acquire(int mb, int chunk) {
  const SlotTable::Taken t = table_.acquire(chunk, mb);
  if (t.slot < 0) throw std::logic_error("executor: no free activation slot for chunk " + std::to_string(chunk));
  Local& L = local(chunk);
  Slot& s = L.slots[size_t(t.slot)];
  if (!t.fresh) return s;
  // The last chunk's backward writes its sources' gradients before it
  // reads them (chunk_backward_input), so only other chunks' need zeros.
  if (!(cfg_.attnres() && L.model->has_head))
    for (float* g : s.own_grads)
      if (g) k::zero(dev_, g, stream_floats_);
  if (s.dhidden) k::zero(dev_, s.dhidden, stream_floats_);
  return s;
}

void PipelineExecutor::release(int chunk, int slot) {
  Slot& s = local(chunk).slots[size_t(slot)];
  s.recv_f_posted = s.recv_b_posted = s.copied_in = s.copied_back = false;
  table_.release(chunk, slot);
}

// The tensors of a message: the float buffers themselves, or with bf16 hops
// their wire copies.
template <class T>
static std::vector<TensorRef> refs(const std::vector<T*>& bufs, size_t n) {
  std::vector<TensorRef> r;
  for (T* b : bufs) r.push_back({b, n, k::dtype_of<T>()});
  return r;
}
// A local chunk's weights are ready for its first forward of a run: its
// ZeRO-1 all-gather is done, and a bf16 run's vectors are widened from the
// weights the optimizer (and the all-gather) wrote.
void PipelineExecutor::ready_weights(size_t i) {
  if (weights_ready_[i]) return;
  const double t = now_us();
  dp_->wait_parameters(i);
  if (open_start_) k::event_record(*open_start_, dev_);  // the wait is not part of the forward
  if (tracing_ && data_) trace_.push_back({"wait parameters", "comm", t - t0_us_, now_us() - t});
  chunk_widen_vectors(chunks_[i]);
  weights_ready_[i] = true;
}

bool PipelineExecutor::bf16_hops() const { return cfg_.hop_dtype == k::DType::BF16; }
// A received message into the float buffers (bf16 hops; exact: the stream holds bf16 values).
void PipelineExecutor::unwire(const std::vector<k::bf16*>& wire, const std::vector<float*>& to) {
  for (size_t t = 0; bf16_hops() && t < to.size(); ++t) k::convert(dev_, to[t], wire[t], stream_floats_);
}
// A free staging buffer of `pool`; when all are in flight, the oldest
// message's, once it is done (the bound of parallel.sends_in_flight).
int PipelineExecutor::take(SendPool& pool) {
  if (pool.free.empty()) {
    const double t = now_us();
    pipe_->wait(pool.in_flight.front().first);
    if (open_start_) k::event_record(*open_start_, dev_);
    if (tracing_) trace_.push_back({"wait send", "comm", t - t0_us_, now_us() - t});
    land_flights();  // before the request it points at goes
    pool.free.push_back(pool.in_flight.front().second);
    pool.in_flight.pop_front();
  }
  const int b = pool.free.back();
  pool.free.pop_back();
  return b;
}

// Sends payload `vals` from a staging buffer of `pool` (rounded to bf16
// with bf16 hops); returns the bytes the communicator counted for it.
uint64_t PipelineExecutor::send(const std::vector<float*>& vals, SendPool& pool, int peer, MessageTag tag) {
  const int b = take(pool);
  const std::vector<TensorRef>& bufs = pool.bufs[size_t(b)];
  for (size_t t = 0; t < vals.size(); ++t) {
    if (bf16_hops()) k::convert(dev_, static_cast<k::bf16*>(bufs[t].data), vals[t], stream_floats_);
    else k::copy(dev_, static_cast<float*>(bufs[t].data), vals[t], stream_floats_, k::CopyKind::DeviceToDevice);
  }
  const uint64_t before = pipe_->bytes_sent();
  pool.in_flight.emplace_back(pipe_->isend(bufs, peer, tag), b);
  fly(tag.dir == Direction::Forward ? "SEND_F" : "SEND_B", tag, pool.in_flight.back().first);
  return pipe_->bytes_sent() - before;
}
// Posts the receive of a message into `vals`, through `wire` with bf16 hops (unwire after the wait).
Request PipelineExecutor::receive(const std::vector<float*>& vals, const std::vector<k::bf16*>& wire, int peer,
                                  MessageTag tag) {
  return bf16_hops() ? pipe_->irecv(refs(wire, stream_floats_), peer, tag)
                     : pipe_->irecv(refs(vals, stream_floats_), peer, tag);
}

void PipelineExecutor::post_recv_f(int mb, int chunk, int peer) {
  Slot& s = acquire(mb, chunk);
  if (s.recv_f_posted) return;
  s.recv_f = receive(s.recv_vals, s.wire_recv_vals, peer, {mb, chunk, Direction::Forward});
  s.recv_f_posted = true;
  fly("RECV_F", {mb, chunk, Direction::Forward}, s.recv_f);
}

void PipelineExecutor::post_recv_b(int mb, int chunk, int peer) {
  Slot& s = slot_of(mb, chunk);
  if (s.recv_b_posted) return;
  s.recv_b = receive(s.recv_grads, s.wire_recv_grads, peer, {mb, chunk + 1, Direction::Backward});
  s.recv_b_posted = true;
  fly("RECV_B", {mb, chunk + 1, Direction::Backward}, s.recv_b);
}

// Posts later receives whose buffers are available now, so messages land
// while this rank computes (the rule is SlotTable::post_ahead's).
void PipelineExecutor::post_ahead(size_t from) {
  table_.post_ahead(schedule_.ranks[size_t(rank_)], from, pipe_->size(), [&](const Action& a) {
    if (a.op == Op::RECV_F) post_recv_f(a.mb, a.chunk, a.peer);
    else post_recv_b(a.mb, a.chunk, a.peer);
  });
}

// The wait is not part of the action: its start is recorded again after it.
void PipelineExecutor::wait_recv(Request& r, const char* what, int mb, int chunk) {
  const double t = now_us();
  pipe_->wait(r);
  land_flights();
  if (open_start_) k::event_record(*open_start_, dev_);
  const double dt = now_us() - t;
  if (tracing_)
    trace_.push_back({std::string(what) + "(mb=" + std::to_string(mb) + ",chunk=" + std::to_string(chunk) + ")",
                      "comm", t - t0_us_, dt});
}

void PipelineExecutor::forward(int mb, int chunk, const int32_t* tokens, const int32_t* targets, double* loss) {
  ready_weights(size_t(local_index_[size_t(chunk)]));
  Local& L = local(chunk);
  Slot& s = acquire(mb, chunk);
  s.in = ResidualState{};
  std::fill(s.grads.begin(), s.grads.end(), nullptr);
  if (chunk > 0) {
    if (s.recv_f_posted) wait_recv(s.recv_f, "RECV_F", mb, chunk), unwire(s.wire_recv_vals, s.recv_vals);
    else if (!s.copied_in) throw std::logic_error("executor: " + to_string({Op::F, mb, chunk}) + " has no input");
    // Sources held since an earlier chunk here (cross-stage cache), then the
    // received ones. A source's gradient goes back on this chunk's hop if the
    // backward payload carries it, else it adds to the earlier chunk's.
    if (cfg_.attnres()) {
      s.in.sources.assign(size_t(L.n_in), nullptr);
      if (L.in_hop.cached_from >= 0) {
        Slot& prev = slot_of(mb, L.in_hop.cached_from);
        for (int src = 0; src < L.n_in; ++src)
          if (src < int(prev.out.sources.size())) {
            s.in.sources[size_t(src)] = prev.out.sources[size_t(src)];
            s.grads[size_t(src)] = prev.grads[size_t(src)];
          }
      }
    }
    for (size_t t = 0; t < L.in_hop.tensors.size(); ++t) {
      const HopTensor& h = L.in_hop.tensors[t];
      if (h.kind == HopTensor::Hidden) s.in.hidden = s.recv_vals[t];
      if (h.kind == HopTensor::Partial) s.in.partial = s.recv_vals[t];
      if (h.kind == HopTensor::Source) s.in.sources[size_t(h.source)] = s.recv_vals[t];
    }
    for (const HopTensor& h : L.in_grad_hop.tensors)
      if (h.kind == HopTensor::Source) s.grads[size_t(h.source)] = s.own_grads[size_t(h.source)];
    for (float* p : s.in.sources)
      if (!p) throw std::logic_error("executor: chunk " + std::to_string(chunk) + " lacks an input source");
  }
  if (L.recompute.on()) {
    recompute_forward(L.recompute, s.kept, tokens, targets, s.in, s.out, loss);
  } else {
    chunk_forward(*L.model, s.acts, tokens, targets, s.in, loss);
    s.out = s.acts.out;
  }
  for (int src = (chunk == 0 ? 0 : L.n_in); src < L.n_out; ++src) s.grads[size_t(src)] = s.own_grads[size_t(src)];
}

// The tensors of chunk c's forward output that the hop into c+1 carries, in wire order.
std::vector<float*> PipelineExecutor::forward_payload(int mb, int chunk) {
  const Slot& s = slot_of(mb, chunk);
  std::vector<float*> vals;
  for (const HopTensor& h : local(chunk).out_hop.tensors)
    vals.push_back(h.kind == HopTensor::Hidden    ? s.out.hidden
                   : h.kind == HopTensor::Partial ? s.out.partial
                                                  : s.out.sources[size_t(h.source)]);
  return vals;
}

// The gradients of chunk c's input that the hop back into c−1 carries, in wire order.
std::vector<float*> PipelineExecutor::backward_payload(int mb, int chunk) {
  const Slot& s = slot_of(mb, chunk);
  std::vector<float*> grads;
  for (const HopTensor& h : local(chunk).in_grad_hop.tensors)
    grads.push_back(h.kind == HopTensor::Hidden    ? s.din.hidden
                    : h.kind == HopTensor::Partial ? s.din.partial
                                                   : s.din.sources[size_t(h.source)]);
  return grads;
}

void PipelineExecutor::send_f(int mb, int chunk, int peer) {
  fwd_bytes_[size_t(chunk + 1)] +=
      send(forward_payload(mb, chunk), local(chunk).sends_f, peer, {mb, chunk + 1, Direction::Forward});
}

void PipelineExecutor::copy_f(int mb, int chunk) {
  const std::vector<float*> vals = forward_payload(mb, chunk);
  Slot& next = acquire(mb, chunk + 1);
  for (size_t t = 0; t < vals.size(); ++t) k::copy(dev_, next.recv_vals[t], vals[t], stream_floats_, k::CopyKind::DeviceToDevice);
  next.copied_in = true;
}

void PipelineExecutor::backward_input(int mb, int chunk, const int32_t* tokens, const int32_t* targets,
                                      float loss_scale) {
  Local& L = local(chunk);
  Slot& s = slot_of(mb, chunk);
  ResidualState dout;
  if (!L.model->has_head) {
    if (s.recv_b_posted) wait_recv(s.recv_b, "RECV_B", mb, chunk), unwire(s.wire_recv_grads, s.recv_grads);
    else if (!s.copied_back)
      throw std::logic_error("executor: " + to_string({Op::B, mb, chunk}) + " has no output gradient");
    for (size_t t = 0; t < L.out_grad_hop.tensors.size(); ++t) {
      const HopTensor& h = L.out_grad_hop.tensors[t];
      if (h.kind == HopTensor::Hidden) dout.hidden = s.recv_grads[t];
      if (h.kind == HopTensor::Partial) dout.partial = s.recv_grads[t];
      // Downstream gradient of a source adds to what later local chunks left.
      if (h.kind == HopTensor::Source)
        k::add_inplace(dev_, s.grads[size_t(h.source)], s.recv_grads[t], stream_floats_, cfg_.bf16());
    }
  } else if (!cfg_.attnres()) {
    dout.hidden = s.dhidden;
  }
  dout.sources.assign(s.grads.begin(), s.grads.end());
  if (L.recompute.on()) recompute_backward(L.recompute, s.kept, tokens, targets, loss_scale, dout, s.din);
  else chunk_backward_input(*L.model, s.acts, tokens, targets, loss_scale, dout, s.din);
}

// Under recomputation the weights were done with the input gradient.
void PipelineExecutor::backward_weight(int mb, int chunk) {
  Local& L = local(chunk);
  if (!L.recompute.on()) chunk_backward_weight(*L.model, slot_of(mb, chunk).acts);
}

void PipelineExecutor::send_b(int mb, int chunk, int peer) {
  bwd_bytes_[size_t(chunk)] +=
      send(backward_payload(mb, chunk), local(chunk).sends_b, peer, {mb, chunk, Direction::Backward});
}

void PipelineExecutor::copy_b(int mb, int chunk) {
  const std::vector<float*> grads = backward_payload(mb, chunk);
  Slot& prev = slot_of(mb, chunk - 1);
  for (size_t t = 0; t < grads.size(); ++t) k::copy(dev_, prev.recv_grads[t], grads[t], stream_floats_, k::CopyKind::DeviceToDevice);
  prev.copied_back = true;
}

// Before the optimizer step: every local chunk's reduction has started, and
// here they all finish.
void PipelineExecutor::finish_reductions() {
  const double t = now_us();
  dp_->finish();
  if (tracing_ && data_) trace_.push_back({"wait REDUCE_GRADS", "comm", t - t0_us_, now_us() - t});
}

std::vector<double> PipelineExecutor::run(const std::vector<const int32_t*>& tokens,
                                          const std::vector<const int32_t*>& targets, float loss_scale) {
  assert(int(tokens.size()) == schedule_.M && int(targets.size()) == schedule_.M);
  k::zero(dev_, losses_.data(), losses_.size());
  std::fill(weights_ready_.begin(), weights_ready_.end(), false);
  std::fill(fwd_bytes_.begin(), fwd_bytes_.end(), 0);
  std::fill(bwd_bytes_.begin(), bwd_bytes_.end(), 0);
  timed_actions_.clear();
  k::event_record(run_start_, dev_);
  run_start_us_ = trace_clock_us();
  const auto& list = schedule_.ranks[size_t(rank_)];
  for (size_t i = 0; i < list.size(); ++i) {
    const Action& a = list[i];
    if (a.op == Op::OPTIMIZER_STEP) break;  // the trainer's part
    if (pipe_) post_ahead(i);
    const bool timed = is_compute(a.op) || is_copy(a.op);
    if (timed) open_start_ = &next_timed(a);
    switch (a.op) {
      case Op::F: forward(a.mb, a.chunk, tokens[size_t(a.mb)], targets[size_t(a.mb)], losses_.data() + a.mb); break;
      case Op::B:
      case Op::BI:
        backward_input(a.mb, a.chunk, tokens[size_t(a.mb)], targets[size_t(a.mb)], loss_scale);
        if (a.op == Op::B) backward_weight(a.mb, a.chunk);
        break;
      case Op::BW: backward_weight(a.mb, a.chunk); break;
      case Op::SEND_F: send_f(a.mb, a.chunk, a.peer); break;
      case Op::SEND_B: send_b(a.mb, a.chunk, a.peer); break;
      case Op::RECV_F: post_recv_f(a.mb, a.chunk, a.peer); break;  // waited on at F
      case Op::RECV_B: post_recv_b(a.mb, a.chunk, a.peer); break;  // waited on at B / BI
      case Op::COPY_F: copy_f(a.mb, a.chunk); break;
      case Op::COPY_B: copy_b(a.mb, a.chunk); break;
      case Op::REDUCE_GRADS: dp_->start(size_t(local_index_[size_t(a.chunk)])); break;
      case Op::OPTIMIZER_STEP: break;
    }
    if (timed) {
      k::event_record(timed_[2 * timed_actions_.size() - 1], dev_);  // the action's end
      open_start_ = nullptr;
    }
    if (const int left = table_.after(a); left >= 0) release(a.chunk, left);
    if (pipe_) land_flights();
    if (data_) dp_->progress();
  }
  // The step's one read of its losses; after it the timing's events are done.
  std::vector<double> losses = k::to_host(dev_, losses_.data(), losses_.size());
  settle_timing();
  if (tracing_) land_sends();
  finish_reductions();
  return losses;
}

// The start and end events of the next timed action (created on first use).
k::Event& PipelineExecutor::next_timed(const Action& a) {
  const size_t i = timed_actions_.size();
  timed_actions_.push_back(a);
  while (timed_.size() < 2 * (i + 1)) timed_.push_back(k::event_create(dev_));
  k::event_record(timed_[2 * i], dev_);
  return timed_[2 * i];
}

// Once the last action's end has happened: busy and idle seconds, and the
// trace's compute and copy spans, from the events.
void PipelineExecutor::settle_timing() {
  busy_s_ = idle_s_ = 0;
  const size_t n = timed_actions_.size();
  if (n == 0) return;
  k::event_synchronize(timed_[2 * n - 1]);
  for (size_t i = 0; i < n; ++i) {
    const double start_ms = k::event_elapsed_ms(run_start_, timed_[2 * i]);
    const double dur_ms = k::event_elapsed_ms(timed_[2 * i], timed_[2 * i + 1]);
    busy_s_ += dur_ms * 1e-3;
    if (tracing_)
      trace_.push_back({to_string(timed_actions_[i]), is_copy(timed_actions_[i].op) ? "copy" : "compute",
                        run_start_us_ + start_ms * 1e3, dur_ms * 1e3});
  }
  idle_s_ = std::max(0.0, k::event_elapsed_ms(run_start_, timed_[2 * n - 1]) * 1e-3 - busy_s_);
}

double PipelineExecutor::forward_only(const std::vector<const int32_t*>& tokens,
                                      const std::vector<const int32_t*>& targets) {
  const std::vector<int>& at = schedule_.placement;
  k::zero(dev_, losses_.data(), 1);  // the sum over every microbatch, in their order
  std::fill(weights_ready_.begin(), weights_ready_.end(), false);
  for (size_t i = 0; i < chunks_.size(); ++i) ready_weights(i);
  for (int mb = 0; mb < int(tokens.size()); ++mb) {
    for (auto& L : locals_) {
      const int c = L->chunk;
      if (c > 0 && at[size_t(c - 1)] != rank_) post_recv_f(mb, c, at[size_t(c - 1)]);
      forward(mb, c, tokens[size_t(mb)], targets[size_t(mb)], losses_.data());
      if (c + 1 == schedule_.num_chunks()) continue;
      if (at[size_t(c + 1)] == rank_) copy_f(mb, c);
      else send_f(mb, c, at[size_t(c + 1)]);
    }
    for (auto& L : locals_) release(L->chunk, table_.find(L->chunk, mb));
  }
  return k::to_host(dev_, losses_.data(), 1)[0];
}

}  // namespace attnres
